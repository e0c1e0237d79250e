"""resnet-edge convert and inspect: every mode on a small trained CIFAR ResNet with parity numbers, QAT
and pruned inputs, metadata round trip, readiness, old-runtime loading, and bad input."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_edge.cli import cli
from resnet_edge.errors import ConfigError, ResnetEdgeError


@pytest.fixture(scope="module")
def trained(trained_resnet20):
    return trained_resnet20


# mode -> (minimum top-1 agreement, maximum |diff| of the output probabilities)
BOUNDS = {"float32": (1.0, 1e-4), "float16": (0.99, 1e-2), "dynamic": (0.97, 0.1), "int8": (0.97, 0.15),
          "int16x8": (0.97, 0.1)}


@pytest.mark.parametrize("mode", sorted(BOUNDS))
def test_every_mode_has_parity(converted, mode):
    out, manifests = converted
    m = manifests[mode]
    agree, maxdiff = BOUNDS[mode]
    p = m["parity"]
    assert p["n"] == 200 and p["top1_agreement"] >= agree and p["max_abs_diff"] <= maxdiff, p
    assert p["mean_abs_diff"] <= p["max_abs_diff"]
    assert abs(p["accuracy_drop_points"]) <= 3.0
    assert (out / m["file"]["path"]).stat().st_size == m["file"]["bytes"]
    assert json.loads((out / m["file"]["path"]).with_suffix(".json").read_text()) == {k: v for k, v in m.items() if k != "written"}
    assert m["written"] == {"model": str(out / m["file"]["path"]), "manifest": str((out / m["file"]["path"]).with_suffix(".json"))}
    assert m["compatibility"]["min_runtime_version"]


def test_sizes_and_types_per_mode(converted):
    from resnet_edge.tflite.inspect import inspect

    out, m = converted
    size = {k: v["file"]["bytes"] for k, v in m.items()}
    assert size["float16"] < 0.6 * size["float32"] and size["int8"] < 0.35 * size["float32"]
    r = {k: inspect(out / v["file"]["path"], targets=()) for k, v in m.items()}
    assert r["int8"]["inputs"][0]["dtype"] == "int8" and r["int8"]["outputs"][0]["dtype"] == "int8"
    assert r["int8"]["quantization"]["per_channel_tensors"] >= 19  # every convolution per channel
    assert "QUANTIZE" not in r["int8"]["ops"] and "DEQUANTIZE" not in r["int8"]["ops"]
    assert r["float16"]["tensor_dtypes"].get("float16", 0) > 0 and "DEQUANTIZE" in r["float16"]["ops"]
    assert r["int16x8"]["tensor_dtypes"].get("int16", 0) > 0
    assert r["float32"]["inputs"][0]["dtype"] == "float32"


def test_metadata_round_trip(converted, digits):
    from resnet_edge.tflite.metadata import read_info

    out, m = converted
    info = read_info((out / m["int8"]["file"]["path"]).read_bytes())
    assert info["labels"] == digits.classes
    assert info["normalization"]["inside_model"] and np.allclose(info["normalization"]["mean"], digits.mean)
    assert info["recipe"]["name"] == "resnet20" and info["mode"] == "int8" and info["trained"]
    assert info["name"] == m["int8"]["name"] == "resnet20" and info["source_file"] == "model.keras"  # not "model"
    from resnet_edge.runtime.runner import TFLiteModel

    runner = TFLiteModel(out / m["int8"]["file"]["path"])  # the runtime reads the same entry back
    assert runner.labels == digits.classes and runner.info["normalization"] == info["normalization"]


def test_readiness_reports(converted):
    _, m = converted
    assert m["float32"]["readiness"]["gpu"]["ready"]
    # Measured, not assumed: shortcut A's subsampling (a frozen 1x1 depthwise conv) keeps the float graph in one
    # XNNPACK partition; int8 SOFTMAX is the one op XNNPACK leaves out of the int8 graph.
    assert m["float32"]["readiness"]["cpu"]["ready"] and m["float32"]["readiness"]["cpu"]["partitions"] == 1
    assert m["float32"]["readiness"]["cpu"]["runtime"].startswith("LiteRT ")  # which runtime's XNNPACK said so
    assert [b["op"] for b in m["int8"]["readiness"]["cpu"]["blockers"]] == ["SOFTMAX"]
    assert not m["int16x8"]["readiness"]["nnapi"]["ready"]  # NNAPI has no 16-bit activations
    assert m["int8"]["readiness"]["nnapi"]["ready"]


def test_option_b_net_is_one_xnnpack_partition(tmp_path, digits):
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import resolve
    from resnet_edge.convert import to_tflite
    from resnet_edge.tflite.readiness import report

    r = report(to_tflite(build_model(resolve(20, shortcut="B"))), "cpu")
    assert r["ready"] and r["partitions"] == 1


def test_gpu_incompatible_op_is_reported():
    from resnet_edge._tf import keras, tf
    from resnet_edge.tflite.readiness import report

    inp = keras.Input((8, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.Lambda(lambda t: tf.math.top_k(tf.reshape(t, [-1, 144]), k=3).values)(x)
    tfl = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, x)).convert()
    gpu = report(tfl, "gpu")
    assert not gpu["ready"] and [b["op"] for b in gpu["blockers"]] == ["TOPK_V2"]
    assert report(tfl, "cpu")["blockers"][0]["op"] == "TOPK_V2"


def test_qat_model_converts_without_representative_data(qat_run, digits, tmp_path):
    import shutil

    from resnet_edge.convert import convert

    for name in ("q.h5", "q.json"):  # the shared QAT model and its manifest, in a folder of this test's own
        shutil.copy(qat_run[0].with_name(name), tmp_path / name)
    with pytest.raises(ResnetEdgeError, match="q.json exists and is resnet-edge's manifest of q.h5"):  # its own manifest
        convert(model_path=tmp_path / "q.h5", modes=["int8"], out=str(tmp_path / "q.tflite"), data=digits)
    (m,) = convert(model_path=tmp_path / "q.h5", modes=["int8"], out=str(tmp_path / "q_int8.tflite"), data=digits, io="int8",
                   parity_samples=100, check_old_runtime=False)
    assert m["calibration"] is None and m["converter_settings"]["quantization_aware_trained"]
    assert m["parity"]["top1_agreement"] >= 0.97
    with pytest.raises(ConfigError, match="int8"):
        convert(model_path=tmp_path / "q.h5", modes=["float16"], out=str(tmp_path / "x.tflite"), data=digits)


def test_pruned_model_keeps_zeros_in_tflite(pruned_run, digits, tmp_path):
    from resnet_edge.convert import convert
    from resnet_edge.tflite.inspect import inspect

    (m,) = convert(model_path=pruned_run[0], modes=["float32"], out=str(tmp_path / "p_float32.tflite"), data=digits,
                   parity_samples=50, check_old_runtime=False)
    assert inspect(tmp_path / "p_float32.tflite", targets=())["weight_sparsity"]["sparsity"] > 0.45


def test_convert_depth_18_int8_cli(tmp_path):
    """The headline command on a fresh ResNet-18 (small calibration and parity so the test stays quick)."""
    r = CliRunner().invoke(cli, ["convert", "--depth", "18", "--int8", "--calibration", "4", "--samples", "4",
                                 "--out", str(tmp_path / "r18.tflite"), "--author", "Edge Team", "--license", "MIT",
                                 "--json"])
    assert r.exit_code == 0, r.output
    (m,) = json.loads(r.output)
    from resnet_edge.cli.render import _convert_human

    human = _convert_human([m])  # untrained: parity by output error only, and the table says why
    assert "n/a" in human and "agreement says nothing" in human and f"{m['parity']['max_abs_diff']:.2e}" in human
    assert m["untrained_warning"] and m["parity"]["keras_accuracy"] is None  # 1000 classes: no accuracy on digits
    assert m["calibration"]["resized"] and 11.0e6 < m["file"]["bytes"] < 12.5e6
    assert m["converter_settings"]["calibrator"] == "resnet-edge"  # ranges measured on all cores
    assert m["converter_settings"]["converter"].startswith("tf.lite.TFLiteConverter.from_concrete_functions")
    assert m["quantization"]["inputs"][0]["dtype"] == "float32"
    # normalization inside (ImageNet's), so apps feed it raw pixels: its standard metadata says so
    assert m["metadata"]["normalization"]["mean"] == [123.675, 116.28, 103.53]
    app = m["app_metadata"]
    assert app["normalization"] == {"mean": [0.0], "std": [1.0]} and app["problems"] == [] and app["labels"] is None
    assert (app["author"], app["license"], app["name"], app["version"]) == ("Edge Team", "MIT", "resnet18 (int8)", "untrained")


def test_inspect_cli(converted):
    out, m = converted
    r = CliRunner().invoke(cli, ["inspect", str(out / m["int8"]["file"]["path"])])
    assert r.exit_code == 0, r.output
    for text in ("CONV_2D", "per-channel", "labels", "on gpu", "on nnapi", "min runtime"):
        assert text in r.output
    j = json.loads(CliRunner().invoke(cli, ["inspect", str(out / m["float32"]["file"]["path"]), "--json", "--target", "gpu"]).output)
    assert set(j["readiness"]) == {"gpu"} and j["ops"]["CONV_2D"] == 19


def test_loads_in_tflite_runtime_2_14(converted, old_runtime_python):
    from resnet_edge.runtime.jobs import tflite_runtime_check

    out, m = converted
    for mode in ("float32", "float16", "int8"):
        r = tflite_runtime_check(out / m[mode]["file"]["path"], python=old_runtime_python)
        assert r["ok"] and r["version"] == "2.14.0", r



def test_latency_kernels_choose_the_delegate(converted):
    """kernels="builtin" really leaves XNNPACK out (no DELEGATE node), "xnnpack" really uses it."""
    from resnet_edge.runtime.runner import latency
    from resnet_edge.runtime.runner import TFLiteModel

    out, m = converted
    path = out / m["float32"]["file"]["path"]
    for kernels, delegated in (("xnnpack", True), ("builtin", False)):
        ops = {op["op_name"] for op in TFLiteModel(path, kernels=kernels).interpreter._get_ops_details()}
        assert ("DELEGATE" in ops) is delegated, (kernels, ops)
        r = latency(path, runs=3, warmup=1, threads=1, kernels=kernels)
        assert r["kernels"] == kernels and 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    with pytest.raises(ConfigError, match="kernels must be one of"):
        TFLiteModel(path, kernels="gpu")


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    (b"", "only 0 bytes"),
    (b"hello world, not a model at all", "not a TFLite model"),
    (None, "damaged"),  # a model of ours cut short: its checksum no longer matches
])
def test_corrupt_tflite_is_one_line_error(converted, tmp_path, content, fragment):
    out, m = converted
    bad = tmp_path / "bad.tflite"
    if content is None:  # a real model cut in half
        content = (out / m["float32"]["file"]["path"]).read_bytes()[:200_000]
    bad.write_bytes(content)
    r = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert fragment in r.output, r.output


def test_flipped_bytes_never_crash(converted, tmp_path):
    """Damage the flatbuffer's tables; inspect answers (report or one-line error), in this process."""
    out, m = converted
    data = bytearray((out / m["int8"]["file"]["path"]).read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(5):
        damaged = bytearray(data)
        for i in rng.integers(8, 4000, 40):
            damaged[i] ^= 0xFF
        path = tmp_path / f"d{trial}.tflite"
        path.write_bytes(bytes(damaged))
        r = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
        assert r.exit_code in (0, 1) and "Traceback" not in r.output


def test_convert_errors(trained, tmp_path):
    runner = CliRunner()
    cases = [
        (["--io", "int8"], "add --int8"),
        (["--int8", "--float16", "--out", str(tmp_path / "a.tflite")], "give a directory"),
        (["--out", str(tmp_path / "a.bin")], ".tflite"),
        (["--max-drop", "-1"], "0<=x<=100"),
        (["--int8", "--calibration", "0"], "1<=x<=1000000"),
    ]
    for args, fragment in cases:
        r = runner.invoke(cli, ["convert", str(trained), *args])
        assert r.exit_code != 0 and fragment in r.output and "Traceback" not in r.output, (args, r.output)
    r = runner.invoke(cli, ["convert", str(tmp_path / "missing.keras")])
    assert r.exit_code != 0 and "not found" in r.output
    assert not list(tmp_path.glob("*.tflite"))


def test_single_mode_into_existing_directory(trained, digits, tmp_path):
    from resnet_edge.convert import convert

    (m,) = convert(model_path=trained, modes=["float16"], out=str(tmp_path), data=digits, parity_samples=20,
                   check_old_runtime=False)
    assert (tmp_path / "model_float16.tflite").exists() and m["file"]["path"] == "model_float16.tflite"
    (made,) = convert(model_path=trained, modes=["float16"], out=str(tmp_path / "new") + "/", data=digits,
                      parity_samples=20, check_old_runtime=False)  # a trailing slash: a directory, made when missing
    assert (tmp_path / "new" / "model_float16.tflite").is_file() and made["written"]["model"].startswith(str(tmp_path / "new"))
    (beside,) = convert(model_path=trained, modes=["float32"], data=digits, parity_samples=20, check_old_runtime=False)
    assert (trained.parent / "model_float32.tflite").exists()  # default: beside the source model
    with pytest.raises(ConfigError, match="calibration"):
        convert(model_path=trained, modes=["int8"], out=str(tmp_path / "x.tflite"), data=None)


def test_representative_data_of_wrong_shape(trained):
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import to_tflite

    with pytest.raises(ConfigError, match="shape"):
        to_tflite(load_model(trained), "int8", representative=np.zeros((4, 16, 16, 3), np.float32))


def test_max_drop_fails_but_keeps_model(trained, digits, tmp_path):
    """Calibrating int8 on blank images ruins the activation ranges; --max-drop must fail the command."""
    import dataclasses

    from resnet_edge.data.sources import Split
    from resnet_edge.convert import convert

    blank = dataclasses.replace(digits, train=Split(digits.train.y, np.zeros_like(digits.train.x)))
    with pytest.raises(ResnetEdgeError, match="max-drop"):
        convert(model_path=trained, modes=["int8"], out=str(tmp_path / "m.tflite"), data=blank, calibration=8,
                max_drop=1.0, parity_samples=359, check_old_runtime=False)
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["status"] == "failed" and manifest["parity"]["accuracy_drop_points"] > 1.0
    assert (tmp_path / "m.tflite").exists()


def test_max_drop_failure_prints_the_table_then_the_error(converted, trained, monkeypatch):
    """The CLI prints the results table and where the files went, then the failure line (exit 1)."""
    import resnet_edge.convert as stage

    out, m = converted
    manifests = [m["int8"]]

    def failing(**kwargs):
        raise stage.MaxDropError("model_int8.tflite: accuracy fell 5.00 points (> --max-drop 1.0)", manifests)

    monkeypatch.setattr(stage, "convert", failing)
    r = CliRunner().invoke(cli, ["convert", str(trained), "--int8", "--max-drop", "1"])
    assert r.exit_code == 1
    assert "top-1 agree" in r.stdout and f"wrote {m['int8']['written']['model']}" in r.stdout
    assert f"{m['int8']['parity']['top1_agreement']:.1%}" in r.stdout and "n/a" not in r.stdout  # trained: shown
    assert r.stderr.strip().splitlines()[-1].startswith("Error: model_int8.tflite: accuracy fell")


def test_convert_shows_progress_on_a_terminal(tmp_path):
    """On a real pseudo-terminal: every long step says where it is (calibration i/N, parity i/N, the checks);
    piped, the same command prints none of it."""
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "resnet_edge", "convert", "--depth", "20", "--family", "cifar", "--int8",
            "--calibration", "40", "--samples", "24", "--out", str(tmp_path / "r20.tflite")]
    main, child = pty.openpty()
    proc = subprocess.Popen(args, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0, seen[-2000:]
    text = seen.decode("utf-8", "replace")
    for line in ("reading 40 calibration images", "int8: calibration 40/40", "int8: parity: reading 24 test images",
                 "int8: parity 24/24",
                 "int8: inspecting the model", "int8: loading it in tflite-runtime 2.14"):
        assert line in text, (line, text[-3000:])
    assert "\r\x1b[K" in text  # each progress line overwrites the last
    piped = subprocess.run(args[:-1] + [str(tmp_path / "again.tflite")], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and "calibration 40/40" not in piped.stderr and "wrote" in piped.stdout + piped.stderr


def test_every_mode_keeps_the_serving_signature(converted, digits):
    """Converted from the frozen function (no SavedModel), every file still has the serving_default signature
    a SavedModel conversion gives (input -> predictions), and running by it gives the Interpreter's scores."""
    from ai_edge_litert.interpreter import Interpreter

    from resnet_edge.runtime.runner import TFLiteModel

    out, manifests = converted
    for mode, m in manifests.items():
        it = Interpreter(model_path=str(out / m["file"]["path"]))
        assert it.get_signature_list() == {"serving_default": {"inputs": ["input"], "outputs": ["predictions"]}}, mode
        runner = it.get_signature_runner("serving_default")
        model = TFLiteModel(out / m["file"]["path"])
        x = digits.test.x[:1].astype(np.float32)
        raw = model._to_input(x)
        assert np.array_equal(runner(input=raw)["predictions"], model.invoke_raw(raw)), mode
