"""bench and eval over SSH against a real OpenSSH server on 127.0.0.1 (tests/sshd.py): the round trip,
a hostile file name, saved devices, and every failure the issue names (unreachable host, refused key,
unknown host key, a remote without a runtime, a remote that hangs, a connection dropped midway)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from resnet_edge.errors import ConfigError
from resnet_edge.targets import parse_url, resolve
from tests.cli_helpers import one_line_error, run
from tests.sshd import SSHD, client_config, free_port, keygen

pytestmark = pytest.mark.skipif(not SSHD or not shutil.which("ssh"),
                                reason="OpenSSH server/client not installed (apt-get install openssh-server; "
                                       ".ci/run installs it)")


@pytest.fixture(autouse=True)
def private_config(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    monkeypatch.setenv("RESNET_EDGE_DEVICES", str(tmp_path / "devices.json"))


@pytest.fixture(scope="module")
def models(converted):
    out, m = converted
    return {mode: out / m[mode]["file"]["path"] for mode in m}


def url(sshd, python=sys.executable) -> str:
    return f"{sshd.url}/?python={python}"




def test_bench_round_trip_matches_the_local_run(sshd, models):
    r = run("bench", models["int8"], models["float32"], "--target", url(sshd), "--threads", "1", "--runs", "5",
            "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["target"] == url(sshd) and out["incomplete"] is None
    assert [x["model"] for x in out["records"]] == [str(models["int8"]), str(models["float32"])]
    for x in out["records"]:
        assert x["integrity"] == "verified" and x["count"] == 5 and 0 < x["min_ms"] <= x["p50_ms"] <= x["max_ms"]
        assert x["runtime"] == "litert" and x["peak_rss_overall_mb"] > 0
    assert out["machine"]["arch"] and out["machine"]["python"]
    human = run("bench", models["int8"], "--target", url(sshd), "--runs", "3")
    assert human.exit_code == 0 and f"machine (target {url(sshd)})" in human.output


def test_eval_over_ssh_equals_eval_here(sshd, models):
    here = json.loads(run("eval", models["int8"], "--json").output)
    there = run("eval", models["int8"], "--target", url(sshd), "--json")
    assert there.exit_code == 0, there.output
    there = json.loads(there.output)
    assert there["target"] == url(sshd) and there["n"] == here["n"]
    assert there["top1"] == here["top1"] and there["confusion_matrix"] == here["confusion_matrix"]


def test_hostile_file_name_reaches_the_device_as_a_name(sshd, models, tmp_path):
    canary = f"resnet-edge-canary-{uuid.uuid4().hex}"
    hostile = tmp_path / f"m $(cd;touch {canary});x '\"`cd;touch {canary}`.tflite"
    shutil.copy(models["int8"], hostile)
    r = run("bench", hostile, "--target", url(sshd), "--runs", "2", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["records"][0]["model"] == str(hostile)
    assert not (Path.home() / canary).exists() and not Path(canary).exists(), "a file name was run as a command"


def test_saved_devices(sshd, models, tmp_path):
    r = run("devices", "add", "bench-pi", url(sshd), "--note", "the test sshd")
    assert r.exit_code == 0, r.output
    listed = json.loads(run("devices", "list", "--json").output)
    assert listed == [{"name": "bench-pi", "url": url(sshd), "note": "the test sshd", "added": listed[0]["added"]}]
    assert json.loads((tmp_path / "devices.json").read_text())["devices"]["bench-pi"]["url"] == url(sshd)
    check = run("devices", "check", "bench-pi", "--json")
    assert check.exit_code == 0, check.output
    facts = json.loads(check.output)
    assert facts["reachable"] and facts["runtimes"]["litert"] and facts["python"] == ".".join(
        map(str, sys.version_info[:3])) and facts["cores"] == os.cpu_count() and facts["memory_mb"] > 0
    human = run("devices", "check", "bench-pi")
    assert "litert" in human.output and "python" in human.output
    r = run("bench", models["int8"], "--target", "bench-pi", "--runs", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["target"] == "bench-pi"
    one_line_error(run("devices", "add", "bench-pi", url(sshd)), "exists")
    assert run("devices", "remove", "bench-pi").exit_code == 0
    one_line_error(run("bench", models["int8"], "--target", "bench-pi"), "no device named 'bench-pi'")


def test_unreachable_hosts(models):
    closed = free_port()
    one_line_error(run("bench", models["int8"], "--target", f"ssh://127.0.0.1:{closed}"), "refused the connection")
    one_line_error(run("bench", models["int8"], "--target", "ssh://no-such-host.invalid"), "cannot resolve")
    one_line_error(run("devices", "check", "nothing-here"), "no device named")


def test_refused_key_and_unknown_host_key(sshd, models, tmp_path, monkeypatch):
    stranger = keygen(tmp_path / "stranger")
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(client_config(tmp_path, sshd.port, stranger, sshd.known_hosts)))
    one_line_error(run("bench", models["int8"], "--target", url(sshd)), "refused the login", "authorized_keys")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(client_config(tmp_path, sshd.port, sshd.user_key, empty, "c2")))
    one_line_error(run("bench", models["int8"], "--target", url(sshd)), "not in your known_hosts", "never accepts")
    assert empty.read_text() == "", "a host key was accepted silently"


def test_remote_without_a_runtime_gets_the_install_line(sshd, models, tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    line = one_line_error(run("bench", models["int8"], "--target", url(sshd, tmp_path / "bare" / "bin" / "python")),
                          "has no TFLite runtime", "pip install ai-edge-litert")
    assert "?python=" in line
    one_line_error(run("bench", models["int8"], "--target", url(sshd, "/nonexistent/python3")), "there is no")


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_remote_that_hangs_is_stopped_and_cleaned(sshd, models, tmp_path):
    facts = tmp_path / "facts"
    hang = _script(tmp_path / "hang", f"#!/bin/sh\necho \"$$ $(pwd)\" > {facts}\nexec sleep 600\n")
    one_line_error(run("bench", models["int8"], "--target", url(sshd, hang), "--timeout", "3"),
                   "did not finish within 3 s")
    pid, folder = facts.read_text().split()
    assert not Path(folder).exists(), "the run's folder was left on the device"
    assert not Path(f"/proc/{pid}").exists() or "sleep" not in Path(f"/proc/{pid}/cmdline").read_text(), \
        "the hung runner was left running"


@pytest.mark.parametrize("second_run, why", [
    ("kill -9 $PPID; sleep 3; exit 1", "connection dropped"),  # sshd's session process dies: the link drops
    ("kill -9 $$", "the runtime on the device failed: SIGKILL"),  # the benchmark itself is killed on the device
])
def test_a_failure_midway_keeps_what_was_measured(sshd, models, tmp_path, second_run, why):
    mark = tmp_path / "first-run-done"
    wrapper = _script(tmp_path / "py", f"#!/bin/sh\nif [ -e {mark} ]; then {second_run}; fi\n"
                                       f"touch {mark}\nexec {sys.executable} \"$@\"\n")
    r = run("bench", models["int8"], models["float32"], "--target", url(sshd, wrapper), "--runs", "3", "--json")
    assert r.exit_code == 1
    out = json.loads(r.output[:r.output.rindex("}") + 1])
    assert [x["model"] for x in out["records"]] == [str(models["int8"])]
    assert why in out["incomplete"] and "after 1 of 2 records" in out["incomplete"], out["incomplete"]
    assert r.output.strip().splitlines()[-1].startswith("Error: incomplete:")


def test_damaged_reply_from_the_device_is_refused(sshd, models, tmp_path):
    liar = _script(tmp_path / "liar", "#!/bin/sh\ncat > /dev/null\n"
                   "echo '{\"result\": {\"machine\": {\"cpu\": \"\\u001b[31mred\"}, \"records\": [{\"setting_index\": 7}]}}'\n")
    one_line_error(run("bench", models["int8"], "--target", url(sshd, liar)), "not asked for")
    odd = _script(tmp_path / "odd", "#!/bin/sh\ncat > /dev/null\n"
                  "echo '{\"result\": {\"machine\": {\"cpu\": \"\\u001b[31mred\", \"isa\": 5}, \"records\": "
                  "[{\"setting_index\": 0, \"p50_ms\": \"fast\", \"avg_ms\": NaN, \"notes\": [\"\\u001b]0;x\"]}]}}'\n")
    r = run("bench", models["int8"], "--target", url(sshd, odd))
    one_line_error(r, "the device's reply is malformed (avg_ms = nan)")  # refused, not dropped to None
    assert "\x1b" not in r.output
    escapes = _script(tmp_path / "escapes", "#!/bin/sh\ncat > /dev/null\n"
                      "echo '{\"result\": {\"machine\": {\"cpu\": \"\\u001b[31mred\", \"isa\": 5}, \"records\": "
                      "[{\"setting_index\": 0, \"p50_ms\": 1.5, \"accelerator\": \"\\u001b[2J\", \"fully_accelerated\": true, "
                      "\"notes\": [\"\\u001b]0;x\"]}]}}'\n")
    r = run("bench", models["int8"], "--target", url(sshd, escapes), "--no-store")
    assert r.exit_code == 0 and "\x1b" not in r.output and "\\x1b[2J" in r.output and "\\x1b]0;x" in r.output, r.output


@pytest.mark.parametrize("text, fragment", [
    ("ssh://-oProxyCommand=touch%20x", "malformed ssh host"),
    ("ssh://pi@host:0", "malformed port"),
    ("ssh://pi@host:99999", "malformed port"),
    ("ssh://pi;reboot@host", "malformed ssh user"),
    ("ssh://host/some/path", "no path"),
    ("ssh://host/?python=$(reboot)", "malformed remote python"),
    ("ssh://host/?shell=1", "the only option"),
    ("adb://-s", "malformed adb serial"),
    ("http://host", "malformed target"),
    ("ssh://ho st", "spaces"),
    ("bad name!", "malformed target"),
])
def test_malformed_targets(text, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("$", r"\$").replace("(", r"\(")):
        resolve(text)


def test_target_urls():
    t = parse_url("ssh://pi@raspberrypi.local:2222/?python=~/litert/bin/python")
    assert (t.user, t.host, t.port, t.python) == ("pi", "raspberrypi.local", 2222, "~/litert/bin/python")
    t = parse_url("ssh://[::1]:22")
    assert (t.host, t.port, t.user, t.python) == ("::1", 22, None, "python3")
    assert parse_url("adb://emulator-5554").serial == "emulator-5554"
    assert parse_url("adb://192.168.1.7:5555").serial == "192.168.1.7:5555"
    assert parse_url("adb://").serial is None


def _old_pythons() -> list[str]:
    """Real interpreters older than the runner's minimum found on this machine (pyenv's, a python2)."""
    import glob

    found = []
    for python in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python"))) + \
            [p for p in ("/usr/bin/python2", "/usr/bin/python3.7") if os.path.exists(p)]:
        probe = subprocess.run([python, "-c", "import sys; print(sys.version_info[0] * 100 + sys.version_info[1])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and int(probe.stdout) < 309:
            found.append(python)
    return found


def test_a_remote_python_that_is_too_old(sshd, models):
    old = _old_pythons()
    if not old:
        pytest.skip("no Python older than 3.9 on this machine to stand for an old device")
    for python in old[:2] + old[-1:]:  # a 3.x and a 2.7 where there are both
        one_line_error(run("bench", models["int8"], "--target", url(sshd, python)), "too old", "3.9")


def test_eval_of_images_that_live_on_the_device(sshd, models, digits, tmp_path):
    """device-folder:DIR is read, decoded and prepared by the runner on the device: the digits' test images
    saved there as PNG files (lossless) give exactly the accuracy and confusions of eval --data digits here."""
    from PIL import Image

    folder = tmp_path / "data on the device"
    test = digits.split("test")
    for i, (img, label) in enumerate(zip(test.x, test.y)):
        (folder / digits.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / digits.classes[label] / f"{i:04d}.png")
    (folder / "3" / "broken.png").write_bytes(b"not a png at all")
    here = json.loads(run("eval", models["int8"], "--json").output)
    r = run("eval", models["int8"], "--target", url(sshd), "--data", f"device-folder:{folder}", "--diff",
            "xnnpack,builtin", "--json")
    assert r.exit_code == 0, r.output
    there = json.loads(r.output)
    assert (there["n"], there["skipped"], there["split"]) == (359, 1, "all")
    assert there["top1"] == here["top1"] and there["confusion_matrix"] == here["confusion_matrix"]
    assert there["diff"]["n"] == 359 and there["diff"]["sides"][0]["top1"] == here["top1"]  # xnnpack: as here
    human = run("eval", models["int8"], "--target", url(sshd), "--data", f"device-folder:{folder}", "--limit", "20")
    assert human.exit_code == 0 and "every image, 20 images" in human.output, human.output
    one_line_error(run("eval", models["int8"], "--target", url(sshd), "--data", f"device-folder:{tmp_path / 'nope'}"),
                   "nope")
    other = tmp_path / "other classes"
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        Image.fromarray(test.x[0]).save(other / name / "a.png")
    one_line_error(run("eval", models["int8"], "--target", url(sshd), "--data", f"device-folder:{other}"),
                   "are not the model's classes")
    r = run("eval", models["int8"], "--data", f"device-folder:{folder}")
    assert r.exit_code == 2 and "give --target ssh://" in r.output


HOLDER = """
import sys, time
from resnet_edge.targets import open_target, parse_url
with open_target(parse_url(sys.argv[1])).hold(lambda text: print("waiting", flush=True)) as got:
    print("held" if got else "no flock", flush=True)
    sys.stdin.readline()  # until the test says so, or dies
"""


def test_the_device_is_locked_on_the_device_itself(sshd):
    """Two processes (two searches, two machines: nothing shared but the device) take the device's own lock in turn:
    the second waits while the first holds it and gets it once the first lets go; a holder killed with -9 leaves the
    device free (the lock lives in the device's shell, which ends with the connection)."""
    import signal
    import time

    from resnet_edge.targets import open_target

    def holder():
        return subprocess.Popen([sys.executable, "-c", HOLDER, url(sshd)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)

    first = holder()
    assert first.stdout.readline().strip() == "held"
    second = holder()
    assert second.stdout.readline().strip() == "waiting"
    time.sleep(1)
    assert second.poll() is None
    first.stdin.write("\n")
    first.stdin.flush()
    assert second.stdout.readline().strip() == "held" and first.wait(timeout=30) == 0
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=30)
    waited = []
    t0 = time.monotonic()
    with open_target(parse_url(url(sshd))).hold(waited.append) as got:
        assert got
    assert time.monotonic() - t0 < 20  # the dead holder's shell has ended; at most the wait for its connection to close
