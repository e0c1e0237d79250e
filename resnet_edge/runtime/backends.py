"""Which TFLite runtime is installed, and its ``Interpreter`` class.

Backends, in order of preference:

* ``litert``: ``ai_edge_litert.interpreter`` (pip ``ai-edge-litert``), the maintained runtime;
* ``tflite-runtime``: ``tflite_runtime.interpreter`` (pip ``tflite-runtime``, last release 2.14), still
  common on Raspberry Pis.

TensorFlow's own ``tf.lite.Interpreter`` is deliberately not a backend: the edge side never imports
TensorFlow.
"""

from __future__ import annotations

import importlib

from resnet_edge.errors import MissingDependencyError

BACKENDS = {
    "litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}


def available_backends() -> list[str]:
    """Names of the backends that import here, best first."""
    found = []
    for name, module in BACKENDS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        found.append(name)
    return found


def interpreter_class(backend: str = "auto"):
    """The ``Interpreter`` class of ``backend`` ("auto" = the first available).

    Raises :class:`MissingDependencyError` naming the package to install.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise MissingDependencyError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    names = list(BACKENDS) if backend == "auto" else [backend]
    for name in names:
        try:
            return importlib.import_module(BACKENDS[name]).Interpreter
        except ImportError:
            continue
    wanted = "ai-edge-litert" if backend in ("auto", "litert") else "tflite-runtime"
    raise MissingDependencyError(
        f"no TFLite runtime for backend {backend!r}: pip install {wanted} (or 'resnet-edge[edge]')"
    )
