"""resnet-edge search: a tiny search on the digits with this machine's CPU (one thread) as the device, its budget set
between the measured latencies of two candidates so that the right answer is known; the search continued; a dead
worker's trial redone; the latency model on points it must fit; every bad input in one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error, run

#: ResNet-20 and ResNet-110 at full width in int8: about five times apart in latency.
CHEAP, DEAR = 20, 110
SMALL = ("--depths", f"{CHEAP},{DEAR}", "--widths", "1", "--modes", "int8", "--threads", "1", "--runs", "20",
         "--measure", "2", "--limit", "160", "--epochs", "2", "--batch-size", "32", "--no-second-seed")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The two candidates timed on this machine first (into the test's results store), and a budget between them."""
    from resnet_edge.data import load
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.search.latency import Meter
    from resnet_edge.search.space import Candidate
    from resnet_edge.targets import resolve

    out = tmp_path_factory.mktemp("search")
    meter = Meter(resolve("local"), Setting(threads=1), load("digits"), out / "latency", runs=20, metric="p90_ms")
    cheap, dear = Candidate(CHEAP, (1.0,) * 3, "int8"), Candidate(DEAR, (1.0,) * 3, "int8")
    meter.measure([cheap, dear])
    low, high = meter.latency(cheap), meter.latency(dear)
    assert high > 2 * low  # the premise: far apart
    return out, math.sqrt(low * high), low, high, cheap, dear


@pytest.fixture(scope="module")
def searched(measured):
    out, budget, *_ = measured
    r = run("search", *SMALL, "--budget", f"{budget:.4f}ms", "--trials", "2", "--out", out, "--json", "--second-seed")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), out


def test_the_search_returns_the_only_candidate_under_the_budget(measured, searched):
    """ResNet-110 misses the budget on this machine, so the winner is ResNet-20: re-measured with 100 runs it meets
    the budget, it was never trained past, and the other was never trained at all."""
    _, budget, low, high, cheap, dear = measured
    result, out = searched
    w = result["winner"]
    assert w["key"] == cheap.key and w["meets_budget"] and w["p90_ms"] <= budget and w["runs"] >= 100
    assert result["feasible"] == 1 and result["space"]["candidates"] == 2
    assert result["device_measurements"] == 0  # both were in the results store: nothing measured twice
    assert {t["candidate"] for t in result["trials"]} == {cheap.key}
    assert not list((out / "trials").glob(f"*{dear.key}*"))
    assert 0 <= w["test_top1"] <= 1 and Path(w["file"]).exists()
    grid = {row["candidate"]: row for row in result["baseline"]["rows"]}
    assert grid[cheap.key]["under_budget"] and not grid[dear.key]["under_budget"]
    assert "val_acc" in grid[cheap.key] and "val_acc" not in grid[dear.key]
    assert result["pareto"] and result["pareto"][0]["candidate"] == cheap.key
    again = result["second_seed"]  # the winner and the grid's best trained again with the next seed
    assert set(again) == {"winner", "baseline"} and all(x["seed"] == 1 and x["candidate"] == cheap.key
                                                          for x in again.values())
    assert all(0 <= x["test_top1"] <= 1 and x["val_acc"] is not None for x in again.values())
    assert (out / "second-seed" / cheap.key / "model.keras").exists()


def test_the_winner_is_app_ready_and_has_a_recipe(searched):
    from resnet_edge.recipe import load
    from resnet_edge.tflite.inspect import inspect

    result, out = searched
    info = inspect(result["winner"]["file"])
    assert info["app_metadata"] and info["integrity"]["status"] == "verified"
    recipe = load(str(out / "winner.yaml"))
    assert recipe["model"]["depth"] == CHEAP and recipe["variants"][0]["modes"] == ["int8"]
    assert recipe["gates"]["latency"]["p90_ms"] == result["budget_ms"]


def test_the_search_continues_where_it_stopped(measured, searched):
    """Run again with one trial more: the study is read back, the two trials stay as they were, one is added."""
    _, out = searched
    out, budget, *_ = measured
    before = {t["number"]: t for t in json.loads((out / "search.json").read_text())["trials"]}
    r = run("search", *SMALL, "--budget", f"{budget:.4f}ms", "--trials", "3", "--out", out, "--json",
            "--no-baseline")
    assert r.exit_code == 0, r.output
    after = {t["number"]: t for t in json.loads(r.stdout)["trials"]}
    assert len(after) == 3 and all(after[n]["val_acc"] == before[n]["val_acc"] for n in before)


def test_a_dead_workers_trial_is_redone(tmp_path):
    """ask/tell has no heartbeat: a trial left RUNNING by a process that is gone is failed and queued again."""
    import optuna

    from resnet_edge.search.study import reap

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="search", direction="maximize")
    import socket

    t = study.ask()
    t.suggest_categorical("candidate", ["a", "b"])
    t.set_user_attr("host", socket.gethostname())
    t.set_user_attr("pid", dead.pid)
    alive = study.ask()  # this process: alive, left alone
    alive.suggest_categorical("candidate", ["a", "b"])
    alive.set_user_attr("host", socket.gethostname())
    import os

    alive.set_user_attr("pid", os.getpid())
    said = []
    assert reap(study, said.append) == 1 and "queued again" in said[0]
    states = {x.number: x.state for x in study.get_trials()}
    assert states[t.number] == optuna.trial.TrialState.FAIL and states[alive.number] == optuna.trial.TrialState.RUNNING
    again = study.ask()
    assert again.suggest_categorical("candidate", ["a", "b"]) == t.params["candidate"]


def test_the_latency_model_fits_what_it_should():
    """On points that follow a line in the stage MACs, the stage-level model predicts the held-out ones exactly;
    with few points it falls back to total MACs."""
    import numpy as np

    from resnet_edge.search.latency import LatencyModel, held_out
    from resnet_edge.search.space import Candidate

    rng = np.random.default_rng(0)
    coef = np.array([0.01, 0.002, 0.003, 0.004, 0.005, 0.0005])
    points = []
    for i in range(24):
        f = [1.0, *rng.uniform(1, 10, 4), float(rng.integers(9, 54))]
        points.append((Candidate(20 + i, (1.0, 1.0, 1.0), "int8"), f, float(np.asarray(f) @ coef)))
    h = held_out(points)
    assert h["n"] == 24 and h["within_10pct"] == 1.0 and h["median_abs_error"] < 1e-6
    few = LatencyModel().fit(points[:3])
    assert few.predict(points[5][0], points[5][1]) > 0


@pytest.mark.parametrize("args, fragment", [
    (("--budget", "fast"), "is not a time"),
    (("--budget", "1ms", "--depths", "19"), "--depths 19"),
    (("--budget", "1ms", "--modes", "int4"), "--modes int4"),
    (("--budget", "1ms", "--widths", "0,1"), "--widths"),
    (("--budget", "1ms", "--max-size", "big"), "is not a size"),
    (("--budget", "1ms", "--time", "soon"), "is not a duration"),
])
def test_bad_options_are_one_line_before_tensorflow(args, fragment):
    code = ("import sys; from resnet_edge.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n    raise")
    r = subprocess.run([sys.executable, "-c", code, "search", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode in (1, 2) and fragment in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("Error")]) == 1


def test_a_budget_nothing_reaches_names_the_fastest(measured, tmp_path):
    _, budget, low, high, cheap, dear = measured
    r = run("search", *SMALL, "--budget", "0.001ms", "--out", tmp_path / "s", "--trials", "1")
    one_line_error(r, "nothing reaches 0.001 ms at p90", cheap.key, "--threads")
    import optuna

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    assert study.trials == []  # nothing was trained


def test_storage_and_data_errors_are_one_line(measured, tmp_path):
    _, budget, *_ = measured
    r = run("search", *SMALL, "--budget", f"{budget:.4f}ms", "--out", tmp_path / "s", "--trials", "1",
            "--storage", "postgresql://nobody@127.0.0.1:1/none")
    one_line_error(r, "--storage postgresql://nobody@127.0.0.1:1/none: cannot open it")
    from tools.transfer import digits_by_class, write_digit_folder

    order = digits_by_class()
    small = write_digit_folder(tmp_path / "few", {c: order[c][:3] for c in range(3)})
    r = run("search", "--data", f"folder:{small}", "--budget", "1ms", "--out", tmp_path / "f")
    assert r.exit_code == 1 and "Traceback" not in r.output and ("too few" in r.output), r.output


def _two_workers(measured, out: Path, storage: str | None) -> list:
    """One search and one worker that joins it, at once, as two processes; the study they shared."""
    import optuna

    _, budget, *_ = measured
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    extra = ["--storage", storage] if storage else []
    main = subprocess.Popen([sys.executable, "-m", "resnet_edge", "search", *SMALL, "--epochs", "1",
                             "--budget", f"{budget:.4f}ms", "--trials", "4", "--out", str(out), "--no-baseline",
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 300
    while storage is None and not (out / "study.db").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    joined = subprocess.run([sys.executable, "-m", "resnet_edge", "search", "--join", str(out), "--json", *extra],
                            capture_output=True, text=True, env=env, timeout=600)
    stdout, stderr = main.communicate(timeout=600)
    assert main.returncode == 0, stderr[-3000:]
    assert joined.returncode == 0, joined.stderr[-3000:]
    worker = json.loads(joined.stdout)
    study = optuna.load_study(study_name="search", storage=storage or f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states), states
    assert len(trials) == 4 and len({t.number for t in trials}) == 4  # none lost, none done twice
    pids = {t.user_attrs["pid"] for t in trials}
    assert worker["worker"] in pids and main.pid in pids  # both trained
    assert worker["trials_trained"] == sum(t.user_attrs["pid"] == worker["worker"] for t in trials)
    assert json.loads(stdout)["winner"]["meets_budget"]
    return trials


def test_two_workers_share_one_sqlite_study(measured, tmp_path):
    _two_workers(measured, tmp_path / "s", None)


def test_two_workers_share_one_postgresql_study(measured, tmp_path):
    """The shared storage workers on several machines use: a real PostgreSQL server on loopback."""
    from tests import pg

    if pg.binaries() is None:
        pytest.skip("no PostgreSQL here (Debian's package postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="psycopg is in the dev extra")
    server = pg.Server()
    url = server.start()
    try:
        trials = _two_workers(measured, tmp_path / "s", url)
        assert all("latency_ms" in t.user_attrs for t in trials)
    finally:
        server.stop()


def test_a_search_killed_with_9_continues(measured, tmp_path):
    """Killed in the middle of a trial's training, run again: the trial the dead process held is failed and redone,
    and the search ends with the trials it was asked for."""
    import optuna

    _, budget, *_ = measured
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "resnet_edge", "search", *SMALL, "--budget", f"{budget:.4f}ms", "--trials", "2",
            "--out", str(out), "--no-baseline", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("trials/*/checkpoints/*/state.json")) and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.1)
        os.killpg(proc.pid, 9)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    by_state = {}
    for t in study.get_trials():
        by_state.setdefault(t.state.name, []).append(t)
    assert len(by_state["FAIL"]) == 1 and by_state["FAIL"][0].user_attrs["pid"] == proc.pid
    assert len(by_state.get("COMPLETE", [])) + len(by_state.get("PRUNED", [])) == 2
    assert json.loads(r.stdout)["winner"]["meets_budget"]


def test_the_search_through_the_test_sshd(measured, sshd, monkeypatch, tmp_path):
    """The same search with the device behind a real OpenSSH server (on loopback, so the budget between the two
    candidates still holds): the candidates are timed there, stored under that target, and the winner meets it."""
    from resnet_edge.measure.results import Store

    monkeypatch.setenv("RESNET_EDGE_SSH_CONFIG", str(sshd.config))
    _, budget, low, high, cheap, dear = measured
    url = f"{sshd.url}/?python={sys.executable}"
    r = run("search", *SMALL, "--target", url, "--budget", f"{budget:.4f}ms", "--trials", "1", "--epochs", "1",
            "--out", tmp_path / "s", "--no-baseline", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["winner"]["key"] == cheap.key and result["winner"]["meets_budget"]
    assert result["device_measurements"] >= 1  # timed over SSH, not read from this machine's rows
    with Store(write=False) as store:
        rows = store.query(model=f"{cheap.key}.tflite", target=url)
    assert rows and all(row["target_url"] == url for row in rows)


def test_drift_is_seen_and_what_was_timed_since_is_timed_again(measured, tmp_path):
    """A real load: a busy process on the one core this test and the harness it starts may use. The reference, timed
    again, has moved; the candidates timed since are timed again; without the load nothing has moved."""
    from resnet_edge.data import load
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.search.latency import Meter
    from resnet_edge.targets import resolve

    _, _, low, high, cheap, dear = measured
    meter = Meter(resolve("local"), Setting(threads=1), load("digits"), tmp_path, runs=20, metric="p90_ms")
    saved = os.sched_getaffinity(0)
    core = min(saved)
    os.sched_setaffinity(0, {core})  # inherited by the harness's process
    try:
        meter.measure([cheap, dear], again=True)
        was = meter.latency(dear)  # the larger: an inference long enough to be cut by the other process
        steady = meter.drift(dear, was, [cheap], tolerance=0.5)
        assert not steady["drift"]
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            os.sched_setaffinity(hog.pid, {core})
            time.sleep(0.5)
            event = meter.drift(dear, was, [cheap], tolerance=0.3, wait=0)
        finally:
            hog.kill()
            hog.wait()
    finally:
        os.sched_setaffinity(0, saved)
    assert event["drift"] and event["moved"] > 0.3 and event["retimed"] == [cheap.key], event
