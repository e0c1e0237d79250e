"""Edge side: running ``.tflite`` models with a TFLite runtime, never with TensorFlow.

This package must import on a device that has only numpy and a TFLite runtime (``ai-edge-litert`` or
the older ``tflite-runtime``); a test imports it with TensorFlow made unimportable.
"""

from resnet_edge.runtime.backends import available_backends, interpreter_class  # noqa: F401
