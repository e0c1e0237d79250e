"""Devices whose SSH server has no SFTP: OpenSSH's sshd without a ``Subsystem sftp`` line, and Dropbear (Debian's
dropbear-bin, the server of many Buildroot, Yocto and OpenWrt images) where OpenSSH's sftp-server is hidden from it
(tests/sshd.py). Each is started on 127.0.0.1 and shown first to refuse OpenSSH's own ``scp``; then ``bench``, ``eval``,
a hostile file name and ``devices check`` run against it, and Dropbear's failures get their one-line messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error, run
from tests.sshd import client_config, keygen

pytestmark = pytest.mark.skipif(not shutil.which("ssh") or not shutil.which("scp"),
                                reason="OpenSSH's client is not installed (apt-get install openssh-client)")


@pytest.fixture(scope="module")
def models(converted):
    out, m = converted
    return {mode: out / m[mode]["file"]["path"] for mode in m}


@pytest.fixture(params=["sshd_without_sftp", "dropbear"])
def server(request, tmp_path, monkeypatch):
    srv = request.getfixturevalue(request.param)
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(srv.config))
    monkeypatch.setenv("RESNET_EDGE_DEVICES", str(tmp_path / "devices.json"))
    return srv


def url(srv, python=sys.executable) -> str:
    return f"{srv.url}/?python={python}"


def test_bench_eval_and_devices_check_without_sftp(server, models, tmp_path):
    # What the test rests on: the server has no SFTP, so OpenSSH 9's scp (SFTP underneath) fails against it.
    if server.name == "Dropbear":
        assert server.sftp_hidden(), "an sftp-server is visible to Dropbear: the test would prove nothing"
    scp = subprocess.run(["scp", "-q", "-B", "-F", str(server.config), "/etc/hostname", "edge-test:/tmp/"],
                         capture_output=True, text=True, timeout=60)
    assert scp.returncode != 0, f"scp worked against {server.name}: it has an SFTP server after all"

    canary = f"resnet-edge-canary-{uuid.uuid4().hex}"
    hostile = tmp_path / f"m $(cd;touch {canary});x '\"`cd;touch {canary}`.tflite"
    shutil.copy(models["int8"], hostile)
    r = run("bench", hostile, models["float32"], "--target", url(server), "--threads", "1", "--runs", "2", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert [x["model"] for x in out["records"]] == [str(hostile), str(models["float32"])]
    assert all(x["integrity"] == "verified" and x["count"] == 2 for x in out["records"]) and out["incomplete"] is None
    assert not (Path.home() / canary).exists() and not Path(canary).exists(), "a file name was run as a command"
    assert not list((server.folder).rglob(f"*{canary}*")), "a file name was run as a command on the device"

    here = json.loads(run("eval", models["int8"], "--limit", "60", "--json").output)
    there = run("eval", models["int8"], "--limit", "60", "--target", url(server), "--json")
    assert there.exit_code == 0, there.output
    there = json.loads(there.output)
    assert there["n"] == here["n"] == 60 and there["top1"] == here["top1"]
    assert there["confusion_matrix"] == here["confusion_matrix"]

    assert run("devices", "add", "board", url(server)).exit_code == 0
    check = run("devices", "check", "board", "--json")
    assert check.exit_code == 0, check.output
    facts = json.loads(check.output)
    assert facts["reachable"] and facts["runtimes"]["litert"] and facts["cores"] == os.cpu_count()


def test_dropbears_login_and_host_key_failures_are_one_line(dropbear, models, tmp_path, monkeypatch):
    stranger = keygen(tmp_path / "stranger")
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(client_config(tmp_path, dropbear.port, stranger,
                                                                    dropbear.known_hosts)))
    one_line_error(run("bench", models["int8"], "--target", url(dropbear)), "refused the login", "authorized_keys")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(client_config(tmp_path, dropbear.port, dropbear.user_key, empty,
                                                                    "c2")))
    one_line_error(run("bench", models["int8"], "--target", url(dropbear)), "not in your known_hosts", "never accepts")
    other = keygen(tmp_path / "other_host").with_suffix(".pub").read_text().split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{dropbear.port} {other[0]} {other[1]}\n")
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(client_config(tmp_path, dropbear.port, dropbear.user_key, wrong,
                                                                    "c3")))
    one_line_error(run("bench", models["int8"], "--target", url(dropbear)), "has CHANGED", "known_hosts")
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(dropbear.config))
    killer = tmp_path / "killer"  # Dropbear's session process dies under the runner: the link drops
    killer.write_text("#!/bin/sh\nkill -9 $PPID; sleep 3\n")
    killer.chmod(0o755)
    one_line_error(run("bench", models["int8"], "--target", url(dropbear, killer)), "connection dropped")


def test_a_full_disk_on_the_device_is_named(models, tmp_path, monkeypatch):
    from tests.sshd import Dropbear

    try:
        full = Dropbear(tmp_path / "full", tmp_kb=64)  # the model and the runner do not fit in 64 KiB
    except RuntimeError as exc:
        pytest.skip(f"Dropbear not runnable here: {exc}")
    try:
        monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(full.config))
        one_line_error(run("bench", models["int8"], "--target", url(full), "--runs", "2"), "disk is full")
        left = subprocess.run(["nsenter", "-t", str(full.proc.pid), "-m", "ls", "-A", str(tmp_path / "full" / "tiny")],
                              capture_output=True, text=True)
        assert left.returncode == 0 and left.stdout.strip() == "", f"the failed run left {left.stdout!r} behind"
    finally:
        full.stop()
