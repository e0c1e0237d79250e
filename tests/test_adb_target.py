"""adb:// targets: the parser on real benchmark_model output from a phone (tests/data/benchmark_model,
sources in its SOURCES.md), the command lines built for benchmark_model, and every error path against
the real adb binary (Debian's adb): no device, an unknown serial, an unauthorized and an offline
device (a fake device end that stops at adb's handshake, tests/fake_adbd.py). No phone is attached
here, so nothing was measured on a phone."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from resnet_edge.runtime.setting import Setting
from resnet_edge.targets import parse_url
from resnet_edge.targets.adb import BenchmarkFailed, flags_for, parse_benchmark_output
from tests.cli_helpers import one_line_error, run
from tests.sshd import free_port

DATA = Path(__file__).parent / "data" / "benchmark_model"


@pytest.mark.parametrize("name, init, first, warm, avg, std, lo, hi, mem", [
    ("mi11_cpu_fp32.txt", 16.242, 360.262, 304.586, 249.684, 1.442, 247.067, 254.474, (4.92969, 138.809)),
    ("mi11_nnapi_gpu_fp16.txt", 365.972, 120.877, 108.605, 92.5712, 1.638, 89.745, 96.719, (6.90625, 61.0547)),
    ("mi11_cpu_int8.txt", 1.779, 152.949, 110.690, 95.7883, 1.284, 93.066, 99.490, (5.15625, 36.9883)),
])
def test_parser_on_real_phone_output(name, init, first, warm, avg, std, lo, hi, mem):
    r = parse_benchmark_output((DATA / name).read_text())
    assert r["init_ms"] == pytest.approx(init) and r["first_inference_ms"] == pytest.approx(first)
    assert r["warmup_avg_ms"] == pytest.approx(warm) and r["avg_ms"] == pytest.approx(avg)
    assert (r["std_ms"], r["min_ms"], r["max_ms"]) == pytest.approx((std, lo, hi)) and r["count"] == 50
    assert (r["peak_rss_init_mb"], r["peak_rss_overall_mb"]) == pytest.approx(mem)
    assert r["throughput_per_s"] == pytest.approx(1e3 / avg)
    assert r["p50_ms"] is None and r["p90_ms"] is None  # that version printed no percentiles: none invented


def test_parser_on_a_failed_delegate_and_on_garbage():
    with pytest.raises(BenchmarkFailed, match="ANEURALNETWORKS_BAD_DATA"):
        parse_benchmark_output((DATA / "mi11_nnapi_dsp_failed.txt").read_text())
    for text in ("", "count=abc\n\x1b[31m" * 1000, "Inference timings in us: Init: nan, First inference: inf"):
        with pytest.raises(BenchmarkFailed) as info:
            parse_benchmark_output(text)
        assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_parser_reads_the_newer_lines_too():
    """Newer releases add p5/median/p95 and print the delta line; the median becomes p50 (the lines are the
    real ones' format with this text's own numbers)."""
    text = ("count=3 first=900 curr=800 min=700 max=900 avg=800 std=80\n"
            "count=25 first=2000 curr=1500 min=1400 max=2100 avg=1550.5 std=130 p5=1405 median=1500 p95=2000\n"
            "Inference timings in us: Init: 9000, First inference: 2000, Warmup (avg): 850, Inference (avg): 1550.5\n"
            "Memory footprint delta from the start of the tool (MB): init=3.5 overall=7.25\n"
            "INFO: Replacing 30 out of 31 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions.\n")
    r = parse_benchmark_output(text)
    assert r["count"] == 25 and r["p50_ms"] == pytest.approx(1.5) and r["min_ms"] == pytest.approx(1.4)
    assert (r["memory_init_mb"], r["memory_overall_mb"]) == (3.5, 7.25) and r["fully_accelerated"] is False


def test_benchmark_model_command_lines():
    graph = "/data/local/tmp/resnet-edge-0/m0.tflite"
    assert flags_for(Setting(threads=4), graph, 50, 5) == [
        f"--graph={graph}", "--num_runs=50", "--warmup_runs=5", "--num_threads=4", "--use_xnnpack=true",
        "--report_peak_memory_footprint=true"]
    assert "--use_gpu=true" in flags_for(Setting(accelerator="gpu"), graph, 10, 1)
    assert "--use_nnapi=true" in flags_for(Setting(accelerator="nnapi"), graph, 10, 1)
    assert "--use_xnnpack=false" in flags_for(Setting(kernels="builtin"), graph, 10, 1, memory=False)
    with pytest.raises(Exception, match="do not apply"):
        flags_for(Setting(runtime="tflite-runtime"), graph, 10, 1)


@pytest.fixture()
def adb_server(monkeypatch):
    """The real adb, with a server of its own on a free port (never the user's)."""
    if not shutil.which("adb"):
        pytest.skip("adb is not installed (apt-get install adb; .ci/run installs it)")
    port = str(free_port())
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", port)
    subprocess.run(["adb", "start-server"], capture_output=True, timeout=30)
    yield port
    subprocess.run(["adb", "kill-server"], capture_output=True, timeout=30)




@pytest.fixture(scope="module")
def model(converted):
    out, m = converted
    return out / m["int8"]["file"]["path"]


def _wait_for_state(serial: str, state: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = subprocess.run(["adb", "devices"], capture_output=True, text=True).stdout
        if f"{serial}\t{state}" in listed:
            return
        time.sleep(0.2)
    raise AssertionError(f"adb never listed {serial} as {state}: {listed}")


def test_adb_error_paths_with_the_real_adb(adb_server, model, tmp_path):
    from tests.fake_adbd import FakeDevice

    one_line_error(run("bench", model, "--target", "adb://"), "no Android device is attached")
    one_line_error(run("bench", model, "--target", "adb://emulator-5554"), "no device with serial emulator-5554")
    one_line_error(run("devices", "check", "adb://"), "no Android device is attached")
    pending = FakeDevice("auth")
    subprocess.run(["adb", "connect", f"127.0.0.1:{pending.port}"], capture_output=True, timeout=30)
    _wait_for_state(f"127.0.0.1:{pending.port}", "unauthorized")
    one_line_error(run("bench", model, "--target", f"adb://127.0.0.1:{pending.port}"), "not authorized this computer",
                   "Allow USB debugging")
    one_line_error(run("bench", model, "--target", "adb://"), "not authorized")  # the only device is that one
    silent = FakeDevice("silent")
    connecting = subprocess.Popen(["adb", "connect", f"127.0.0.1:{silent.port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        _wait_for_state(f"127.0.0.1:{silent.port}", "offline")
        one_line_error(run("bench", model, "--target", f"adb://127.0.0.1:{silent.port}"), "offline")
        one_line_error(run("bench", model, "--target", "adb://"), "several devices are attached")
    finally:
        connecting.kill()
        pending.close()
        silent.close()
    one_line_error(run("bench", model, "--target", "adb://", "--benchmark-binary", tmp_path / "missing"),
                   "no such file")
    r = run("eval", model, "--target", "adb://")
    assert r.exit_code == 2 and "eval needs Python on the device" in r.output


def test_adb_binary_missing_is_one_line(model, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    one_line_error(run("bench", model, "--target", "adb://"), "cannot run adb", "apt install adb")
    assert parse_url("adb://").kind == "adb"


def test_bench_over_adb_end_to_end_with_the_real_adb(adb_server, model, tmp_path):
    """The real adb pushes the model and the binary to a fake device end that answers benchmark_model with a
    phone's real output: the command line it received, the bytes it got, and the record bench printed."""
    import json
    import shlex

    from tests.fake_adbd import FakeDevice

    phone = FakeDevice("device", (DATA / "mi11_cpu_fp32.txt").read_text())
    try:
        subprocess.run(["adb", "connect", phone.serial], capture_output=True, timeout=30)
        _wait_for_state(phone.serial, "device")
        hostile = tmp_path / "m $(cd;touch x);y'.tflite"
        shutil.copy(model, hostile)
        binary = tmp_path / "benchmark_model"
        binary.write_bytes(b"\x7fELF stands in for LiteRT's benchmark_model")
        one_line_error(run("bench", hostile, "--target", f"adb://{phone.serial}"), "no benchmark_model on the device",
                       "--benchmark-binary")
        r = run("bench", hostile, "--target", f"adb://{phone.serial}", "--benchmark-binary", binary, "--threads", "4",
                "--accelerator", "gpu", "--runs", "30", "--warmup", "3", "--json")
        assert r.exit_code == 0, r.output
        record = json.loads(r.output)["records"][0]
        assert record["model"] == str(hostile) and record["runtime"] == "benchmark_model" and record["accelerator"] == "gpu"
        heat = json.loads(r.output)["machine"]["temperature_c"]  # the phone's thermal zones, before and after
        assert set(heat["before"]) == set(heat["after"]) == {"cpu-0-0", "battery"} and heat["after"]["battery"] == 30.5
        assert heat["before"]["cpu-0-0"] < heat["after"]["cpu-0-0"]  # read before the first run and after the last
        assert record["avg_ms"] == pytest.approx(249.684) and record["peak_rss_overall_mb"] == pytest.approx(138.809)
        [line] = [c for c in phone.commands if "benchmark_model --graph=" in c]
        argv = shlex.split(line)
        folder = argv[0].rsplit("/", 1)[0]
        assert folder.startswith("/data/local/tmp/resnet-edge-")
        assert argv[1:] == [f"--graph={folder}/m0.tflite", "--num_runs=30", "--warmup_runs=3", "--num_threads=4",
                            "--use_gpu=true", "--report_peak_memory_footprint=true"]
        assert phone.files[f"{folder}/m0.tflite"] == hostile.read_bytes()  # pushed bit for bit by the real adb
        assert phone.files[f"{folder}/benchmark_model"] == binary.read_bytes()
        from resnet_edge.targets.adb import AdbTarget

        ours = [c for c in phone.commands if c != AdbTarget.THERMAL]  # the one constant line that reads sysfs
        assert ours[-1] == f"rm -rf {folder}" and not any("$(" in c for c in ours)
        facts = json.loads(run("devices", "check", f"adb://{phone.serial}", "--json").output)
        assert (facts["model"], facts["android"], facts["cores"], facts["memory_mb"]) == ("FakePhone", "14", 8, 7623)
        assert facts["benchmark_model"] is None
    finally:
        phone.close()


def test_a_search_over_adb_holds_the_budget_against_the_mean(adb_server, tmp_path, monkeypatch):
    """LiteRT's benchmark_model prints no p90: over adb the search says so and holds the budget against the mean of
    the timed runs (a phone's real output, 95.79 ms, for every model here): under 100 ms the one candidate wins, its
    record has the mean and no p90, its recipe no latency gate the run could not check; under 90 ms nothing reaches
    the budget, in one line naming the mean."""
    import json

    from resnet_edge.recipe import load as load_recipe
    from tests.fake_adbd import FakeDevice

    phone = FakeDevice("device", (DATA / "mi11_cpu_int8.txt").read_text())
    try:
        subprocess.run(["adb", "connect", phone.serial], capture_output=True, timeout=30)
        _wait_for_state(phone.serial, "device")
        binary = tmp_path / "benchmark_model"
        binary.write_bytes(b"\x7fELF stands in for LiteRT's benchmark_model")
        monkeypatch.setenv("RESNET_EDGE_BENCHMARK_BINARY", str(binary))
        small = ("--target", f"adb://{phone.serial}", "--depths", "20", "--widths", "1", "--modes", "int8", "--trials",
                 "1", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--measure", "1", "--runs", "5",
                 "--no-baseline", "--no-second-seed", "--json")
        r = run("search", *small, "--budget", "100ms", "--out", tmp_path / "s")
        assert r.exit_code == 0, r.output
        result = json.loads(r.stdout)
        assert result["metric"] == "avg" and result["metric_asked"] == "p90"
        w = result["winner"]
        assert w["avg_ms"] == pytest.approx(95.7883) and w["p90_ms"] is None and w["meets_budget"]
        assert load_recipe(w["recipe"])["gates"]["latency"] is None
        shown = run("search", *small[:-1], "--budget", "100ms", "--out", tmp_path / "s")  # read back, for people
        assert shown.exit_code == 0 and "p90 -, mean 95.8 ms" in shown.output, shown.output
        assert any("--graph=" in c for c in phone.commands)
        one_line_error(run("search", *small, "--budget", "90ms", "--out", tmp_path / "t"), "nothing reaches 90 ms at avg",
                       "95.8 ms")
    finally:
        phone.close()
