"""Quiet the start-up chatter that TensorFlow's and LiteRT's C++ code writes straight to file descriptor 2.

Pure Python (edge side too): the output is held while the noisy call runs and every line that is not
known noise is written back, so real errors still reach the user.
"""

import contextlib
import os
import sys
import tempfile

# Lines that TensorFlow's and LiteRT's C++ code write to stderr (at import, in the TFLite converter, when
# an interpreter starts), whatever TF_CPP_MIN_LOG_LEVEL says.
_NOISE = (
    "All log messages before absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
    "Unable to register cu", "computation placer already registered", "TF-TRT Warning", "failed call to cuInit",
    "fully_quantize:", "Estimated count of arithmetic ops", "Created TensorFlow Lite XNNPACK delegate",
    "To enable the following instructions", "rebuild TensorFlow with the appropriate compiler flags",
)


@contextlib.contextmanager
def quiet_native_stderr():
    """Hold file descriptor 2 (TensorFlow's import, a TFLite conversion) and replay every line except
    the known noise."""
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


def release_memory() -> None:
    """Collect Python's garbage (a conversion leaves graphs in reference cycles) and hand freed heap back
    to the system (glibc keeps it otherwise), so that a process that converts several models, or several
    processes converting at once, hold only what is in use. Does nothing where glibc is missing."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
