#!/usr/bin/env python
"""Benchmark of `resnet-edge convert --depth 18 --int8` (figures, not a test).

Reports, measured on this machine in one run:
* wall time of the command end to end, as a user runs it (a fresh process; goal <= 20 s on 2 cores);
* size of the int8 ResNet-18 against float32 (about 11.8 MB vs 46.7 MB);
* latency of the toolkit's int8 model against the bare converter's int8 of the same Keras weights
  (TFLiteConverter, DEFAULT optimization, the same calibration images, TFLITE_BUILTINS_INT8), same runtime,
  same threads, interleaved runs; goal: ratio <= 1.00.

    python tools/bench_convert.py --out runs/bench_convert
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--depth", type=int, default=18, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--runs", type=int, default=30, show_default=True, help="Timed runs per model per round.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved rounds (toolkit, bare, toolkit, ...).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench_convert", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(depth, threads, runs, rounds, out, as_json):
    import numpy as np

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ours = out / f"resnet{depth}_int8.tflite"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "resnet_edge", "convert", "--depth", str(depth), "--int8",
                           "--out", str(ours), "--json"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(proc.stderr)
    (manifest,) = json.loads(proc.stdout)
    float_path = out / f"resnet{depth}_float32.tflite"
    proc = subprocess.run([sys.executable, "-m", "resnet_edge", "convert", "--depth", str(depth), "--out", str(float_path),
                           "--samples", "8", "--json"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(proc.stderr)
    (float_manifest,) = json.loads(proc.stdout)

    # The bare converter on the same weights and calibration images.
    from resnet_edge._tf import tf
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import resolve
    from resnet_edge.data import load
    from resnet_edge.convert import model_samples
    from resnet_edge.runtime.bench import latency

    # A fresh model of the same architecture (latency does not depend on the weight values) and the same
    # calibration images the toolkit uses.
    model = build_model(resolve(depth))
    rep, _, _ = model_samples(model, load("digits"), "train", 100)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    bare = conv.convert()
    (out / "bare_int8.tflite").write_bytes(bare)

    ours_ms, bare_ms = [], []
    for _ in range(rounds):
        ours_ms.append(latency(ours, runs=runs, threads=threads)["median_ms"])
        bare_ms.append(latency(bare, runs=runs, threads=threads)["median_ms"])
    ratio = float(np.median(ours_ms) / np.median(bare_ms))
    result = {
        "command": f"resnet-edge convert --depth {depth} --int8",
        "wall_seconds": round(wall, 1),
        "int8_bytes": manifest["file"]["bytes"],
        "float32_bytes": float_manifest["file"]["bytes"],
        "bare_int8_bytes": len(bare),
        "threads": threads,
        "latency_ms_toolkit": float(np.median(ours_ms)),
        "latency_ms_bare": float(np.median(bare_ms)),
        "latency_ratio_toolkit_over_bare": ratio,
        "rounds": {"toolkit": ours_ms, "bare": bare_ms},
        "parity_top1_agreement": manifest["parity"]["top1_agreement"],
    }
    (out / "bench_convert.json").write_text(json.dumps(result, indent=2))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    from resnet_edge.ui import human_bytes, key_values

    print(key_values([
        ("command", result["command"]),
        ("wall time", f"{wall:.1f} s end to end (goal <= 20 s)"),
        ("size", f"int8 {human_bytes(result['int8_bytes'])} vs float32 {human_bytes(result['float32_bytes'])} "
                 f"(bare converter int8 {human_bytes(len(bare))})"),
        ("latency", f"toolkit {result['latency_ms_toolkit']:.2f} ms vs bare {result['latency_ms_bare']:.2f} ms, "
                    f"{threads} threads, ratio {ratio:.3f} (goal <= 1.00)"),
    ]))


if __name__ == "__main__":
    main()
