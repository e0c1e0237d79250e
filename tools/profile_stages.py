#!/usr/bin/env python
"""Where int8 time goes, stage by stage: LiteRT (XNNPACK) against ONNX Runtime's U8S8 (figures, not a test).

Neither runtime's Python API gives a per-operator profile here (LiteRT's ``benchmark_model
--enable_op_profiling`` is a C++ binary that no package ships for x86), so this cuts the network instead: the
ResNet truncated after the stem and after each stage, each prefix converted to full int8 by the bare
TensorFlow converter (the same kernels as ``convert --int8``: 0.995-1.014x in ``bench_peers.py``) and by ONNX
Runtime's static QDQ quantizer, every prefix timed in turn, round after round. A stage's time is the
difference between consecutive prefixes; the table shows both runtimes' time per stage and their ratio.
Runs in the side environment of ``bench_peers.py``::

    .peers/bin/python tools/profile_stages.py --depth 18 --threads 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--depth", type=int, default=18, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--runs", type=int, default=20, show_default=True)
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/profile_stages", show_default=True)
def main(depth, threads, runs, rounds, out):
    import numpy as np

    from bench_peers import bare_int8, onnx_models, time_onnx
    from resnet_edge._tf import keras
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import resolve
    from resnet_edge.convert import model_samples
    from resnet_edge.data import load
    from resnet_edge.measure.bench import bench
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.harness import machine
    from resnet_edge.ui import table

    out = Path(out).resolve()
    model = build_model(resolve(depth))
    rep, _, _ = model_samples(model, load("digits"), "train", 100)
    names = [layer.name for layer in model.layers]
    stage_ends = [max(n for n in names if n.startswith(f"conv{s}_block") and n.endswith("_out")) for s in (2, 3, 4, 5)]
    cuts = ["pool1_pool", *stage_ends, names[-1]]
    labels = ["stem (conv1 + pool)", "stage conv2", "stage conv3", "stage conv4", "stage conv5", "head (pool + fc + softmax)"]
    tfl, ort = [], []
    for cut in cuts:
        print(f"converting the prefix up to {cut}", file=sys.stderr)
        prefix = keras.Model(model.input, model.get_layer(cut).output)
        folder = out / f"resnet{depth}" / cut
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "int8.tflite").write_bytes(bare_int8(prefix, rep))
        tfl.append(folder / "int8.tflite")
        ort.append(onnx_models(prefix, rep, folder)["ORT int8 U8S8"])
    lite_ms, ort_ms = [[] for _ in cuts], [[] for _ in cuts]
    for rnd in range(rounds):
        print(f"round {rnd + 1}/{rounds}", file=sys.stderr)
        r = bench(tfl, [Setting(threads=threads)], runs=runs, warmup=3, measure_memory=False, keep_times=True)
        for i, rec in enumerate(r["records"]):
            lite_ms[i] += rec["times_ms"]
        for i, path in enumerate(ort):
            ort_ms[i] += time_onnx(path, threads, runs, 3)
    lite = [float(np.median(t)) for t in lite_ms]
    onnx = [float(np.median(t)) for t in ort_ms]
    rows = []
    for i, label in enumerate(labels):
        a = lite[i] - (lite[i - 1] if i else 0.0)
        b = onnx[i] - (onnx[i - 1] if i else 0.0)
        rows.append({"stage": label, "lite": f"{a:.2f}", "ort": f"{b:.2f}", "ratio": f"{a / b:.2f}" if b > 0 else "-"})
    rows.append({"stage": "whole network", "lite": f"{lite[-1]:.2f}", "ort": f"{onnx[-1]:.2f}",
                 "ratio": f"{lite[-1] / onnx[-1]:.3f}"})
    m = machine()
    print(f"ResNet-{depth} int8, {threads} thread(s), batch 1; {m['cpu']} ({', '.join(m['isa'])}); median of "
          f"{rounds} x {runs} runs per prefix, prefixes in turn")
    print(table(rows, [("stage", "stage"), ("lite", "LiteRT ms"), ("ort", "ORT U8S8 ms"), ("ratio", "LiteRT / ORT")],
                right={"lite", "ort", "ratio"}))


if __name__ == "__main__":
    main()
