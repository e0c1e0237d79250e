"""Run a ``.tflite`` classifier with a TFLite runtime (edge side: numpy + LiteRT, no TensorFlow), and check a
model before any runtime sees it (:func:`check_model`).

:class:`TFLiteModel` hides the model's input and output types: callers give float pixels as the model's
Keras source took them (raw 0..255 when normalization is inside the model) and get float scores back.
Quantized inputs are quantized with the model's own scale and zero point; quantized outputs are
dequantized.

Before the runtime sees a model: the checksum of a model of ours is verified (a damaged one is refused:
:class:`~resnet_edge.tflite.integrity.DamagedModelError`), the flatbuffer is checked where the schema
module is installed, and a model that cannot be verified (one from another tool, or ``verify=False``)
is first loaded and run once in a child process with memory and time limits (``probe``), so that a
model that would crash the runtime or make it allocate without bound fails there, in one line.

:func:`latency` is the in-process shortcut the tools use (one model, one setting, figures in ms).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

from resnet_edge._native import quiet_native_stderr
from resnet_edge.errors import ConfigError, MissingDependencyError
from resnet_edge.runtime.backends import interpreter_class
from resnet_edge import harness
from resnet_edge.harness import KERNELS, from_model_dtype, interpreter_kwargs, tensor_detail, to_model_dtype
from resnet_edge.tflite import integrity
from resnet_edge.tflite.metadata import BadMetadataError, read_info
from resnet_edge.tflite.model import InvalidModelError, load_bytes, read
from resnet_edge.ui import safe_text


def _read_info(content: bytes, label: str) -> dict | None:
    """Check the flatbuffer (errors name ``label``) and return the model's ``resnet_edge`` metadata; None
    when it has none or the schema module is missing (tflite-runtime alone has none: the checksum still
    protects)."""
    try:
        read(content, label)
        return read_info(content)
    except MissingDependencyError:
        return None
    except BadMetadataError as exc:
        raise InvalidModelError(f"{label}: {exc}") from None


def read_checked(model: str | os.PathLike | bytes, verify: bool = True) -> tuple[bytes, str, dict, dict | None]:
    """Everything checked before a runtime sees ``model`` (a path or bytes): its bytes, its name for
    messages, what its checksum said (``{"status": "verified" | "unverified" | "not checked", ...}``; a
    damaged model of ours raises :class:`~resnet_edge.tflite.integrity.DamagedModelError`) and its
    ``resnet_edge`` metadata (None when it has none); reading the metadata checks the flatbuffer too."""
    content = bytes(model) if isinstance(model, (bytes, bytearray)) else load_bytes(model)
    label = "the model" if isinstance(model, (bytes, bytearray)) else str(model)
    status = integrity.verify(content, label) if verify else {"status": "not checked"}
    return content, label, status, _read_info(content, label)


def probe_in_child(content: bytes, label: str = "the model", timeout: float = 120) -> None:
    """Load and run ``content`` once in a memory- and time-limited child; raise :class:`InvalidModelError`
    (one line) when the runtime cannot."""
    from resnet_edge.tflite.readiness import cpu_report_isolated

    result = cpu_report_isolated(content, timeout=timeout)
    if not result.get("loaded"):
        raise InvalidModelError(f"{label}: {result['error']}")


class TFLiteModel:
    """One interpreter for one model. ``model`` is a path or the model's bytes."""

    def __init__(self, model: str | os.PathLike | bytes, backend: str = "auto", num_threads: int | None = None,
                 kernels: str = "xnnpack", verify: bool = True, probe: bool | None = None):
        """``verify``: refuse a model of ours whose checksum does not match (``False``: look anyway).
        ``probe``: load the model in a limited child first; default: when it could not be verified
        (bytes the caller has just made itself need no probe: pass ``probe=False``)."""
        if kernels not in KERNELS:
            raise ConfigError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
        cls = interpreter_class(backend)
        # kernels: "xnnpack" (the runtime's default delegate) or "builtin" (TFLite's own kernels only)
        kwargs = interpreter_kwargs(sys.modules[cls.__module__], num_threads, kernels)
        started = time.perf_counter()
        # integrity: {"status": "verified" | "unverified" | "not checked", ...}, what the checksum said;
        # info: the ``resnet_edge`` metadata entry (labels, normalization, recipe), or None.
        content, label, self.integrity, self.info = read_checked(model, verify)
        probed = 0.0
        if probe if probe is not None else self.integrity["status"] != "verified":
            t0 = time.perf_counter()
            probe_in_child(content, label)
            probed = time.perf_counter() - t0
        self.label = label
        with quiet_native_stderr(), self._runtime_errors():
            self.interpreter = cls(model_content=content, **kwargs)
            self.interpreter.allocate_tensors()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if not inputs or not outputs or len(inputs[0]["shape"]) < 1:
            raise InvalidModelError(f"{label} has {len(inputs)} input and {len(outputs)} output tensors; an image "
                                    "classifier has one of each (with a batch dimension)")
        self._input, self._output = inputs[0], outputs[0]
        #: Milliseconds to read, check and load the model and allocate its tensors (the child probe excluded).
        self.init_ms = (time.perf_counter() - started - probed) * 1e3
        self._batch = int(self._input["shape"][0])

    @contextlib.contextmanager
    def _runtime_errors(self):
        """The runtime's own errors (ValueError, RuntimeError) on a model that passed every check: one line."""
        try:
            yield
        except (ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InvalidModelError(f"{self.label}: the TFLite runtime failed on it ({safe_text(first, 200)})") from None

    @property
    def labels(self) -> list[str] | None:
        return (self.info or {}).get("labels")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._input["shape"])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._output["dtype"])

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        return to_model_dtype(x, tensor_detail(self._input))

    def _from_output(self, y: np.ndarray) -> np.ndarray:
        return from_model_dtype(y, tensor_detail(self._output))

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = list(self.input_shape)
            shape[0] = batch
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        """Run one batch already in the model's input dtype; return the raw output tensor."""
        with self._runtime_errors():
            self._resize(int(x.shape[0]))
            self.interpreter.set_tensor(self._input["index"], x)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output["index"]).copy()

    def predict(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Float scores for float inputs (N x H x W x C), run ``batch_size`` at a time."""
        out = []
        for start in range(0, len(x), batch_size):
            out.append(self._from_output(self.invoke_raw(self._to_input(x[start:start + batch_size]))))
        return np.concatenate(out) if out else np.zeros((0,) + tuple(self._output["shape"][1:]), np.float32)


def check_model(path: str | os.PathLike, verify: bool = True) -> dict:
    """Read and check a model before any runtime sees it (:func:`read_checked`), once: the checked model
    that bench and eval hand down to every run.
    ``{"path", "integrity": ..., "info": metadata or None, "bytes": n, "inputs": [...], "outputs": [...],
    "classes": scores per image}`` (the tensors and the classes are None where the schema module is missing). A damaged model of ours raises one line; a
    foreign one is "unverified"."""
    content, _, status, info = read_checked(path, verify)
    try:
        from resnet_edge.tflite.inspect import io_tensors

        inputs, outputs = io_tensors(content)
    except MissingDependencyError:  # no flatbuffer schema here (tflite-runtime alone)
        inputs = outputs = None
    classes = int(outputs[0]["shape"][-1]) if outputs and len(outputs) == 1 and outputs[0]["shape"] else None
    return {"path": str(path), "integrity": status, "info": info, "bytes": len(content), "inputs": inputs,
            "outputs": outputs, "classes": classes}


def takes_raw_pixels(info: dict | None) -> bool:
    """Whether a model wants 0..255 pixels: ours say so in their metadata; a foreign one is assumed to."""
    return not (info and str((info.get("input") or {}).get("pixels", "")).startswith("normalized"))


def latency(model: str | os.PathLike | bytes, *, runs: int = 50, warmup: int = 5, threads: int | None = None,
            backend: str = "auto", kernels: str = "xnnpack", seed: int = 0) -> dict:
    """Time ``runs`` single-batch invocations of ``model`` in this process; figures in milliseconds
    (``median_ms``, ``mean_ms``, ``p90_ms``, ``min_ms``, ``max_ms``, ``init_ms``).

    ``kernels``: ``xnnpack`` (the runtime's default delegate) or ``builtin`` (TFLite's own kernels).
    A model that cannot be verified is probed in a limited child first (:class:`TFLiteModel`); that
    probe is not part of ``init_ms``, which times the checks and the interpreter's creation.
    """
    if runs < 1 or warmup < 0:
        raise ConfigError("runs must be >= 1 and warmup >= 0")
    runner = TFLiteModel(model, backend=backend, num_threads=threads, kernels=kernels)
    x = harness.signature_input(harness.tensor_detail(runner._input), np.random.default_rng(seed))
    interpreter, index = runner.interpreter, runner._input["index"]
    for _ in range(warmup):
        interpreter.set_tensor(index, x)
        interpreter.invoke()
    ms = np.empty(runs)
    for i in range(runs):
        interpreter.set_tensor(index, x)
        started = time.perf_counter()
        interpreter.invoke()
        ms[i] = (time.perf_counter() - started) * 1e3
    return {"runs": runs, "warmup": warmup, "threads": threads, "kernels": kernels,
            "init_ms": round(runner.init_ms, 2), "median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()),
            "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}
