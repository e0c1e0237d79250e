"""The results store and sweep: real measurements on this machine and on a real sshd, the store under
concurrent writers, a killed sweep resumed, and results/compare output."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from resnet_edge.measure.results import Store, parse_since
from tests.cli_helpers import run


@pytest.fixture(scope="module")
def models(converted):
    out, m = converted
    return {mode: out / m[mode]["file"]["path"] for mode in m}


@pytest.fixture()
def store(tmp_path, monkeypatch):
    path = tmp_path / "results.sqlite"
    monkeypatch.setenv("RESNET_EDGE_RESULTS", str(path))
    return path



def rows(path):
    with Store(str(path)) as s:
        return s.query()


def test_sweep_measures_skips_and_measures_again(models, store):
    args = ["sweep", models["float32"], models["int8"], "--target", "local", "--threads", "1,2", "--runs", "3",
            "--warmup", "0"]
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out["measured"]) == 4 and not out["skipped"] and not out["failed"] and out["store"] == str(store)
    stored = rows(store)
    assert len(stored) == 4 and {r["setting"] for r in stored} == {"xnnpack 1t", "xnnpack 2t"}
    assert all(r["p50_ms"] > 0 and len(r["model_sha256"]) == 64 and r["target"] == "local" for r in stored)
    assert json.loads(stored[0]["device"])["cores"] == os.cpu_count()
    again = json.loads(run(*args, "--json").output)
    assert len(again["skipped"]) == 4 and not again["measured"] and len(rows(store)) == 4
    human = run(*args, "--again")
    assert human.exit_code == 0 and "4 measured, 0 already in the store" in human.output
    assert len(rows(store)) == 8
    table = run("results", "--model", os.path.basename(models["int8"]))
    assert table.exit_code == 0 and table.output.count("model_int8.tflite") == 4
    compare = run("results", "compare", os.path.basename(models["float32"]), os.path.basename(models["int8"]), "--json")
    pairs = json.loads(compare.output)["pairs"]
    assert json.loads(compare.output)["kind"] == "model" and len(pairs) == 2
    assert all(p["ratio"] == pytest.approx(p["b_p50_ms"] / p["a_p50_ms"]) for p in pairs)
    csv = run("results", "--csv").output.splitlines()
    assert csv[0].startswith("id,measured_at,model_name") and len(csv) == 9
    assert len(json.loads(run("results", "--since", "1d", "--json").output)) == 8
    assert json.loads(run("results", "--since", "2999-01-01", "--json").output) == []


def test_bench_adds_to_the_store_unless_told_not_to(models, store):
    assert run("bench", models["int8"], "--runs", "2", "--no-store").exit_code == 0
    assert not store.exists() or rows(store) == []
    assert run("bench", models["int8"], "--runs", "2", "--threads", "1,2").exit_code == 0
    stored = rows(store)
    assert [r["setting"] for r in stored] == ["xnnpack 1t", "xnnpack 2t"] and stored[0]["runtime"] == "litert"
    assert json.loads(stored[0]["record"])["count"] == 2
    broken = store.parent / "not-a-store"
    broken.write_text("hello")
    r = run("bench", models["int8"], "--runs", "2", "--store", broken, "--json")
    assert r.exit_code == 0 and "warning: not stored" in r.output and '"p50_ms"' in r.output  # figures not lost


def test_sweep_over_two_devices_in_parallel_and_compare_them(models, store, sshd, monkeypatch):
    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    remote = f"{sshd.url}/?python={sys.executable}"
    r = run("sweep", models["int8"], "--target", "local", "--target", remote, "--threads", "1", "--runs", "3", "--json")
    assert r.exit_code == 0, r.output
    assert {m["target"] for m in json.loads(r.output)["measured"]} == {"local", remote}
    out = json.loads(run("results", "compare", "local", remote, "--json").output)
    assert out["kind"] == "target" and len(out["pairs"]) == 1 and out["pairs"][0]["ratio"] > 0


def test_a_dead_device_fails_its_jobs_and_the_others_go_on(models, store):
    from tests.sshd import free_port

    dead = f"ssh://127.0.0.1:{free_port()}"
    r = run("sweep", models["int8"], models["float32"], "--target", dead, "--target", "local", "--threads", "1",
            "--runs", "2")
    assert r.exit_code == 1
    assert "2 measured" in r.output and "2 failed" in r.output and "refused the connection" in r.output
    assert r.output.strip().splitlines()[-1].startswith("Error: 2 of 4 jobs failed")
    assert {r["target"] for r in rows(store)} == {"local"}


def test_store_under_concurrent_writers(tmp_path):
    path = tmp_path / "shared.sqlite"
    writer = textwrap.dedent(f"""
        import sys
        from resnet_edge.measure.results import Store
        w = int(sys.argv[1])
        with Store({str(path)!r}) as s:
            for i in range(40):
                s.add([{{"model": "m.tflite", "setting": "x", "setting_index": 0, "p50_ms": float(i), "writer": w}}],
                      target=f"w{{w}}", target_url="local", machine={{}}, models={{"m.tflite": "ab" * 32}},
                      settings={{0: {{"i": i}}}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(w)]) for w in range(6)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    got = rows(path)
    assert len(got) == 240 and len({r["id"] for r in got}) == 240
    assert sorted((r["target"], r["p50_ms"]) for r in got) == sorted((f"w{w}", float(i)) for w in range(6) for i in range(40))
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_killed_sweep_resumes_where_it_stopped(models, tmp_path):
    store = tmp_path / "killed.sqlite"
    env = {**os.environ, "RESNET_EDGE_RESULTS": str(store)}
    cmd = [sys.executable, "-m", "resnet_edge", "sweep", str(models["float32"]), str(models["int8"]),
           str(models["float16"]), "--target", "local", "--threads", "1,2", "--runs", "20", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists() and len(rows(store)) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(rows(store))
    assert 2 <= first < 6, f"killed too late: {first} of 6 stored"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["skipped"]) == first and len(out["measured"]) == 6 - first
    keys = [(r["model_sha256"], r["setting_key"]) for r in rows(store)]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert sqlite3.connect(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_bad_input(models, store, tmp_path):
    r = run("sweep", models["int8"], "--target", "local", "--accelerator", "nnapi")
    assert r.exit_code == 2 and "nnapi runs on Android only" in r.output
    r = run("sweep", models["int8"], "--target", "nowhere")
    assert r.exit_code == 1 and "no device named 'nowhere'" in r.output
    r = run("results", "--since", "last tuesday")
    assert r.exit_code == 1 and "--since" in r.output
    r = run("results", "compare", "a.tflite", "b.tflite")
    assert r.exit_code == 1 and "nothing in the store" in r.output
    (tmp_path / "notadb").write_text("hello")
    r = run("results", "--store", tmp_path / "notadb")
    assert r.exit_code == 1 and "cannot open the results store" in r.output and "Traceback" not in r.output
    assert parse_since("7d") < parse_since("1h")
