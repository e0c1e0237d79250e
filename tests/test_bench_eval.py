"""resnet-edge bench and eval: real runs of every runtime that installs here (LiteRT's Interpreter and
CompiledModel on the CPU, tflite-runtime 2.14 in its side environment), models of ours and from
elsewhere (two inputs, a uint8 input, no metadata), accuracy against convert's manifest, and bad input."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_edge.cli import cli
from resnet_edge.errors import ConfigError, MissingDependencyError
from resnet_edge.measure.bench import bench

#: The fields of a bench record that the README documents: a change here is a change to users' scripts.
from resnet_edge.runtime.replies import HarnessFailed

#: The fields of a bench record that the README documents: a change here is a change to users' scripts.
from resnet_edge.runtime.setting import Setting, parse_setting

#: The fields of a bench record that the README documents: a change here is a change to users' scripts.
RECORD_FIELDS = {
    "model", "setting", "integrity", "model_bytes", "runtime", "runtime_version", "api", "accelerator",
    "fully_accelerated", "kernels", "threads", "delegate", "delegate_options", "weight_cache", "notes", "inputs",
    "input_source", "init_ms", "weight_cache_init", "first_inference_ms", "warmup_runs", "warmup_avg_ms", "runs",
    "rounds", "count", "avg_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "throughput_per_s",
    "rss_start_mb", "peak_rss_init_mb", "peak_rss_overall_mb", "memory_init_mb", "memory_overall_mb",
}


@pytest.fixture(scope="module")
def models(converted):
    out, m = converted
    return {mode: out / m[mode]["file"]["path"] for mode in m}, m


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Models from another tool (the bare TensorFlow converter, no resnet-edge metadata): two float
    inputs; one uint8 image input."""
    from resnet_edge._tf import tf

    out = tmp_path_factory.mktemp("foreign")

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32), tf.TensorSpec([1, 3, 2], tf.float32)])
        def __call__(self, a, b):
            return {"y": tf.concat([a * 2.0, tf.reshape(b, [1, 6])], axis=1)}

    two = Two()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([two.__call__.get_concrete_function()], two)
    (out / "two_inputs.tflite").write_bytes(conv.convert())

    class U8(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.uint8)])
        def __call__(self, x):
            return {"scores": tf.nn.softmax(tf.reshape(tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2]), [1, 3]))}

    u8 = U8()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([u8.__call__.get_concrete_function()], u8)
    (out / "uint8_input.tflite").write_bytes(conv.convert())
    return out


def _consistent(r: dict) -> None:
    assert RECORD_FIELDS <= set(r), RECORD_FIELDS - set(r)
    assert r["count"] == r["runs"] * r["rounds"]
    assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"], r
    assert r["min_ms"] <= r["avg_ms"] <= r["max_ms"] and r["std_ms"] >= 0
    assert r["init_ms"] > 0 and r["first_inference_ms"] > 0
    assert r["throughput_per_s"] == pytest.approx(1000 / r["avg_ms"])
    assert r["peak_rss_init_mb"] > 0 and r["peak_rss_overall_mb"] >= r["peak_rss_init_mb"]
    assert r["memory_init_mb"] > 0 and r["memory_overall_mb"] >= r["memory_init_mb"]
    assert r["runtime_version"] and r["runtime"] in ("litert", "tflite-runtime")


def test_bench_interpreter_and_compiled_model(models):
    """Two models x three settings (Interpreter with 1 and 2 threads, CompiledModel on the CPU), in turn
    for two rounds; the baseline's own ratio is 1."""
    paths, _ = models
    settings = [Setting(threads=1), Setting(threads=2), Setting(accelerator="cpu", threads=1)]
    r = bench([paths["float32"], paths["int8"]], settings, runs=4, warmup=1, rounds=2, baseline=paths["float32"])
    assert len(r["records"]) == 6 and r["machine"]["cpu"] and r["machine"]["cores"] >= 1
    from resnet_edge.harness import temperatures

    assert set(r["machine"]["temperature_c"]) == {"before", "after"}  # {} each where no thermal zone is exposed
    assert set(r["machine"]["temperature_c"]["after"]) == set(temperatures())
    for rec in r["records"]:
        _consistent(rec)
        assert rec["integrity"] == "verified" and rec["input_source"] == "signature"
    by = {(Path(x["model"]).name, x["setting"]): x for x in r["records"]}
    f32 = paths["float32"].name
    assert by[(f32, "xnnpack 1t")]["api"] == "interpreter" and by[(f32, "cpu 1t")]["api"] == "compiled_model"
    assert by[(f32, "cpu 1t")]["fully_accelerated"] in (True, False) and by[(f32, "xnnpack 1t")]["fully_accelerated"] is None
    assert [by[(f32, s)]["vs_baseline"] for s in ("xnnpack 1t", "xnnpack 2t", "cpu 1t")] == [1.0, 1.0, 1.0]
    assert by[(paths["int8"].name, "xnnpack 1t")]["vs_baseline"] > 0
    assert by[(paths["int8"].name, "xnnpack 1t")]["inputs"][0]["dtype"] == "int8"


def test_bench_cli_table_and_json(models, tmp_path):
    paths, _ = models
    r = CliRunner().invoke(cli, ["bench", str(paths["float32"]), "--threads", "1,2", "--runs", "3", "--warmup", "1"])
    assert r.exit_code == 0, r.output
    for text in ("init ms", "first ms", "warm-up ms", "p99", "inf/s", "peak RSS MB", "machine:", "litert"):
        assert text in r.output
    r = CliRunner().invoke(cli, ["bench", str(paths["int8"]), str(paths["float32"]), "--threads", "2", "--runs", "3",
                                 "--baseline", str(paths["float32"]), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert [Path(x["model"]).name for x in j["records"]] == [paths["int8"].name, paths["float32"].name]  # as given
    assert all(x["threads"] == 2 for x in j["records"]) and j["baseline"] == str(paths["float32"])


def test_bench_models_from_elsewhere(foreign):
    """Inputs made from the signature: any count, dtype and shape; foreign models are 'unverified'."""
    r = bench([foreign / "two_inputs.tflite", foreign / "uint8_input.tflite"], [Setting(threads=1)], runs=3, warmup=1)
    two, u8 = r["records"]
    for rec in (two, u8):
        _consistent(rec)
        assert rec["integrity"] == "unverified"
    assert sorted(tuple(i["shape"]) for i in two["inputs"]) == [(1, 3, 2), (1, 4)]
    assert u8["inputs"] == [{"name": u8["inputs"][0]["name"], "shape": [1, 8, 8, 3], "dtype": "uint8"}]
    text = CliRunner().invoke(cli, ["bench", str(foreign / "two_inputs.tflite"), "--runs", "2"]).output
    assert "not verified" in text


def test_signature_inputs_span_the_quantized_range():
    from resnet_edge.harness import signature_input

    rng = np.random.default_rng(0)
    q = signature_input({"dtype": "int8", "shape": [1, 64, 64, 3], "scale": 0.5, "zero_point": -3}, rng)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    raw = signature_input({"dtype": "float32", "shape": [1, 64, 64, 3], "scale": 0.0, "zero_point": 0}, rng)
    assert 0 <= raw.min() < 5 and 250 < raw.max() <= 255
    ids = signature_input({"dtype": "int32", "shape": [1, 100], "scale": 0.0, "zero_point": 0}, rng)
    assert ids.dtype == np.int32 and 0 <= ids.min() and ids.max() < 10


def test_bench_with_real_data_and_weight_cache(models, digits, tmp_path):
    paths, _ = models
    cache = tmp_path / "cache"
    first = CliRunner().invoke(cli, ["bench", str(paths["float32"]), "--accelerator", "cpu", "--weight-cache", str(cache),
                                     "--data", "digits", "--samples", "8", "--runs", "3", "--json"])
    assert first.exit_code == 0, first.output
    rec = json.loads(first.output)["records"][0]
    assert rec["input_source"] == "data" and rec["weight_cache"] == str(cache)
    wc = rec["weight_cache_init"]
    assert wc["init_without_ms"] > 0 and wc["init_building_ms"] > 0 and Path(wc["path"]).is_file()
    again = CliRunner().invoke(cli, ["bench", str(paths["float32"]), "--accelerator", "cpu", "--weight-cache", str(cache),
                                     "--runs", "3"])
    assert again.exit_code == 0 and "without it" in again.output and "building" not in again.output, again.output


def test_bench_tflite_runtime_2_14(models, old_runtime_python, monkeypatch):
    """The harness runs as a plain file with tflite-runtime 2.14 alone (no resnet_edge, numpy 1.x there):
    both kernel paths, models in turn."""
    paths, _ = models
    monkeypatch.setenv("RESNET_EDGE_TFLITE_RUNTIME_PYTHON", old_runtime_python)
    settings = [Setting(runtime="tflite-runtime", threads=1, kernels=k) for k in ("xnnpack", "builtin")]
    r = bench([paths["float32"], paths["int8"]], settings, runs=3, warmup=1, rounds=2)
    assert len(r["records"]) == 4
    for rec in r["records"]:
        _consistent(rec)
        assert (rec["runtime"], rec["runtime_version"]) == ("tflite-runtime", "2.14.0")
    assert {rec["kernels"] for rec in r["records"]} == {"xnnpack", "builtin"}


# --- eval ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_eval_accuracy_equals_converts_manifest(models, mode):
    """The same model and data give the accuracy convert recorded (its parity used the first 200 test images)."""
    paths, m = models
    r = CliRunner().invoke(cli, ["eval", str(paths[mode]), "--limit", "200", "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["n"] == 200 and j["top1"] == m[mode]["parity"]["tflite_accuracy"]
    assert j["top1"] <= j["top5"] <= 1 and len(j["per_class"]) == 10
    assert sum(sum(row) for row in j["confusion_matrix"]) == 200
    assert j["preprocessing"]["raw"] is True and j["integrity"] == "verified"


def test_evaluate_and_eval_report_the_same_figures_with_the_same_keys(models, trained_resnet20):
    """One evaluation module: `evaluate` (the Keras model) and `eval` (its float32 .tflite) on the same 200 test
    images report the same figures under the same keys, each equal to what convert's parity measured."""
    paths, m = models
    keras = CliRunner().invoke(cli, ["evaluate", str(trained_resnet20), "--limit", "200", "--json"])
    tfl = CliRunner().invoke(cli, ["eval", str(paths["float32"]), "--limit", "200", "--json"])
    assert keras.exit_code == 0 and tfl.exit_code == 0, keras.output + tfl.output
    keras, tfl = json.loads(keras.output), json.loads(tfl.output)
    figures = {"n", "top1", "top5", "top_k", "per_class", "confusions", "confusion_matrix"}
    assert figures <= set(keras) and figures <= set(tfl)
    assert keras["n"] == tfl["n"] == 200 and keras["top_k"] == tfl["top_k"] == 5
    assert keras["top1"] == m["float32"]["parity"]["keras_accuracy"]
    assert tfl["top1"] == m["float32"]["parity"]["tflite_accuracy"]
    assert [(c["class"], c["n"]) for c in keras["per_class"]] == [(c["class"], c["n"]) for c in tfl["per_class"]]
    assert [sum(row) for row in keras["confusion_matrix"]] == [sum(row) for row in tfl["confusion_matrix"]]
    for r in (keras, tfl):  # the named confusions are the matrix's largest off-diagonal cells, at most five
        cells = sorted((n for i, row in enumerate(r["confusion_matrix"]) for j, n in enumerate(row) if i != j and n),
                       reverse=True)[:5]
        assert [c["count"] for c in r["confusions"]] == cells


def test_eval_human_output_and_gates(models):
    paths, m = models
    r = CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--limit", "200", "--max-drop", "5"])
    assert r.exit_code == 0, r.output
    for text in ("top-1", "top-5", "confusions", "reference", "gate: passed", "per image"):
        assert text in r.output
    r = CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--limit", "200", "--min-accuracy", "100"])
    acc = 100 * m["int8"]["parity"]["tflite_accuracy"]
    assert r.exit_code == 1 and "class" in r.output  # the figures first, then the failure
    assert f"top-1 {acc:.2f}% against --min-accuracy 100%" in r.output.splitlines()[-1]
    r = CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--max-drop", "1"])  # all 360 images: no reference
    assert r.exit_code == 1 and "--max-drop needs a reference" in r.output


def test_eval_compare_with_keras(models, trained_resnet20):
    paths, m = models
    r = CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--limit", "200", "--compare", str(trained_resnet20),
                                 "--max-drop", "10", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["compare"]
    assert c["keras_top1"] == pytest.approx(m["int8"]["parity"]["keras_accuracy"])
    assert c["top1_agreement"] == pytest.approx(m["int8"]["parity"]["top1_agreement"])
    # The int8 side is exact; the Keras side's float32 scores (in [0, 1]) agree between two processes only to a few
    # ulps of 1.0 (1.2e-7 each): oneDNN picks its kernels, and so the order of its sums, by the CPU and the threads.
    # Seen: 4.2e-7 apart on the Intel Xeon CI machine (2026-12-02).
    assert c["max_abs_diff"] == pytest.approx(m["int8"]["parity"]["max_abs_diff"], abs=2e-6)


def test_eval_diff(models):
    """Two identical settings run twice and agree exactly; XNNPACK against the built-in kernels differ a
    little on float32 and agree on nearly every image."""
    paths, _ = models
    r = CliRunner().invoke(cli, ["eval", str(paths["float32"]), "--limit", "60", "--diff", "cpu,cpu", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["diff"]
    assert (d["max_abs_diff"], d["mean_abs_diff"], d["top1_agreement"]) == (0.0, 0.0, 1.0)
    assert [s["api"] for s in d["sides"]] == ["compiled_model", "compiled_model"] and d["sides"][0]["p50_ms"] > 0
    r = CliRunner().invoke(cli, ["eval", str(paths["float32"]), "--limit", "60", "--diff", "xnnpack,builtin"])
    assert r.exit_code == 0, r.output
    assert "xnnpack vs builtin: top-1 agreement" in r.output
    assert "step" not in json.loads(CliRunner().invoke(cli, ["eval", str(paths["float32"]), "--limit", "20", "--diff",
                                                             "cpu,cpu", "--json"]).output)["diff"]  # float: no steps


def test_eval_diff_counts_integer_outputs_in_quantization_steps(models):
    """An int8 model (float I/O, its softmax int8 underneath with a scale of 1/256): the two kernel libraries are
    compared in whole quantization steps, and the step counts say the same as the absolute differences."""
    paths, _ = models
    r = CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--limit", "60", "--diff", "xnnpack,builtin", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["diff"]
    assert d["step"] == 1 / 256  # the int8 softmax's scale, read from the DEQUANTIZE that feeds the float output
    assert d["max_abs_diff"] == pytest.approx(d["max_diff_steps"] * d["step"], abs=1e-6)
    assert d["scores"] == 60 * 10 and 0 <= d["scores_differing"] <= d["scores"]
    assert d["inputs_differing"] <= d["n"] == 60 and (d["scores_differing"] == 0) == (d["max_diff_steps"] == 0)
    same = json.loads(CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--limit", "60", "--diff", "cpu,cpu",
                                               "--json"]).output)["diff"]
    assert (same["max_diff_steps"], same["scores_differing"], same["inputs_differing"]) == (0, 0, 0)
    human = CliRunner().invoke(cli, ["eval", str(paths["int8"]), "--limit", "60", "--diff", "xnnpack,builtin"]).output
    assert f"in quantization steps (0.00391 each): at most {d['max_diff_steps']}" in human


def test_eval_foreign_model_options(foreign, digits):
    """A model without our metadata gets raw pixels unless --mean/--std say otherwise; a model whose input
    is not an RGB image, or whose classes differ from the data's, is one line."""
    from resnet_edge.measure.evaluation import model_inputs, preprocessing

    pre = preprocessing(None, digits)
    assert pre["raw"] and "assumed" in pre["from"]
    pre = preprocessing(None, digits, mean=(10, 20, 30), std=(2, 2, 2))
    x, y = model_inputs(digits, "test", [{"shape": [1, 8, 8, 3]}], [{"shape": [1, 10]}], pre, limit=4, resize=True)
    assert x.shape == (4, 8, 8, 3) and x.dtype == np.float32 and len(y) == 4
    raw = digits.test.x[:4].astype(np.float32)
    assert x.min() < (raw.min() - 30) / 2 + 1  # normalized, not raw
    r = CliRunner().invoke(cli, ["eval", str(foreign / "two_inputs.tflite")])
    assert r.exit_code == 1 and "2 inputs" in r.output
    r = CliRunner().invoke(cli, ["eval", str(foreign / "uint8_input.tflite"), "--resize"])
    assert r.exit_code == 1 and "has 10 classes" in r.output


# --- bad input -----------------------------------------------------------------------------------------


def _one_line_error(r, *fragments, code=1):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    for f in fragments:
        assert f in r.output, r.output


def test_bad_input(models, tmp_path, monkeypatch):
    paths, _ = models
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESNET_EDGE_TFLITE_RUNTIME_PYTHON", raising=False)
    text = tmp_path / "notes.tflite"
    text.write_text("not a model")
    run = CliRunner().invoke
    _one_line_error(run(cli, ["bench", str(text)]), "not a TFLite model")
    _one_line_error(run(cli, ["eval", str(text)]), "not a TFLite model")
    _one_line_error(run(cli, ["bench", str(tmp_path / "missing.tflite")]), "missing.tflite")
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--runs", "0"]), "--runs", code=2)
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--threads", "-1"]), "thread counts are 1..256", code=2)
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--threads", "1,x"]), "--threads", code=2)
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--accelerator", "gpu"]), "no usable GPU here", "--fallback")
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--weight-cache", "c"]), "--accelerator cpu")
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--runtime", "tflite-runtime", "--accelerator", "cpu"]),
                    "CompiledModel")
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--delegate", "nope.so"]), "delegate library not found")
    fake = tmp_path / "libfake_delegate.so"
    fake.write_bytes(b"\x7fELF not really")
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--delegate", str(fake), "--delegate-option", "a=b"]),
                    "did not load")
    _one_line_error(run(cli, ["bench", str(paths["float32"]), "--delegate-option", "novalue"]), "KEY=VALUE", code=2)
    _one_line_error(run(cli, ["eval", str(paths["float32"]), "--diff", "cpu"]), "two settings", code=2)
    _one_line_error(run(cli, ["eval", str(paths["float32"]), "--diff", "cpu,tpu"]), "unknown setting 'tpu'")
    _one_line_error(run(cli, ["eval", str(paths["float32"]), "--threads", "1,2"]), "one thread count", code=2)
    assert sorted(os.listdir(tmp_path)) == ["libfake_delegate.so", "notes.tflite"]  # nothing written


def test_gpu_fallback_says_so(models):
    """This machine has no GPU: --fallback runs on the CPU and the result says so (on a GPU machine the
    accelerator starts and the record says whether the model was fully accelerated)."""
    paths, _ = models
    r = bench([paths["float32"]], [Setting(accelerator="gpu", fallback=True, threads=1)], runs=2, warmup=0,
              measure_memory=False)
    rec = r["records"][0]
    if rec["accelerator"] == "gpu":
        pytest.skip("a GPU started here")
    assert rec["accelerator"] == "cpu (fallback)" and "fell back to the CPU" in rec["notes"][0]


def test_tflite_runtime_missing_is_one_line(models, tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("tflite_runtime"):
        pytest.skip("tflite-runtime is installed beside this Python")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESNET_EDGE_TFLITE_RUNTIME_PYTHON", raising=False)
    with pytest.raises(MissingDependencyError, match="make_tflite_runtime_env.sh"):
        bench([models[0]["float32"]], [Setting(runtime="tflite-runtime")])


def test_settings_words():
    base = Setting(threads=2)
    assert parse_setting("gpu+fallback", base) == Setting(accelerator="gpu", fallback=True, threads=2)
    assert parse_setting("builtin+1", base) == Setting(kernels="builtin", threads=1)
    with pytest.raises(ConfigError, match="--kernels builtin is an Interpreter option"):
        parse_setting("cpu+builtin", base)


def test_a_model_that_crashes_the_runtime_is_one_line(tmp_path):
    """The harness child has a memory cap: a model whose TILE needs 900 MB fails there, in one line."""
    from tests.test_reliability import tile_model

    bomb = tmp_path / "tile.tflite"
    bomb.write_bytes(tile_model(900_000_000 // 4))
    os.environ["RESNET_EDGE_CHILD_MEMORY_MB"] = "400"
    try:
        with pytest.raises(HarnessFailed) as info:
            bench([bomb], [Setting(threads=1)], runs=1, warmup=0, measure_memory=False)
    finally:
        del os.environ["RESNET_EDGE_CHILD_MEMORY_MB"]
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


def test_a_gpu_child_is_bounded_by_resident_memory(tmp_path, monkeypatch):
    """A GPU driver cannot start under an address-space cap (NVIDIA's Vulkan driver fails to create a thread:
    seen on an H200), so a child asked for the GPU is watched instead and killed when its resident memory
    passes the same limit. Here no GPU starts and --fallback runs the bomb on the CPU, under the watch."""
    from tests.test_reliability import tile_model

    bomb = tmp_path / "tile.tflite"
    bomb.write_bytes(tile_model(900_000_000 // 4))
    monkeypatch.setenv("RESNET_EDGE_CHILD_MEMORY_MB", "400")
    with pytest.raises(HarnessFailed, match="resident memory passed its limit of 400 MB") as info:
        bench([bomb], [Setting(accelerator="gpu", fallback=True, threads=1)], runs=1, warmup=0,
              measure_memory=False)
    assert "\n" not in str(info.value)


def test_resident_watch_kills_only_past_its_limit():
    import subprocess
    import sys

    from resnet_edge import _child

    grow = "import time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", grow])
    watch = _child.ResidentWatch(proc, 150 << 20)
    assert proc.wait(timeout=20) == -9 and watch.fired
    watch.stop()
    calm = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    watch = _child.ResidentWatch(calm, 150 << 20)
    assert calm.wait(timeout=20) == 0
    watch.stop()
    assert not watch.fired
