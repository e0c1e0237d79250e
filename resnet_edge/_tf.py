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

import contextlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from resnet_edge.errors import MissingDependencyError  # noqa: E402

# Start-up lines that TensorFlow's C++ side writes to stderr at import, whatever TF_CPP_MIN_LOG_LEVEL says.
_NOISE = ("All log messages before absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
          "Unable to register cu", "computation placer already registered", "TF-TRT Warning",
          "failed call to cuInit")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hold file descriptor 2 during TensorFlow's import and replay every line except the known noise."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # stderr replaced (e.g. by a test runner): nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip() and not any(n in line for n in _NOISE):
                    print(line, file=sys.stderr)


try:
    with _quiet_native_stderr():
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

__all__ = ["tf", "keras"]
