#!/usr/bin/env python
"""Benchmark of the optimization commands on a trained ResNet-20 (figures, not a test).

Goals from the issue, reported as measured (accuracy on the test split, through the TFLite runtime):
* QAT int8 TFLite within 0.3 points of the float TFLite model;
* 50% magnitude sparsity within 1 point; 2:4 sparsity reported;
* PQAT keeps >= 49% zeros in the int8 weights;
* channel pruning at 0.5: >= 1.5x lower TFLite latency (same runtime, same threads, one run) at <= 1 point lost;
* channel pruning of an (untrained) ResNet-18 at 224x224, for latency only.

Channel-pruning latency is timed for every runtime at hand (LiteRT here; tflite-runtime 2.14 too when
RESNET_EDGE_TFLITE_RUNTIME_PYTHON names its environment, see tools/make_tflite_runtime_env.sh), with
XNNPACK and with TFLite's builtin kernels, at each --threads count; the models of one row are timed in
turn in one process. Three one-layer probes (a 3x3 convolution at 32x32 with 16->16, 16->8 and 8->16
channels) show what a halved stage-1 convolution saves on that runtime: XNNPACK's float kernels on
x86 compute output channels in tiles of 16, so there 16->8 costs as much as 16->16.

    python tools/bench_optimize.py --model runs/bench_train/full/model.keras --out runs/bench_optimize
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


PROBES = ((16, 16), (16, 8), (8, 16))  # 3x3 convolutions at 32x32: ResNet-20's first stage, whole and halved


def conv_probes() -> dict[str, bytes]:
    """One-layer float32 models, a 3x3 convolution at 32x32 per (in, out) channel pair of ``PROBES``: they
    show whether the runtime's kernel gets faster when a stage-1 convolution loses half its filters."""
    from resnet_edge._tf import keras
    from resnet_edge.convert import to_tflite

    probes = {}
    for cin, cout in PROBES:
        x = keras.Input((32, 32, cin))
        y = keras.layers.Conv2D(cout, 3, padding="same", activation="relu")(x)
        probes[f"conv{cin}to{cout}"] = to_tflite(keras.Model(x, y), "float32")
    return probes


def runtimes() -> list[tuple[str, str]]:
    """(runtime, python) pairs to time with: LiteRT here, and tflite-runtime 2.14 where its side
    environment (tools/make_tflite_runtime_env.sh) is named by RESNET_EDGE_TFLITE_RUNTIME_PYTHON."""
    from resnet_edge.runtime.jobs import OLD_RUNTIME_ENV

    found = [("litert", sys.executable)]
    if os.environ.get(OLD_RUNTIME_ENV):
        found.append(("tflite-runtime", os.environ[OLD_RUNTIME_ENV]))
    return found


def latency_matrix(paths: dict[str, Path], threads: list[int], runs: int, rounds: int) -> list[dict]:
    """Median ms of every model per (runtime, kernels, threads), all models of a row timed in turn in one child."""
    from resnet_edge.measure.bench import bench
    from resnet_edge.runtime.setting import Setting

    matrix = []
    for runtime, _ in runtimes():
        for kernels in ("xnnpack", "builtin"):
            for n in threads:
                r = bench(list(paths.values()), [Setting(runtime=runtime, kernels=kernels, threads=n)], runs=runs,
                          rounds=rounds, measure_memory=False)
                first = r["records"][0]
                row = {"runtime": f"{first['runtime']} {first['runtime_version']}", "kernels": kernels, "threads": n}
                row.update({name: rec["p50_ms"] for name, rec in zip(paths, r["records"])})
                row["float32_speedup"] = row["float32"] / row["channels50_float32"]
                row["int8_speedup"] = row["int8"] / row["channels50_int8"]
                matrix.append(row)
    return matrix


def latency_table(matrix: list[dict]) -> str:
    from resnet_edge.ui import table

    shown = []
    for r in matrix:
        probe = " / ".join(f"{r[f'conv{i}to{o}'] * 1e3:.1f}" for i, o in PROBES)
        shown.append({"rt": r["runtime"], "k": r["kernels"], "t": r["threads"],
                      "f": f"{r['float32']:.3f} -> {r['channels50_float32']:.3f}", "fx": f"{r['float32_speedup']:.2f}x",
                      "q": f"{r['int8']:.3f} -> {r['channels50_int8']:.3f}", "qx": f"{r['int8_speedup']:.2f}x",
                      "p": probe})
    probe_head = "3x3 conv 32x32 " + " / ".join(f"{i}->{o}" for i, o in PROBES) + " (us)"
    return table(shown, [("rt", "runtime"), ("k", "kernels"), ("t", "threads"), ("f", "float32 ms: full -> channels 0.5"),
                         ("fx", "speedup"), ("q", "int8 ms: full -> channels 0.5"), ("qx", "speedup"), ("p", probe_head)],
                 right={"t", "fx", "qx"})


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_path", type=click.Path(dir_okay=False),
              help="A trained float ResNet (with its manifest); default: train ResNet-20 on digits for 15 epochs.")
@click.option("--data", "source", default="digits", show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True, help="Fine-tuning epochs of each optimization.")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts to time, comma-separated.")
@click.option("--runs", type=int, default=200, show_default=True, help="Timed runs per model and round.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Rounds of timing, the models in turn.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench_optimize", show_default=True)
@click.option("--skip-resnet18", is_flag=True, help="Leave out the ResNet-18 224x224 latency figure.")
@click.option("--json", "as_json", is_flag=True)
def main(model_path, source, epochs, threads, runs, rounds, out, skip_resnet18, as_json):
    threads = [int(t) for t in threads.split(",")]
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.arch.spec import resolve
    from resnet_edge.build import build
    from resnet_edge.convert import convert_and_check, to_tflite
    from resnet_edge.data import load
    from resnet_edge.optimize.channels import channel_prune, thin
    from resnet_edge.optimize.prune import prune
    from resnet_edge.optimize.qat import qat
    from resnet_edge.runtime.runner import latency
    from resnet_edge.ui import table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load(source)
    if model_path is None:
        from resnet_edge.train import Recipe, saved_run, spec_for_data, train

        run = out / "r20"
        if not (run / "model.keras").exists():
            train(spec_for_data(data, model="resnet20"), data, run, Recipe(epochs=15), resume=saved_run(run) is not None)
        model_path = run / "model.keras"
    base = load_model(model_path)

    def tfl(model, mode="float32", io="float32"):
        return convert_and_check(model, data, mode, io=io, split="test")

    rows, result = [], {"model": str(model_path), "data": source, "threads": threads}
    float_bytes, f = tfl(base)
    rows.append({"model": "float32 (baseline)", "acc": f["tflite_accuracy"], "note": f"{len(float_bytes):,} bytes"})
    ptq_bytes, p = tfl(base, "int8", "int8")
    rows.append({"model": "int8 post-training", "acc": p["tflite_accuracy"], "note": "100 calibration images"})

    qat(model_path, data, out / "qat.h5", epochs=epochs)
    q_bytes, q = tfl(load_model(out / "qat.h5"), "int8", "int8")
    rows.append({"model": "int8 QAT", "acc": q["tflite_accuracy"],
                 "note": f"goal: within 0.3 points of float ({100 * (q['tflite_accuracy'] - f['tflite_accuracy']):+.2f})"})

    m50 = prune(model_path, data, out / "sparse50.keras", sparsity=0.5, epochs=epochs)
    _, s50 = tfl(load_model(out / "sparse50.keras"))
    rows.append({"model": "50% magnitude sparsity", "acc": s50["tflite_accuracy"],
                 "note": f"sparsity {m50['sparsity']:.1%}; gzip {m50['gzip_bytes']['float32_tflite_before']:,} -> "
                         f"{m50['gzip_bytes']['float32_tflite_after']:,} B; goal: within 1 point "
                         f"({100 * (s50['tflite_accuracy'] - f['tflite_accuracy']):+.2f})"})

    m24 = prune(model_path, data, out / "sparse24.keras", structure="2:4", epochs=epochs)
    _, s24 = tfl(load_model(out / "sparse24.keras"))
    rows.append({"model": "2:4 sparsity", "acc": s24["tflite_accuracy"],
                 "note": f"sparsity {m24['sparsity']:.1%}, every layer 2:4: {all(r['m_by_n_ok'] for r in m24['layers'])}"})

    mpq = prune(model_path, data, out / "pqat.h5", sparsity=0.5, epochs=epochs, pqat=True)
    pq = mpq["int8_tflite"]
    rows.append({"model": "50% sparsity + PQAT int8", "acc": None,
                 "note": f"val acc {pq['tflite_accuracy']:.2%}; zeros in int8 weights {pq['weight_sparsity']['sparsity']:.1%} "
                         f"(goal >= 49%); gzip {pq['gzip_bytes']:,} B vs {len(q_bytes):,} B raw QAT int8"})

    mch = channel_prune(model_path, data, out / "channels50.keras", keep=0.5, epochs=max(epochs, 5))
    thin_model = load_model(out / "channels50.keras")
    thin_bytes, ch = tfl(thin_model)
    thin_int8, _ = tfl(thin_model, "int8", "int8")
    files = {"float32": float_bytes, "channels50_float32": thin_bytes, "int8": ptq_bytes, "channels50_int8": thin_int8,
             **conv_probes()}
    paths = {}
    for name, content in files.items():
        paths[name] = out / f"latency_{name}.tflite"
        paths[name].write_bytes(content)
    matrix = latency_matrix(paths, threads, runs, rounds)
    result["latency"] = matrix
    head = matrix[0]
    rows.append({"model": "channels 0.5 (float32)", "acc": ch["tflite_accuracy"],
                 "note": f"MACs x{mch['counts']['mac_ratio']:.2f}; {head['runtime']} {head['kernels']} {head['threads']} "
                         f"thread(s): {head['float32']:.3f} -> {head['channels50_float32']:.3f} ms = "
                         f"{head['float32_speedup']:.2f}x (goal >= 1.5x; every runtime below)"})
    result["rows"] = rows

    if not skip_resnet18:
        spec = resolve(18)
        r18 = build(spec, out / "resnet18.keras")
        model18 = load_model(out / "resnet18.keras")
        thin18, _ = thin(model18, spec, 0.5)
        b18, t18 = to_tflite(model18), to_tflite(thin18)
        l18 = latency(b18, runs=max(10, runs // 10), threads=threads[0])
        lt18 = latency(t18, runs=max(10, runs // 10), threads=threads[0])
        from resnet_edge.arch.keras_model import count_keras

        result["resnet18"] = {"macs": r18["counts"]["macs"], "macs_thin": count_keras(thin18).macs,
                              "median_ms": l18["median_ms"], "median_ms_thin": lt18["median_ms"],
                              "speedup": l18["median_ms"] / lt18["median_ms"]}
        rows.append({"model": "ResNet-18 224 channels 0.5", "acc": None,
                     "note": f"untrained; MACs {r18['counts']['macs'] / 1e9:.2f}G -> {result['resnet18']['macs_thin'] / 1e9:.2f}G; "
                             f"float32 latency {l18['median_ms']:.1f} -> {lt18['median_ms']:.1f} ms = {result['resnet18']['speedup']:.2f}x"})
    (out / "bench_optimize.json").write_text(json.dumps(result, indent=2))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    shown = [{**r, "acc": "-" if r["acc"] is None else f"{r['acc']:.2%}"} for r in rows]
    print(table(shown, [("model", "model"), ("acc", "test top-1 (TFLite)"), ("note", "notes")], right={"acc"}))
    print(f"\n{len(data.test)} test images" + ("" if skip_resnet18 else
          f"; ResNet-18 latency: LiteRT XNNPACK, {threads[0]} thread(s)") + ".\n")
    print(latency_table(matrix))
    print(f"\nLatency: median ms of {rounds} x {runs} runs; the models of a row are timed in turn in one child process.")


if __name__ == "__main__":
    main()
