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
from resnet_edge.harness import RUNTIMES, runtime_module

BACKENDS = {name: package + ".interpreter" for name, package in RUNTIMES.items()}


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
    try:
        return runtime_module(backend)[2].Interpreter
    except ImportError:
        pass
    wanted = "ai-edge-litert" if backend in ("auto", "litert") else "tflite-runtime"
    raise MissingDependencyError(
        f"no TFLite runtime for backend {backend!r}: pip install {wanted} (or 'resnet-edge[edge]')"
    )
