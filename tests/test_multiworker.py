"""`train --strategy multiworker` with two real worker processes on loopback (TensorFlow's
MultiWorkerMirroredStrategy, the cluster from ``TF_CONFIG``), against `--strategy mirrored --cpu-devices 2` in one
process: the same two replicas, each with its own BatchNorm statistics, the same global batch and seed.

Tolerance: with two replicas every all-reduce adds two numbers, and IEEE addition is commutative, so both runs are
expected to reach the same weights; 1e-5 (absolute, on weights of order 1) leaves room only for a kernel that
orders a reduction inside one replica differently, not for a different gradient (one step of SGD at lr 0.01 moves a
weight by far more). Measured (2026-12-06): equal to the last bit uninterrupted, 4.8e-7 after the kill and resume.

BatchNorm's moving statistics are kept per replica (tf_keras makes them ON_READ variables, averaged when read from
outside a replica): a checkpoint holds their average, so a resumed run's replicas start from it. Their update is
linear, so the average, which the final model holds, ends where the uninterrupted run's ends (within the 1e-5);
the validation accuracy of the epochs after a resume, which each replica computes with its own statistics, may not.
The warm-up is judged from the accuracy reduced over the whole cluster (a batch's logs on one worker hold its share
only: judged from them, two workers left the warm-up at different steps, and the run drifted from mirrored's).

Tiny on purpose: ResNet-8, 128 images, batch 32, 4 epochs of 4 steps."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import one_line_error, run

ARGS = ["--depth", "8", "--data", "digits", "--epochs", "4", "--limit", "128", "--batch-size", "32", "--lr", "0.05"]


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _worker(index: int, ports: list[int], out: Path, *extra: str) -> subprocess.Popen:
    config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    env = {**os.environ, "TF_CONFIG": json.dumps(config), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "resnet_edge", "train", *ARGS, "--strategy", "multiworker",
                             "--out", str(out), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _weights(path: Path) -> list[np.ndarray]:
    from resnet_edge.arch.keras_model import load_model

    return load_model(path).get_weights()


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mirrored") / "run"
    r = subprocess.run([sys.executable, "-m", "resnet_edge", "train", *ARGS, "--strategy", "mirrored", "--cpu-devices",
                        "2", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_two_workers_match_mirrored_a_killed_one_stops_the_other_and_resume_finishes(mirrored, tmp_path):
    chief_out, other_out = tmp_path / "run", tmp_path / "worker1-run"
    ports = _ports(2)
    chief, other = _worker(0, ports, chief_out), _worker(1, ports, other_out)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and chief.poll() is None:  # two epochs done and checkpointed: kill
            history = chief_out / "history.json"
            if history.exists() and len(json.loads(history.read_text() or "[]")) >= 2:
                break
            time.sleep(0.2)
        other.kill()
        killed = time.monotonic()
        _, err = chief.communicate(timeout=120)  # bounded: no hang on a collective
        stopped_in = time.monotonic() - killed
    finally:
        for p in (chief, other):
            if p.poll() is None:
                p.kill()
    lines = [line for line in err.strip().splitlines() if line.startswith("Error:")]
    assert chief.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "another worker of the cluster is gone" in lines[0] and "--resume" in lines[0], lines[0]
    assert stopped_in < 60, f"the chief took {stopped_in:.0f} s to notice its peer was gone"
    assert not other_out.exists(), "the non-chief worker wrote its run folder"
    done = len(json.loads((chief_out / "history.json").read_text()))
    assert 2 <= done < 4

    # Both again with --resume, on the same cluster; every worker reads the chief's folder (here: one disk).
    chief, other = _worker(0, ports, chief_out, "--resume"), _worker(1, ports, chief_out, "--resume", "--json")
    out_chief, err_chief = chief.communicate(timeout=600)
    out_other, err_other = other.communicate(timeout=600)
    assert chief.returncode == 0, err_chief[-3000:]
    assert other.returncode == 0, err_other[-3000:]
    worker = json.loads(out_other)
    assert worker["chief"] is False and worker["index"] == 1 and worker["strategy"]["replicas"] == 2
    manifest = json.loads((chief_out / "model.json").read_text())
    assert manifest["epochs_done"] == 4 and manifest["strategy"] == {"name": "multiworker", "replicas": 2, "workers": 2}
    assert (chief_out / "curves.png").is_file() and (chief_out / "best.keras").is_file()

    # The killed and resumed cluster ends where one process with two replicas ends.
    ours = json.loads((chief_out / "history.json").read_text())
    theirs = json.loads((mirrored / "history.json").read_text())
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [4, 8, 12, 16]
    for epoch, (a, b) in enumerate(zip(ours, theirs), 1):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), epoch
        if epoch <= done:  # after a resume each replica validates with the averaged BatchNorm statistics (see above)
            assert a["val_acc"] == b["val_acc"], epoch
    diffs = [float(np.abs(a - b).max()) for a, b in zip(_weights(chief_out / "model.keras"),
                                                        _weights(mirrored / "model.keras"))]
    assert max(diffs) <= 1e-5, f"weights differ by up to {max(diffs):.3g}"


def test_a_bad_tf_config_is_one_line_before_tensorflow(tmp_path, monkeypatch):
    for config, fragment in [("{", "not JSON"), ('{"cluster": {"worker": ["nohost"]}, "task": {}}', "host:port"),
                             ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
                              "index")]:
        monkeypatch.setenv("TF_CONFIG", config)
        one_line_error(run("train", *ARGS, "--strategy", "multiworker", "--out", tmp_path / "r"), "TF_CONFIG", fragment)
        assert not (tmp_path / "r").exists()
