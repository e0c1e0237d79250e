"""Activation ranges for full-integer quantization, measured on all cores (host side; imports no TensorFlow).

TensorFlow's calibrator feeds the representative images one at a time through its own single-threaded
logging interpreter: about 70 ms per 224x224 image for ResNet-18, most of ``convert --int8``. Here the
same float graph (the converter's "calibrate only" output, whose tensors carry the ``min``/``max`` fields
the quantizer reads) is run by LiteRT with XNNPACK on every core, a batch at a time, with every tensor
that needs a range made an output of the graph, so that each one is kept whole and read after the run.
Each range is the minimum and maximum of that tensor over all the images, the statistic TensorFlow's
calibrator keeps.

One difference, measured: TensorFlow's calibrator reads an op's inputs again after the op has run, and
when TFLite computes an ``ADD`` in place (its output in its input's buffer), the input's range it records
is the union of the input's and the sum's. Here each tensor gets its own range.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from resnet_edge.errors import ConfigError

#: Memory for the tensors kept whole during one batch; the batch is made smaller to fit.
BATCH_BYTES = 128 * 2 ** 20
MAX_BATCH = 16


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _read(calibrated: bytes):
    from resnet_edge.tflite.model import read

    return read(calibrated, "the calibration graph")[0]


def ranged_tensors(m) -> list[int]:
    """Indices of the tensors of a parsed graph ``m`` that carry a ``min``/``max`` to be measured.

    Raises :class:`ConfigError` for a graph this calibrator does not handle (several subgraphs, a
    non-float tensor with a range); its message names ``--calibrator tensorflow``, which handles them."""
    from resnet_edge.tflite.model import type_name

    if len(m.subgraphs or []) != 1:
        raise ConfigError("the calibration graph has several subgraphs; convert with --calibrator tensorflow")
    found = []
    for i, t in enumerate(m.subgraphs[0].tensors or []):
        q = t.quantization
        if q is None or q.min is None or q.max is None:
            continue
        if type_name(t.type) != "float32" or len(q.min) != 1:
            raise ConfigError(f"tensor {t.name!r} needs a {type_name(t.type)} range; convert with --calibrator "
                              "tensorflow")
        found.append(i)
    return found


def measure(calibrated: bytes, samples: np.ndarray, *, threads: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict[int, tuple[float, float]]:
    """``{tensor index: (min, max)}`` of every ranged tensor over ``samples`` (N x H x W x C, in the
    model's input dtype), run on ``threads`` cores (default: all). ``progress(done, total)`` after each
    batch."""
    from resnet_edge._native import quiet_native_stderr
    from resnet_edge.runtime.backends import interpreter_class
    from resnet_edge.tflite.model import pack

    m = _read(calibrated)
    wanted = ranged_tensors(m)
    g = m.subgraphs[0]
    g.outputs = np.asarray(wanted, dtype=np.int32)  # every ranged tensor kept whole, read after the run
    per_image = sum(int(np.prod(np.asarray(g.tensors[i].shape, dtype=np.int64)[1:])) * 4 for i in wanted)
    batch = int(max(1, min(MAX_BATCH, len(samples), BATCH_BYTES // max(per_image, 1))))
    with quiet_native_stderr():
        it = interpreter_class("auto")(model_content=pack(m, len(calibrated)), num_threads=threads or cores())
    inp = it.get_input_details()[0]
    order = [o["index"] for o in it.get_output_details()]
    if sorted(order) != sorted(wanted):
        raise ConfigError("the runtime did not expose every ranged tensor")
    lo = {i: np.inf for i in wanted}
    hi = {i: -np.inf for i in wanted}
    shape = list(inp["shape"])
    current = None
    for start in range(0, len(samples), batch):
        part = np.ascontiguousarray(samples[start:start + batch], dtype=inp["dtype"])
        if current != len(part):
            it.resize_tensor_input(inp["index"], [len(part), *shape[1:]])
            it.allocate_tensors()
            current = len(part)
        it.set_tensor(inp["index"], part)
        it.invoke()
        for i in wanted:
            a = it.get_tensor(i)
            lo[i] = min(lo[i], float(a.min()))
            hi[i] = max(hi[i], float(a.max()))
        if progress:
            progress(start + len(part), len(samples))
    bad = [i for i in wanted if not (np.isfinite(lo[i]) and np.isfinite(hi[i]))]
    if bad:
        raise ConfigError(f"calibration gave {len(bad)} tensor(s) a range that is not finite (NaN or inf in the "
                          "activations): check the model and the calibration images")
    return {i: (lo[i], hi[i]) for i in wanted}


def with_ranges(calibrated: bytes, ranges: dict[int, tuple[float, float]]) -> bytes:
    """``calibrated`` with each tensor's ``min``/``max`` set from ``ranges``."""
    from resnet_edge.tflite.model import pack

    m = _read(calibrated)
    tensors = m.subgraphs[0].tensors
    for i, (lo, hi) in ranges.items():
        tensors[i].quantization.min = np.asarray([lo], dtype=np.float32)
        tensors[i].quantization.max = np.asarray([hi], dtype=np.float32)
    return pack(m, len(calibrated))


def ranges_of(calibrated: bytes) -> dict[int, tuple[float, float]]:
    """The ranges a calibrated graph carries (to compare calibrators)."""
    m = _read(calibrated)
    t = m.subgraphs[0].tensors
    return {i: (float(t[i].quantization.min[0]), float(t[i].quantization.max[0])) for i in ranged_tensors(m)}


__all__ = ["measure", "with_ranges", "ranged_tensors", "ranges_of", "cores"]
