#!/usr/bin/env python
"""Benchmark of `resnet-edge convert` (figures, not a test): where the time of one conversion goes.

For ResNet-20 (CIFAR, 32x32), ResNet-18 and ResNet-50 (224x224), in int8 and float32, as a user runs it
(`resnet-edge convert --depth D [--int8]` on the bundled digits, a fresh process each time):

* the wall time of the command end to end, median (and min/max) of ``--repeat`` runs, with peak memory;
* the time of each step, from one more run in a fresh process whose steps are timed as they report
  progress (TensorFlow's import, the data, building the model, calibration images, conversion,
  calibration, parity, the checks);
* for ResNet-18 int8: the latency of the toolkit's model against the bare converter's int8 of the same
  weights (``TFLiteConverter.from_keras_model``, TensorFlow's calibrator, the same calibration images),
  interleaved runs on this runtime, and their top-1 agreement with each other.

The CPU and its ISA head the output.

    python tools/bench_convert.py                       # all six, 3 runs each
    python tools/bench_convert.py --only resnet18:int8 --repeat 5
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {  # name -> the convert arguments that build it
    "resnet20": ["--depth", "20", "--family", "cifar"],
    "resnet18": ["--depth", "18"],
    "resnet50": ["--depth", "50"],
}

# Run in a fresh process: every step timed as it starts, in one line of JSON at the end.
STEPS = r"""
import json, sys, time
t0 = time.perf_counter(); marks = []
def mark(name): marks.append((name, time.perf_counter() - t0))  # a step starts
mark("import TensorFlow")
from resnet_edge._tf import tf
mark("load the data")
from resnet_edge.data import load
data = load("digits")
from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve
from resnet_edge.arch.keras_model import build_model
from resnet_edge.convert import convert
depth, family, mode, out = int(sys.argv[1]), sys.argv[2] or None, sys.argv[3], sys.argv[4]
probe = resolve(depth, family=family)
fits = probe.family == "cifar" and data.image_size == probe.input_size
pre = Preprocess(tuple(data.mean), tuple(data.std), "float32") if fits else Preprocess(IMAGENET_MEAN, IMAGENET_STD, "float32")
spec = resolve(depth, family=family, classes=data.num_classes if fits else None, preprocess=pre)
import re
def progress(text):
    name = re.sub(r" \d+/\d+$", "", text.split(": ", 1)[-1])
    if not marks or marks[-1][0] != name:
        mark(name)
mark("build the model")
convert(spec=spec, modes=[mode], out=out, data=data, progress=progress)
mark("end")
print(json.dumps(marks))
"""


def _steps(marks: list) -> list[tuple[str, float]]:
    """[(step, seconds)]: each step's time from its start until the next step's."""
    out: dict[str, float] = {}
    for (name, t), (_, t_next) in zip(marks, marks[1:]):
        label = "convert (freeze, MLIR; int8: + quantize)" if name == "converting" else name
        label = re.sub(r"^parity: reading \d+ test images.*$", "parity: read the test images, score them in Keras", label)
        label = "parity: run the .tflite on them" if label == "parity" else label
        label = re.sub(r"^reading \d+ calibration images$", "read the calibration images", label)
        out[label] = out.get(label, 0.0) + (t_next - t)
    return list(out.items())


def _peak_of(args: list[str], cwd: Path) -> float:
    """Peak memory (MB) of one run, measured by /usr/bin/time-like wait4 accounting of that child alone."""
    import os

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(sys.executable, [sys.executable, "-m", "resnet_edge", "convert", *args])
    _, status, usage = os.wait4(pid, 0)
    if status:
        sys.exit(f"convert {' '.join(args)} failed")
    return usage.ru_maxrss / 1024


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--only", multiple=True, help="NAME:MODE to run (repeatable), e.g. resnet18:int8. Default: all six.")
@click.option("--repeat", type=click.IntRange(1, 20), default=3, show_default=True, help="End-to-end runs per case.")
@click.option("--threads", type=int, default=2, show_default=True, help="Threads for the latency comparison.")
@click.option("--runs", type=int, default=30, show_default=True, help="Timed runs per model per round (latency).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench_convert", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(only, repeat, threads, runs, out, as_json):
    from resnet_edge.harness import machine
    from resnet_edge.ui import table

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cases = [c.split(":") for c in only] or [[n, m] for n in CASES for m in ("int8", "float32")]
    bad = [c for c in cases if len(c) != 2 or c[0] not in CASES or c[1] not in ("int8", "float32")]
    if bad:
        raise click.UsageError(f"--only NAME:MODE with NAME in {', '.join(CASES)} and MODE int8 or float32; got {bad}")
    m = machine()
    results = []
    for name, mode in cases:
        target = out / f"{name}_{mode}.tflite"
        args = CASES[name] + ([f"--{mode}"] if mode == "int8" else []) + ["--out", str(target)]
        walls, peaks = [], []
        for i in range(repeat):
            print(f"{name} {mode}: run {i + 1}/{repeat}", file=sys.stderr)
            t0 = time.perf_counter()
            peaks.append(_peak_of(args, ROOT))
            walls.append(time.perf_counter() - t0)
        depth, family = CASES[name][1], CASES[name][3] if len(CASES[name]) > 2 else ""
        proc = subprocess.run([sys.executable, "-c", STEPS, depth, family, mode, str(out / f"{name}_{mode}_steps.tflite")],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            sys.exit(proc.stderr[-2000:])
        steps = _steps(json.loads(proc.stdout.strip().splitlines()[-1]))
        results.append({"model": name, "mode": mode, "wall_s": walls, "median_s": statistics.median(walls),
                        "peak_mb": max(peaks), "steps": steps})
    latency = _latency(out, threads, runs) if ["resnet18", "int8"] in cases else None
    report = {"cpu": m["cpu"], "isa": m["isa"], "cores": m.get("cores"), "results": results, "latency": latency}
    (out / "bench_convert.json").write_text(json.dumps(report, indent=2))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"{m['cpu']} ({', '.join(m['isa']) or 'no AVX-512/VNNI'}), {m.get('cores')} cores; median of {repeat} "
          f"fresh-process runs of `resnet-edge convert` on the bundled digits\n")
    print(table([{"case": f"{r['model']} {r['mode']}", "median": f"{r['median_s']:.1f}",
                  "range": f"{min(r['wall_s']):.1f}-{max(r['wall_s']):.1f}", "peak": f"{r['peak_mb']:.0f}"}
                 for r in results],
                [("case", "model / mode"), ("median", "wall s"), ("range", "min-max s"), ("peak", "peak MB")],
                right={"median", "range", "peak"}))
    names = list(dict.fromkeys(s for r in results for s, _ in r["steps"]))
    rows = [{"step": s, **{f"{r['model']} {r['mode']}": f"{dict(r['steps']).get(s, 0):.2f}" for r in results}}
            for s in names]
    rows.append({"step": "total (one run, in-process steps)",
                 **{f"{r['model']} {r['mode']}": f"{sum(t for _, t in r['steps']):.2f}" for r in results}})
    cols = [("step", "step (s)")] + [(f"{r['model']} {r['mode']}",) * 2 for r in results]
    print("\n" + table(rows, cols, right={c[0] for c in cols[1:]}))
    if latency:
        print(f"\nResNet-18 int8 latency, {threads} threads: toolkit {latency['toolkit_ms']:.2f} ms, bare converter "
              f"{latency['bare_ms']:.2f} ms (ratio {latency['ratio']:.3f}); top-1 agreement of the two on "
              f"{latency['agreement_n']} random images {latency['agreement']:.1%}")


def _latency(out: Path, threads: int, runs: int) -> dict:
    """The toolkit's int8 ResNet-18 against the bare converter's on the same weights and images."""
    import numpy as np

    from resnet_edge._tf import tf
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve
    from resnet_edge.convert import model_samples, to_tflite
    from resnet_edge.data import load
    from resnet_edge.runtime.runner import latency
    from resnet_edge.runtime.runner import TFLiteModel

    model = build_model(resolve(18, preprocess=Preprocess(IMAGENET_MEAN, IMAGENET_STD, "float32")))
    rep, _, _ = model_samples(model, load("digits"), "train", 100)
    ours = to_tflite(model, "int8", representative=rep)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    bare = conv.convert()
    (out / "toolkit_int8.tflite").write_bytes(ours)
    (out / "bare_int8.tflite").write_bytes(bare)
    ours_ms, bare_ms = [], []
    for _ in range(3):
        ours_ms.append(latency(out / "toolkit_int8.tflite", runs=runs, threads=threads)["median_ms"])
        bare_ms.append(latency(out / "bare_int8.tflite", runs=runs, threads=threads)["median_ms"])
    x = np.random.default_rng(0).uniform(0, 255, (64, 224, 224, 3)).astype(np.float32)
    a = TFLiteModel(ours, probe=False).predict(x)
    b = TFLiteModel(bare, probe=False).predict(x)
    return {"toolkit_ms": float(np.median(ours_ms)), "bare_ms": float(np.median(bare_ms)),
            "ratio": float(np.median(ours_ms) / np.median(bare_ms)), "agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "agreement_n": len(x)}


if __name__ == "__main__":
    main()
