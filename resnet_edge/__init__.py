"""resnet-edge: the residual networks of He et al. (2015), from the paper to edge devices.

The package is split along the line that matters on a device:

* host side (needs TensorFlow + tf_keras): ``resnet_edge.arch.keras_model`` and the commands that
  build, train, optimize and convert;
* edge side (numpy + a TFLite runtime only): ``resnet_edge.runtime``, ``resnet_edge.tflite`` and
  ``resnet_edge.targets``, which must import on a Raspberry Pi with no TensorFlow installed.

Importing ``resnet_edge`` itself never imports TensorFlow.
"""

__version__ = "0.1.0"
