"""Time ``invoke`` of ``.tflite`` models: stdlib, numpy and a TFLite runtime, nothing else.

This file imports nothing from ``resnet_edge`` so that it also runs as a plain script where only a
runtime is installed: a Raspberry Pi's ``tflite-runtime`` 2.14, or the side environment made by
``tools/make_tflite_runtime_env.sh`` (numpy < 2)::

    python timing.py A.tflite B.tflite --runtime tflite-runtime --threads 2 --kernels xnnpack --rounds 3

prints one JSON object: the runtime's name and version, and per model the median, mean, p90, min and
max of the timed invocations in milliseconds. With several models and ``--rounds`` > 1 the models are
timed in turn, round after round, so that a slow spell of a shared machine falls on all of them.

``kernels``: ``xnnpack`` is the runtime's default (the XNNPACK delegate takes what it can);
``builtin`` is TFLite's own kernels without any default delegate (``OpResolverType
.BUILTIN_WITHOUT_DEFAULT_DELEGATES``), the path a model takes where XNNPACK is off.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

import numpy as np

KERNELS = ("xnnpack", "builtin")
RUNTIMES = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}  # name -> package, best first


def runtime_module(runtime: str = "auto"):
    """``(name, version, interpreter module)`` of ``runtime`` (``auto``: LiteRT, else tflite-runtime)."""
    names = list(RUNTIMES) if runtime == "auto" else [runtime]
    for name in names:
        if name not in RUNTIMES:
            raise ValueError(f"unknown runtime {name!r}; valid: auto, {', '.join(RUNTIMES)}")
        try:
            module = importlib.import_module(RUNTIMES[name] + ".interpreter")
        except ImportError:
            continue
        package = importlib.import_module(RUNTIMES[name])
        return name, getattr(package, "__version__", "?"), module
    raise ImportError(f"no TFLite runtime importable for {runtime!r}: pip install ai-edge-litert (or tflite-runtime)")


def interpreter_kwargs(module, threads: int | None, kernels: str) -> dict:
    """Constructor arguments for ``module.Interpreter``: threads and the kernel choice."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    kwargs = {"num_threads": threads} if threads else {}
    if kernels == "builtin":
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return kwargs


def sample_input(detail: dict, seed: int = 0) -> np.ndarray:
    """A fixed random input of the model's own shape and type (pixel range for float inputs)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return rng.uniform(0, 255, detail["shape"]).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, detail["shape"], endpoint=True).astype(dtype)


def time_invoke(interpreter, x: np.ndarray, runs: int, warmup: int) -> np.ndarray:
    """Seconds of each of ``runs`` timed ``invoke`` calls (``perf_counter`` around ``invoke`` only),
    after ``warmup`` untimed ones; the input is set before each call."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    index = interpreter.get_input_details()[0]["index"]
    for _ in range(warmup):
        interpreter.set_tensor(index, x)
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        interpreter.set_tensor(index, x)
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return times


def summary(seconds: np.ndarray) -> dict:
    """Median, mean, p90, min and max in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()), "p90_ms": float(np.percentile(ms, 90)),
            "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def compare(paths: list[str], *, runtime: str = "auto", threads: int | None = None, kernels: str = "xnnpack",
            runs: int = 200, warmup: int = 10, rounds: int = 1, seed: int = 0) -> dict:
    """Time every model in ``paths`` with the same runtime, threads and kernels, in turn for ``rounds``
    rounds of ``runs`` invocations each; figures per model pool every round's timings."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    name, version, module = runtime_module(runtime)
    kwargs = interpreter_kwargs(module, threads, kernels)
    interpreters, inputs = [], []
    for path in paths:
        try:
            interp = module.Interpreter(model_path=str(path), **kwargs)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        interpreters.append(interp)
        inputs.append(sample_input(interp.get_input_details()[0], seed))
    pooled = [[] for _ in paths]
    for _ in range(rounds):
        for i, interp in enumerate(interpreters):
            pooled[i].append(time_invoke(interp, inputs[i], runs, warmup))
    models = [{"path": str(p), **summary(np.concatenate(t))} for p, t in zip(paths, pooled)]
    return {"runtime": name, "version": version, "threads": threads, "kernels": kernels, "runs": runs,
            "rounds": rounds, "warmup": warmup, "models": models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time invoke() of .tflite models with one runtime; prints JSON.")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--runtime", default="auto", choices=["auto", *RUNTIMES])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--kernels", default="xnnpack", choices=KERNELS)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        result = compare(args.models, runtime=args.runtime, threads=args.threads, kernels=args.kernels,
                         runs=args.runs, warmup=args.warmup, rounds=args.rounds)
    except (ImportError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
