#!/usr/bin/env python
"""resnet-edge's .tflite against what users would pick instead (figures, not a test).

For ResNet-18 and ResNet-50 at 224x224, batch 1, at 1 and 2 threads, in one run on this machine:

* ours: ``resnet-edge convert --depth D --float32 --int8``, timed by ``resnet-edge bench``'s harness;
* the bare TensorFlow converter's full int8 of the same architecture (DEFAULT optimization, the same
  calibration images, TFLITE_BUILTINS_INT8), what a notebook does;
* ONNX Runtime on a tf2onnx export of the same Keras network: float32, and static QDQ int8 with unsigned
  activations and signed per-channel weights (U8S8, its fastest int8 on x86; S8S8 with --s8s8 too);
* OpenVINO's CPU plugin on our own two .tflite files (``--runtime openvino``, the same harness), float32 at
  INFERENCE_PRECISION_HINT f32 and bf16, int8 as it is (OpenVINO's own conversion of the network is not
  timed: its int8 needs its NNCF quantizer, another calibration, so it would not be the same model).

All models are timed in turn, round after round (``--rounds``); medians and p90 pool every round. It
prints the CPU, each median and p90, the ratios the goals name, and the multiply-accumulates per second
achieved against an estimate of the CPU's peak. ONNX Runtime and tf2onnx do not go into the project's
environment; make a side one that sees TensorFlow::

    python -m venv --system-site-packages .peers
    .peers/bin/pip install onnxruntime onnx && .peers/bin/pip install --no-deps tf2onnx
    .peers/bin/python tools/bench_peers.py --out runs/bench_peers

Without ONNX Runtime (``--no-ort``) the rest is timed all the same; without OpenVINO, ``--no-openvino``.
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


def _cpu_mhz() -> float | None:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return None


def peak_macs_per_s(isa: list[str], threads: int, int8: bool) -> float | None:
    """An upper estimate of the CPU's peak MACs/s at the clock /proc/cpuinfo reports: threads x clock x MACs
    per cycle per core, assuming two 512-bit FMA pipes (32 float32 MACs) and, with VNNI, two 512-bit
    VPDPBUSD (128 int8 MACs; 64 without VNNI). Zen 4 runs 512-bit operations on 256-bit pipes and boosts
    above its nominal clock, so read the percentage as an order of magnitude, not a roofline."""
    mhz = _cpu_mhz()
    if mhz is None:
        return None
    vnni = any("VNNI" in name for name in isa)
    per_cycle = (128 if vnni else 64) if int8 else 32
    return threads * mhz * 1e6 * per_cycle


def bare_int8(model, rep) -> bytes:
    """The bare TensorFlow converter's full int8 of a Keras model, as a notebook writes it."""
    from resnet_edge._tf import tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def onnx_models(model, rep, folder: Path, activations=("U8S8",)) -> dict[str, Path]:
    """A tf2onnx export of ``model`` (float32) and ONNX Runtime's static QDQ int8 of it, per-channel signed
    weights, for each activation type in ``activations`` (U8S8: unsigned, S8S8: signed)."""
    import tf2onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from resnet_edge._tf import tf

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ORT float32": folder / "model.onnx"}
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((1, *model.input_shape[1:]), tf.float32,
                                                                     name="input"),), opset=17,
                               output_path=str(paths["ORT float32"]))
    prepared = folder / "model_prep.onnx"
    quant_pre_process(str(paths["ORT float32"]), str(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": rep[i:i + 1]} for i in range(32)])

        def get_next(self):
            return next(self.items, None)

    for kind in activations:
        target = folder / f"model_{kind.lower()}.onnx"
        quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if kind == "U8S8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8)
        paths[f"ORT int8 {kind}"] = target
    return paths


def aeq_int8(float_model: Path, rep, target: Path) -> Path:
    """Google's ai-edge-quantizer (static int8 weights and activations) applied to our float32 .tflite,
    calibrated on the same images."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_model))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    calibration = qt.calibrate({"serving_default": [{"input": rep[i:i + 1]} for i in range(32)]}, num_threads=2)
    qt.quantize(calibration).export_model(str(target))
    return target


def make_models(depth: int, out: Path, s8s8: bool, aeq: bool, ort: bool = True) -> tuple[dict, int]:
    """Every model of one depth: {name: path}, and the network's MACs."""
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, count, resolve
    from resnet_edge.convert import model_samples
    from resnet_edge.data import load

    # the network `convert --depth D` builds: ImageNet's normalization inside (the digits do not fit it), so the
    # bare converter's and ONNX Runtime's models compute what ours computes, input normalization included
    spec = resolve(depth, preprocess=Preprocess(IMAGENET_MEAN, IMAGENET_STD, "float32"))
    folder = out / f"resnet{depth}"
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "resnet_edge", "convert", "--depth", str(depth), "--float32", "--int8",
                           "--out", str(folder), "--json"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(proc.stderr)
    paths = {"ours float32": folder / f"resnet{depth}_float32.tflite", "ours int8": folder / f"resnet{depth}_int8.tflite"}
    model = build_model(spec)  # the same architecture; latency does not depend on the weight values
    rep, _, _ = model_samples(model, load("digits"), "train", 100)
    paths["bare int8"] = folder / "bare_int8.tflite"
    paths["bare int8"].write_bytes(bare_int8(model, rep))
    if aeq:
        paths["AEQ int8"] = aeq_int8(paths["ours float32"], rep, folder / "aeq_int8.tflite")
    if ort:
        paths.update(onnx_models(model, rep, folder, ("U8S8", "S8S8") if s8s8 else ("U8S8",)))
    return paths, count(spec).macs


def _verdict(ratio: float, goal: float) -> str:
    """'ok' at or under the goal; else how far over it, in percent."""
    return "ok" if ratio <= goal else f"MISS by {100 * (ratio / goal - 1):.1f}%"


def time_onnx(path: Path, threads: int, runs: int, warmup: int) -> list[float]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = {inp.name: np.random.default_rng(0).uniform(0, 255, (1, *inp.shape[1:])).astype(np.float32)}
    for _ in range(warmup):
        session.run(None, x)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, x)
        times.append((time.perf_counter() - started) * 1e3)
    return times


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--depths", default="18,50", show_default=True)
@click.option("--threads", "thread_list", default="1,2", show_default=True)
@click.option("--runs", type=int, default=20, show_default=True, help="Timed runs per model per round.")
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--s8s8", is_flag=True, help="Also ONNX Runtime's default signed-activation int8 (S8S8).")
@click.option("--aeq", is_flag=True, help="Also ai-edge-quantizer's static int8 of our float32 model (pip install ai-edge-quantizer).")
@click.option("--ort/--no-ort", default=True, show_default=True, help="ONNX Runtime (needs onnxruntime and tf2onnx).")
@click.option("--openvino/--no-openvino", default=True, show_default=True, help="OpenVINO on our .tflite files.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench_peers", show_default=True)
def main(depths, thread_list, runs, rounds, s8s8, aeq, ort, openvino, out):
    import numpy as np

    from resnet_edge.measure.bench import bench

    from resnet_edge.runtime.setting import Setting
    from resnet_edge.harness import machine
    from resnet_edge.ui import table

    out = Path(out).resolve()
    m = machine()
    rows, results = [], []
    for depth in [int(d) for d in depths.split(",")]:
        paths, macs = make_models(depth, out, s8s8, aeq, ort)
        tfl = {k: v for k, v in paths.items() if v.suffix == ".tflite"}
        ov = {"OV f32 on ours float32": (paths["ours float32"], "f32"),
              "OV bf16 on ours float32": (paths["ours float32"], "bf16"),
              "OV on ours int8": (paths["ours int8"], "f32")} if openvino else {}
        for threads in [int(t) for t in thread_list.split(",")]:
            pooled = {name: [] for name in [*paths, *ov]}
            for rnd in range(rounds):
                print(f"ResNet-{depth}, {threads} thread(s), round {rnd + 1}/{rounds}", file=sys.stderr)
                # verify=False: ai-edge-quantizer keeps our metadata entry, and so our checksum, in the file it
                # rewrites; this script made every file itself just now.
                r = bench(list(tfl.values()), [Setting(threads=threads)], runs=runs, warmup=3, measure_memory=False,
                          verify=False, keep_times=True)
                for name, rec in zip(tfl, r["records"]):
                    pooled[name] += rec["times_ms"]
                for name, path in paths.items():
                    if path.suffix == ".onnx":
                        pooled[name] += time_onnx(path, threads, runs, 3)
                for name, (path, precision) in ov.items():
                    (rec,) = bench([path], [Setting(runtime="openvino", threads=threads, precision=precision)],
                                   runs=runs, warmup=3, measure_memory=False, keep_times=True)["records"]
                    pooled[name] += rec["times_ms"]
            med = {name: float(np.median(t)) for name, t in pooled.items()}
            best_ort = min((v for k, v in med.items() if k.startswith("ORT int8")), default=float("nan"))
            for name, t in pooled.items():
                int8 = "int8" in name
                achieved = macs / (med[name] / 1e3)
                peak = peak_macs_per_s(m["isa"], threads, int8)
                rows.append({"model": f"ResNet-{depth}", "threads": threads, "runtime": name, "p50": f"{med[name]:.2f}",
                             "p90": f"{np.percentile(t, 90):.2f}", "gmacs": f"{achieved / 1e9:.1f}",
                             "peak": "-" if not peak else f"{100 * achieved / peak:.0f}%"})
            results.append({"depth": depth, "threads": threads, "median_ms": med, "macs": macs,
                            "int8_speedup_over_float32": med["ours float32"] / med["ours int8"],
                            "ours_int8_over_bare_int8": med["ours int8"] / med["bare int8"],
                            "ours_int8_over_best_ort_int8": med["ours int8"] / best_ort,
                            **({"litert_int8_over_openvino_int8": med["ours int8"] / med["OV on ours int8"],
                                "litert_float32_over_openvino_f32": med["ours float32"] / med["OV f32 on ours float32"]}
                               if ov else {})})
    print(f"{m['cpu']} ({', '.join(m['isa'])}), {m['cores']} cores, {_cpu_mhz() or '?'} MHz; batch 1; "
          f"{rounds} rounds x {runs} runs per model, in turn")
    print(table(rows, [("model", "model"), ("threads", "threads"), ("runtime", "runtime"), ("p50", "p50 ms"),
                       ("p90", "p90 ms"), ("gmacs", "GMAC/s"), ("peak", "of est. peak")],
                right={"threads", "p50", "p90", "gmacs", "peak"}))
    print()
    goal_rows = [{"case": f"ResNet-{r['depth']} {r['threads']}t",
                  "speedup": f"{r['int8_speedup_over_float32']:.2f}x {'ok' if r['int8_speedup_over_float32'] >= 3 else 'MISS'}",
                  "bare": f"{r['ours_int8_over_bare_int8']:.3f} {_verdict(r['ours_int8_over_bare_int8'], 1.0)}",
                  "ort": f"{r['ours_int8_over_best_ort_int8']:.3f} {_verdict(r['ours_int8_over_best_ort_int8'], 0.9)}",
                  "ov": "-" if "litert_int8_over_openvino_int8" not in r else
                        f"int8 {r['litert_int8_over_openvino_int8']:.2f}, float32 {r['litert_float32_over_openvino_f32']:.2f}"}
                 for r in results]
    print(table(goal_rows, [("case", "case"), ("speedup", "int8 vs float32 (goal >= 3.0x)"),
                            ("bare", "ours / bare int8 (goal <= 1.00)"), ("ort", "ours / ORT best int8 (goal <= 0.90)"),
                            ("ov", "LiteRT / OpenVINO (f32) on our files")]))
    (out / "bench_peers.json").write_text(json.dumps({"machine": m, "rows": rows, "results": results}, indent=2))


if __name__ == "__main__":
    main()
