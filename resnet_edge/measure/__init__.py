"""Edge side: what a ``.tflite`` model does on a target: latency (:mod:`~resnet_edge.measure.bench`),
accuracy (:mod:`~resnet_edge.measure.evaluation`), many models x settings x targets
(:mod:`~resnet_edge.measure.sweep`) and the SQLite store of every measurement (:mod:`~resnet_edge.measure.results`).

Imports no TensorFlow; a test proves it.
"""
