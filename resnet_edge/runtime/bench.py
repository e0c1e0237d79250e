"""Latency of a ``.tflite`` model on this machine (edge side: numpy + a TFLite runtime).

One interpreter, a fixed random input of the model's own type, ``warmup`` untimed runs and then ``runs``
timed invocations (``time.perf_counter`` around ``invoke`` only). Reports median, mean, p90, min and
max in milliseconds; the median is the figure to compare (these machines are shared and noisy, so
compare models measured in the same run, as ratios).
"""

from __future__ import annotations

import os
import time

import numpy as np

from resnet_edge.runtime.runner import TFLiteModel


def latency(model: str | os.PathLike | bytes, *, runs: int = 50, warmup: int = 5, threads: int | None = None,
            backend: str = "auto", seed: int = 0) -> dict:
    """Time ``runs`` single-batch invocations of ``model``; return figures in milliseconds."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    t0 = time.perf_counter()
    runner = TFLiteModel(model, backend=backend, num_threads=threads)
    init_ms = (time.perf_counter() - t0) * 1e3
    shape = runner.input_shape
    rng = np.random.default_rng(seed)
    dtype = runner.input_dtype
    if dtype == np.float32:
        x = rng.uniform(0, 255, shape).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    interp = runner.interpreter
    index = runner._input["index"]
    for _ in range(warmup):
        interp.set_tensor(index, x)
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        interp.set_tensor(index, x)
        start = time.perf_counter()
        interp.invoke()
        times[i] = time.perf_counter() - start
    ms = times * 1e3
    return {
        "runs": runs,
        "warmup": warmup,
        "threads": threads,
        "init_ms": round(init_ms, 2),
        "median_ms": float(np.median(ms)),
        "mean_ms": float(ms.mean()),
        "p90_ms": float(np.percentile(ms, 90)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }
