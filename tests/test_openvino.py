"""--runtime openvino: OpenVINO's CPU plugin runs our own .tflite files (bench, eval --diff, sweep, the
harness), f32 unless bf16 is asked for, with its model cache; what means nothing there is refused.

Skipped where OpenVINO is not installed (`pip install 'resnet-edge[openvino]'`; .ci/run installs it)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'resnet-edge[openvino]'")

from resnet_edge.cli import cli  # noqa: E402
from resnet_edge.measure.bench import bench  # noqa: E402
from resnet_edge.runtime.setting import Setting  # noqa: E402

OV = Setting(runtime="openvino", threads=1)


@pytest.fixture(scope="module")
def uint8_model(trained_resnet20, tmp_path_factory):
    """The trained net in int8 with uint8 input and output (as apps take it)."""
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import model_samples, to_tflite
    from resnet_edge.data import load

    model = load_model(trained_resnet20)
    rep, _, _ = model_samples(model, load("digits"), "train", 32)
    path = tmp_path_factory.mktemp("ov") / "u8.tflite"
    path.write_bytes(to_tflite(model, "int8", representative=rep, io="uint8"))
    return path


def test_every_mode_we_write_runs_or_is_refused_in_one_line(converted, uint8_model):
    from resnet_edge.runtime.replies import HarnessFailed

    out, manifests = converted
    paths = [out / m["file"]["path"] for m in manifests.values()] + [uint8_model]
    ran = {}
    for path in paths:
        try:
            (record,) = bench([path], [OV], runs=3, warmup=1, measure_memory=False, verify=False)["records"]
        except HarnessFailed as exc:
            assert "\n" not in str(exc) and "OpenVINO" in str(exc), str(exc)
            ran[path.name] = "refused"
            continue
        assert record["runtime"] == "openvino" and record["precision"] == "f32" and record["p50_ms"] > 0
        assert record["kernels"] is None and record["threads"] == 1
        ran[path.name] = "ran"
    # measured with OpenVINO 2026.4: every mode we write loads and runs
    assert set(ran.values()) == {"ran"}, ran


@pytest.mark.parametrize("mode", ["int8", "float32"])
def test_eval_diff_litert_openvino_agree(converted, digits, mode):
    from resnet_edge.measure.evaluation import evaluate_tflite

    out, manifests = converted
    path = out / manifests[mode]["file"]["path"]
    report = evaluate_tflite(path, digits, limit=200, setting=Setting(),
                             diff=[Setting(runtime="litert"), Setting(runtime="openvino")])
    d = report["diff"]
    assert [s["runtime"] for s in d["sides"]] == ["litert", "openvino"] and d["sides"][1]["precision"] == "f32"
    assert d["n"] == 200 and d["top1_agreement"] >= (0.99 if mode == "float32" else 0.95), d
    if mode == "float32":  # f32 really is float32: no bfloat16 rounding of the outputs
        assert d["max_abs_diff"] < 1e-3, d
    acc = [s["top1"] for s in d["sides"]]
    assert abs(acc[0] - acc[1]) <= 0.03, acc


def test_bf16_is_asked_for_and_recorded(converted):
    out, manifests = converted
    path = out / manifests["float32"]["file"]["path"]
    records = bench([path], [OV, Setting(runtime="openvino", threads=1, precision="bf16")], runs=3, warmup=1,
                    measure_memory=False)["records"]
    assert [r["precision"] for r in records] == ["f32", "bf16"]
    assert [r["setting"] for r in records] == ["openvino f32 1t", "openvino bf16 1t"]


def test_model_cache_reports_initialization_with_and_without(converted, tmp_path):
    out, manifests = converted
    path = out / manifests["int8"]["file"]["path"]
    cache = tmp_path / "ovcache"
    (record,) = bench([path], [Setting(runtime="openvino", weight_cache=str(cache))], runs=2, warmup=0,
                      measure_memory=False)["records"]
    w = record["weight_cache_init"]
    assert w["init_without_ms"] > 0 and w["init_building_ms"] > 0 and any(cache.iterdir())
    (again,) = bench([path], [Setting(runtime="openvino", weight_cache=str(cache))], runs=2, warmup=0,
                     measure_memory=False)["records"]
    assert again["weight_cache_init"]["init_building_ms"] is None  # the cache was there: loaded, not built


@pytest.mark.parametrize("args, fragment", [
    (["--runtime", "openvino", "--kernels", "builtin"], "--kernels chooses TFLite's kernels"),
    (["--runtime", "openvino", "--kernels", "xnnpack"], "--kernels chooses TFLite's kernels"),
    (["--runtime", "openvino", "--delegate", "x.so"], "--delegate mean(s) nothing to OpenVINO"),
    (["--runtime", "openvino", "--accelerator", "cpu"], "--accelerator mean(s) nothing to OpenVINO"),
    (["--precision", "bf16"], "--precision is an OpenVINO setting"),
])
def test_options_that_mean_nothing_to_openvino_are_refused(converted, args, fragment):
    out, manifests = converted
    r = CliRunner().invoke(cli, ["bench", str(out / manifests["int8"]["file"]["path"]), "--no-store", *args])
    assert r.exit_code != 0 and fragment in r.output and "Traceback" not in r.output, r.output


def test_bench_and_sweep_cli_store_openvino_records(converted, tmp_path):
    out, manifests = converted
    path = str(out / manifests["int8"]["file"]["path"])
    store = str(tmp_path / "r.sqlite")
    r = CliRunner().invoke(cli, ["sweep", path, "--target", "local", "--runtime", "litert,openvino", "--threads", "1",
                                 "--precision", "f32,bf16", "--runs", "3", "--warmup", "1", "--store", store, "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["results", "--store", store, "--json"])
    rows = json.loads(r.output)
    assert sorted(row["setting"] for row in rows) == ["litert xnnpack 1t", "openvino bf16 1t", "openvino f32 1t"]
    r = CliRunner().invoke(cli, ["sweep", path, "--target", "adb://X", "--runtime", "openvino", "--store", store])
    assert r.exit_code != 0 and "OpenVINO runs on x86" in r.output


def test_harness_runs_openvino_as_a_plain_script(converted, tmp_path):
    """The harness file alone (as on an x86 device over SSH), no resnet_edge import: a bench job."""
    import subprocess
    import sys

    from resnet_edge import harness

    out, manifests = converted
    job = {"op": "bench", "models": [str(out / manifests["int8"]["file"]["path"])],
           "settings": [{"runtime": "openvino", "threads": 1}], "runs": 3, "warmup": 1, "memory": False}
    proc = subprocess.run([sys.executable, harness.__file__], input=json.dumps(job), capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = json.loads(proc.stdout.strip().splitlines()[-1])["result"]["records"]
    assert record["runtime"] == "openvino" and record["api"] == "openvino" and record["precision"] == "f32"
    assert np.isfinite(record["p50_ms"])


def test_openvino_session_imports_no_tensorflow(converted):
    """The edge side stays light: running a model in OpenVINO through the harness loads no TensorFlow."""
    import subprocess
    import sys

    from resnet_edge import harness

    out, manifests = converted
    code = ("import sys, importlib.util; spec = importlib.util.spec_from_file_location('h', sys.argv[1]); "
            "h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h); "
            "s = h.Session(sys.argv[2], {'runtime': 'openvino', 'threads': 1}); "
            "s.set_inputs([h.signature_input(s.inputs[0], __import__('numpy').random.default_rng(0))]); s.invoke(); "
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, harness.__file__, str(out / manifests["int8"]["file"]["path"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
