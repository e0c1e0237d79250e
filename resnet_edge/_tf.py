"""The one place where TensorFlow is imported (host side only).

tensorflow-model-optimization needs Keras 2 (``tf_keras``): Keras 3 models are rejected by
``quantize_model``. ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported, so every
host-side module gets TensorFlow and Keras from here: ``from resnet_edge._tf import tf, keras``.
Importing this module on a machine without TensorFlow raises :class:`MissingDependencyError`, whose
message says how to install the host side.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ INFO/WARNING noise out of the CLI's output

from resnet_edge._native import quiet_native_stderr  # noqa: E402
from resnet_edge._tmp import use_private_tempdir  # noqa: E402

use_private_tempdir()  # TensorFlow's autograph files go there, and go with it even after a kill -9
from resnet_edge.errors import MissingDependencyError  # noqa: E402

try:
    with quiet_native_stderr():
        import tensorflow as tf  # noqa: E402
        import tf_keras as keras  # noqa: E402

        tf.config.list_physical_devices()  # device discovery (cuInit) logs its own noise on CPU-only machines
except ImportError as exc:  # pragma: no cover - exercised in an environment without TensorFlow
    raise MissingDependencyError(
        f"this command needs the host side (TensorFlow 2.21 + tf_keras): {exc}; "
        "install it with: pip install 'resnet-edge[host]'"
    ) from None

try:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
except ImportError:  # pragma: no cover
    pass
tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras", "quiet_native_stderr"]
