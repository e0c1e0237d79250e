"""Latency of ``.tflite`` models on this machine (edge side: numpy + a TFLite runtime).

:func:`latency`: one interpreter in this process, a fixed random input of the model's own type,
``warmup`` untimed runs and then ``runs`` timed invocations (``time.perf_counter`` around ``invoke``
only). Reports median, mean, p90, min and max in milliseconds; the median is the figure to compare
(these machines are shared and noisy, so compare models measured in the same run, as ratios).

:func:`compare_in`: the same timing of several models, in turn, by another Python (for instance the
``tflite-runtime`` 2.14 environment of ``tools/make_tflite_runtime_env.sh``) running
:mod:`resnet_edge.runtime.timing` as a plain script in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from resnet_edge import _child
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.runtime import timing
from resnet_edge.runtime.runner import TFLiteModel


def latency(model: str | os.PathLike | bytes, *, runs: int = 50, warmup: int = 5, threads: int | None = None,
            backend: str = "auto", kernels: str = "xnnpack", seed: int = 0) -> dict:
    """Time ``runs`` single-batch invocations of ``model``; return figures in milliseconds.

    ``kernels``: ``xnnpack`` (the runtime's default delegate) or ``builtin`` (TFLite's own kernels).
    A model that cannot be verified is probed in a limited child first (:class:`TFLiteModel`); that
    probe is not part of ``init_ms``, which times the checks and the interpreter's creation.
    """
    runner = TFLiteModel(model, backend=backend, num_threads=threads, kernels=kernels)
    init_ms = runner.init_ms
    x = timing.sample_input(runner._input, seed)
    seconds = timing.time_invoke(runner.interpreter, x, runs, warmup)
    return {"runs": runs, "warmup": warmup, "threads": threads, "kernels": kernels, "init_ms": round(init_ms, 2),
            **timing.summary(seconds)}


def compare_in(python: str, paths: list[str | os.PathLike], *, runtime: str = "auto", threads: int | None = None,
               kernels: str = "xnnpack", runs: int = 200, warmup: int = 10, rounds: int = 1,
               timeout: float = 600) -> dict:
    """Time ``paths`` with the runtime of another Python interpreter ``python`` (see
    :func:`resnet_edge.runtime.timing.compare` for the result). Raises :class:`ResnetEdgeError` with
    the child's last line when it cannot run or fails."""
    cmd = [python, timing.__file__, *map(str, paths), "--runtime", runtime, "--kernels", kernels,
           "--runs", str(runs), "--warmup", str(warmup), "--rounds", str(rounds)]
    if threads:
        cmd += ["--threads", str(threads)]
    memory = _child.memory_limit(sum(os.path.getsize(p) for p in paths if os.path.isfile(p)))
    try:
        proc = _child.run(cmd, timeout=timeout, memory=memory)
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise ResnetEdgeError(f"could not time models with {python}: {exc}") from None
    if proc.returncode != 0:
        raise ResnetEdgeError(f"timing with {python} failed: {_child.describe_failure(proc, memory)}")
    try:
        result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise ResnetEdgeError(f"timing with {python} gave no result") from None
    result["python"] = str(Path(python))
    return result
