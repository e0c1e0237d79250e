"""The search: measure, predict, then train only what can meet the budget.

1. **Latency first.** A spread of candidates (every depth and mode at full and thinnest width, then random ones) is
   converted untrained and timed on the device; the latency model is fitted on them; the candidates it predicts
   near the budget are timed next, up to ``measure`` in all, and the model is fitted again. A candidate is
   *feasible* when its measured latency at the metric is within the budget, or, not measured, when its predicted
   latency is within 90% of it; and its file within ``max_bytes`` and its peak memory on the device within
   ``max_memory_mb`` (measured with its latency when asked for; a candidate not measured yet is checked when a trial
   draws it).
2. **Accuracy.** An Optuna study (storage: SQLite in the run folder by default, or any Optuna storage URL; resumable)
   maximizes validation accuracy over the feasible candidates, ask/tell: a trial whose candidate was only predicted
   is timed on the device first (the device step), and dropped when it misses the budget; then trained epoch by epoch
   with the paper's recipe (:func:`resnet_edge.train.train`, resumed from its checkpoint each epoch), each epoch's
   validation accuracy reported to the successive-halving pruner, so many candidates get short runs and few get
   full ones. A worker that died holding a trial (its process gone) has the trial failed and its candidate queued
   again when a worker starts.
3. **The winner** (the best completed trial) is converted with its trained weights and the app metadata
   (:func:`resnet_edge.convert.convert`), timed again with at least 100 runs after warm-up, and must meet the budget;
   its test accuracy is measured once. The plain grid a user would try by hand (every depth at full width, int8) is
   measured and trained the same way, beside it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Callable

import numpy as np

from resnet_edge._tmp import pid_alive
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.search.latency import (SETTLE_STEP_S, SETTLE_WAIT_S, LatencyModel, Meter, cv_of, held_out, moved,
                                         spread_pick)
from resnet_edge.search.shipped import converted_as, model_file, shipped
from resnet_edge.search.space import Candidate, check_epochs, check_io, check_jobs, space_for

FINAL_RUNS = 100
#: The winner's timing is taken again (up to FINAL_NOISY_TRIES more times) while its coefficient of variation is above
#: this: single slow runs of a busy host (a shared machine here: CV 30% with 0.7% from the median deviation) say
#: nothing of the model. Every timing is kept in ``timings_ms``; the last is the one that counts.
FINAL_MAX_CV = 0.05
FINAL_NOISY_TRIES = 2
#: How many of the best trials are timed again, in turn, until one meets the budget.
FINAL_TRIES = 3
#: Trials (of this worker) between two timings of the reference candidate (drift: heat, another load).
DRIFT_EVERY = 4


#: Draws in a row the sampler may waste (over the budget, or a candidate already trained) before an untried feasible
#: candidate is queued instead.
MAX_SKIPS = 25
#: Trials the TPE sampler draws at random before it models: skipped draws count too (and cost nothing), so a space
#: that is mostly over the budget is learned from them before the first trained trial is wasted on it.
STARTUP = 5


def first_rung(epochs: int) -> int:
    """The epochs every trial trains before successive halving may stop it: a third of ``epochs``. The paper's
    warm-up makes the first epoch's accuracy chance for every candidate, which would prune at random."""
    return max(1, epochs // 3)


def metric_on(target, metric: str) -> str:
    """The latency figure the budget is held against on ``target``: ``metric`` (p50, p90), or ``avg`` (the mean of the
    timed runs) over adb, where benchmark_model prints no p90 (and a median only in newer builds)."""
    return "avg" if target.kind == "adb" else metric


def pruner_for(epochs: int):
    """Successive halving over a trial's epochs: its first rung at :func:`first_rung`, a third kept at each rung."""
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first_rung(epochs), reduction_factor=3)


def sampler(seed: int):
    """TPE over the space's own dimensions (depth, each stage's keep ratio, mode) jointly, so that what one trial
    teaches (a thin last stage loses accuracy) carries over to candidates not tried; seeded."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=STARTUP)


def params_of(c: Candidate, space) -> dict:
    """A candidate as the study's parameters (what :func:`suggest` draws in ``space``)."""
    return {"depth": c.depth, **({"input_size": c.size} if c.size is not None else {}),
            **{f"keep_conv{i + 2}": k for i, k in enumerate(c.keep)},
            **{f"stream_conv{i + 2}": k for i, k in enumerate(c.stream or (1.0,) * len(c.keep))
               if space.streams != (1.0,)}, "mode": c.mode,
            **({"runtime": c.runtime} if c.runtime != "litert" else {})}


def suggest(trial, space) -> Candidate:
    """The candidate the sampler draws for ``trial``, one dimension of the space at a time (the input resolution
    and the runtime only when the space has them)."""
    depth = trial.suggest_categorical("depth", list(space.depths))
    size = space.sizes[0] if space.sizes == (None,) else int(trial.suggest_categorical("input_size", list(space.sizes)))
    keep = tuple(float(trial.suggest_categorical(f"keep_conv{i + 2}", list(space.keeps))) for i in range(space.stages))
    stream = None if space.streams == (1.0,) else tuple(
        float(trial.suggest_categorical(f"stream_conv{i + 2}", list(space.streams))) for i in range(space.stages))
    mode = trial.suggest_categorical("mode", list(space.modes))
    runtime = space.runtimes[0] if space.runtimes == ("litert",) else trial.suggest_categorical("runtime",
                                                                                               list(space.runtimes))
    return Candidate(int(depth), keep, mode, size, runtime, stream)


def trials_of(study) -> list:
    """The study's trials that train or timed a candidate: not the skipped draws (see :func:`draw`), not failed
    ones (a dead worker's, queued again)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get("skipped")]


def epochs_spent(trials: list) -> int:
    """Epochs trained by ``trials`` so far (each float epoch reports one validation accuracy; QAT epochs are kept
    apart)."""
    return sum(len(t.intermediate_values) + (t.user_attrs.get("qat_epochs") or 0) for t in trials)


def prior(feasible: list[Candidate], meter) -> tuple[Candidate, str]:
    """The first trial, and why: the network a user would pick by hand when it meets the budget (the shallowest depth
    searched at full width, its whole residual stream, on LiteRT; int8 where it is feasible): it trains whole (nothing
    to compare it with at the first rung), so what the search returns is at least that choice on validation; else the
    feasible candidate with the most trainable weights (the most capacity the budget allows). The fastest of equals,
    then the largest input."""
    from resnet_edge.arch.spec import count

    plain = [c for c in feasible if min(c.keep) == 1 and c.stream is None and c.runtime == "litert"]
    if plain:
        return (min(plain, key=lambda c: (c.depth, c.mode != "int8", -(c.size or 0), meter.latency(c) or 0.0, c.key)),
                "the shallowest network at full width, as a user would pick it by hand")
    return (max(feasible, key=lambda c: (count(meter.spec(c)).trainable_params, -(meter.latency(c) or 0.0), c.key)),
            "the feasible candidate with the most weights")


def draw(study, space, feasible: set[str], by_key: dict, rng):
    """Ask the study for a trial whose candidate is feasible and not tried yet; return (trial, candidate), or None
    when every feasible candidate has been tried. A draw the sampler wastes is told at once, as what it would have
    given, so that the sampler learns from it without a trial's cost: over the budget -> pruned (the worst); the
    same as a trial trained before -> that trial's value; being trained by another worker -> failed (ignored).
    After MAX_SKIPS wasted draws in a row, an untried feasible candidate drawn at random is queued. Call it under
    the trials lock."""
    import optuna

    TS = optuna.trial.TrialState
    skips = 0
    while True:
        tried = {}
        for t in trials_of(study):
            tried.setdefault(t.user_attrs.get("candidate"), t)
        trial = study.ask()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        c = suggest(trial, space)
        trial.set_user_attr("candidate", c.key)
        same = tried.get(c.key)
        if c.key in feasible and same is None:
            return trial, c
        if same is None or same.user_attrs.get("over_budget"):
            trial.set_user_attr("skipped", "over the budget or --max-size")
            study.tell(trial, state=TS.PRUNED)
        elif same.state == TS.COMPLETE:
            trial.set_user_attr("skipped", f"trial {same.number} trained it")
            study.tell(trial, same.value)
        elif same.state == TS.PRUNED:
            trial.set_user_attr("skipped", f"trial {same.number} trained it")
            study.tell(trial, state=TS.PRUNED)
        else:
            trial.set_user_attr("skipped", f"trial {same.number} is training it")
            study.tell(trial, state=TS.FAIL)
        skips += 1
        if skips >= MAX_SKIPS:
            untried = sorted(feasible - set(tried))
            if not untried:
                return None
            study.enqueue_trial(params_of(by_key[untried[int(rng.integers(len(untried)))]], space))
            skips = 0


def _twin(study, trial, c: Candidate, by_key: dict):
    """A finished trial that trained the same float network as ``c`` (another mode or runtime), or None. One
    trained whole by a worker on another machine (its model is not here) is no twin: ``c`` trains here."""
    import optuna

    for t in trials_of(study):
        other = by_key.get(t.user_attrs.get("candidate"))
        if (t.number != trial.number and other is not None and other.trained_as == c.trained_as
                and (t.state == optuna.trial.TrialState.PRUNED
                     or (t.state == optuna.trial.TrialState.COMPLETE
                         and (Path(t.user_attrs.get("folder") or "-") / "model.keras").exists()))
                and t.user_attrs.get("folder") and not t.user_attrs.get("twin_of")):
            return t
    return None


def _shipped_attrs(trial, got: dict, float_val_acc: float | None) -> None:
    """What a trial keeps of its converted model's figure (:func:`shipped`): the float network's accuracy beside
    it, and the QAT epochs it trained (not when they were spent before, by a twin on another runtime)."""
    trial.set_user_attr("float_val_acc", float_val_acc)
    if got.get("qat_epochs") and not got.get("read_back"):
        trial.set_user_attr("qat_epochs", got["qat_epochs"])


def reap(study, say) -> int:
    """Trials left RUNNING by a worker of this machine whose process is gone: failed, their candidate queued again."""
    import optuna

    n = 0
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and t.user_attrs.get("pid") and not pid_alive(int(t.user_attrs["pid"])):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params)
            say(f"search: trial {t.number} was left by a worker that died (pid {t.user_attrs['pid']}): queued again")
            n += 1
    return n


def open_storage(storage: str):
    """The Optuna storage at ``storage``, its tables created under :func:`shared_lock`: workers started at once on a
    new database otherwise race to create them, and all but one fail (PostgreSQL: duplicate key in pg_type;
    optuna/optuna#1092)."""
    import optuna

    with shared_lock(storage, f"resnet-edge storage {storage}"):
        return optuna.storages.RDBStorage(storage)


class Crew:
    """The worker processes ``--jobs`` adds (each ``search --join``), started as soon as the search's settings are in
    its storage so that they are ready when its first trial is; their output goes to ``out``/workers/."""

    def __init__(self, out: Path, progress: Callable[[str], None]):
        self.out, self.say = out, progress
        self.procs: list = []

    def start(self, n: int, storage: str) -> None:
        """``n`` workers joining the search in ``storage``."""
        import subprocess
        import sys

        if not n:
            return
        folder = self.out / "workers"
        folder.mkdir(parents=True, exist_ok=True)
        self.say(f"search: starting {n} more worker(s) (--jobs); their output in {folder}")
        for i in range(n):
            with open(folder / f"worker-{i + 2}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "resnet_edge", "search", "--join", str(self.out), "--storage", storage,
                     "--json"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def ready(self, study, timeout: float = 600) -> None:
        """Wait until every worker is at its first trial (each says so in the storage, :func:`_search`), so that the
        trials start together; a worker that ended, or ``timeout`` seconds, ends the wait."""
        waiting = {p.pid for p in self.procs}
        if waiting:
            self.say(f"search: waiting for the {len(waiting)} other worker(s) to be ready")
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            said = study.user_attrs
            waiting = {p.pid for p in self.procs if p.poll() is None and f"ready {p.pid}" not in said}
            if waiting:
                time.sleep(0.5)

    def wait(self) -> None:
        """After the last trial was asked for: each worker trains what it holds and ends."""
        for i, p in enumerate(self.procs):
            if p.wait() != 0:
                self.say(f"search: worker {i + 2} ended with exit code {p.returncode} (see "
                         f"{self.out / 'workers'}/worker-{i + 2}.log); a trial it held is failed and redone")

    def stop(self) -> None:
        """The search failed or was interrupted: the workers go too (else they would wait for it)."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            p.wait()


@contextlib.contextmanager
def device_lock(target, storage: str, say: Callable[[str], None] = lambda text: None):
    """Held while a device is timed, so that no two trials time it at once: the storage's lock (:func:`shared_lock`:
    the workers of this search, on any machine), then the device's own where it has one
    (:func:`resnet_edge.targets.device_hold`: any process, another search's too)."""
    from resnet_edge.targets import device_hold

    with shared_lock(storage, f"resnet-edge device {target.url}"), device_hold(target, say):
        yield


@contextlib.contextmanager
def shared_lock(storage: str, name: str):
    """A lock every worker of ``storage`` sees: a PostgreSQL advisory lock in a PostgreSQL storage (workers on
    several machines), else a lock file in this machine's cache (a SQLite storage is one machine's)."""
    import hashlib

    if storage.startswith("postgresql"):
        import sqlalchemy

        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        engine = sqlalchemy.create_engine(storage)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            engine.dispose()
        return
    from resnet_edge.io import exclusive

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnet-edge" / "devices"
    base.mkdir(parents=True, exist_ok=True)
    with exclusive(base / hashlib.sha256(name.encode()).hexdigest()[:16], wait=math.inf):
        yield


def _history(run_dir: Path) -> list[dict]:
    """The epochs a training in ``run_dir`` has done ([] before the first)."""
    try:
        return json.loads((run_dir / "history.json").read_text())
    except (OSError, ValueError):
        return []


def _epochs_done(run_dir: Path) -> int:
    return len(_history(run_dir))


def _val_accuracy(run_dir: Path) -> float | None:
    history = _history(run_dir)
    return float(history[-1]["val_acc"]) if history else None


def _weights_for(weights: str | None, space, depths) -> tuple[dict, object]:
    """``--weights``: the published file for each depth searched (``imagenet``: from the weight folders), or the one
    FILE given (the space narrowed to its depth); ({}, space) without. The files are checked tensor by tensor here."""
    import dataclasses

    from resnet_edge.arch.weights import choose

    if weights is None:
        return {}, space
    if space.family != "imagenet":
        raise ConfigError(f"--weights {weights}: published weights are ImageNet networks (ResNet-18/34/50); these "
                          "images are searched with the CIFAR family: give an image folder and --sizes of 64 px or more")
    if weights == "imagenet":
        return {d: choose("imagenet", d).file for d in space.depths}, space
    chosen = choose(weights)
    if depths and tuple(depths) != (chosen.depth,):
        raise ConfigError(f"--weights {weights} holds ResNet-{chosen.depth}: give --depths {chosen.depth} or leave "
                          "--depths out")
    if chosen.depth not in space.depths:
        raise ConfigError(f"--weights {weights} holds ResNet-{chosen.depth}, which the search does not take "
                          f"(ImageNet depths {', '.join(map(str, space.depths))})")
    return {chosen.depth: chosen.file}, dataclasses.replace(space, depths=(chosen.depth,))


def train_candidate(meter: Meter, c: Candidate, data, folder: Path, *, epochs: int, batch_size: int, seed: int,
                    limit: int | None, report: Callable[[float, int], bool] | None = None) -> dict:
    """Train ``c``'s float network for up to ``epochs`` (one epoch per call of :func:`train`, resumed from its
    checkpoint), calling ``report(val_acc, epoch)`` after each with the float validation accuracy; stop when it returns
    True (pruned). Trained whole, the network is converted in ``c``'s mode (QAT first for ``qat``) and ``val_acc`` is
    that model's (:func:`resnet_edge.search.shipped.shipped`; ``float_val_acc`` the float network's). Returns what
    happened."""
    from resnet_edge.train import Recipe

    weights = meter.weights.get(c.depth)
    if weights is not None:  # from published weights (thinner children from their parent's): a transfer recipe
        from resnet_edge.train import TRANSFER_LR, transfer_recipe

        recipe = transfer_recipe({"epochs": epochs, "batch_size": batch_size, "seed": seed, "lr": TRANSFER_LR,
                                  "warmup": 0}, {"freeze": "none", "head_epochs": 0, "fine_tune_lr": None}, True,
                                 len(data.train), data.num_classes)
    else:
        recipe = Recipe(epochs=epochs, batch_size=batch_size, seed=seed)
    t0 = time.monotonic()
    done = _epochs_done(folder)
    acc = _val_accuracy(folder) if done else None
    if not (done >= epochs and (folder / "model.keras").exists()):  # else trained whole before (a search run again)
        r = _train_float(meter, c, data, folder, recipe, weights, done, acc, epochs, limit, report)
        if r["pruned"]:
            return {**r, "seconds": time.monotonic() - t0}
        acc, done = r["val_acc"], r["epochs"]
    got = shipped(c.mode, folder, data, epochs=epochs, batch_size=batch_size, limit=limit)
    return {"val_acc": got["accuracy"], "float_val_acc": acc, "epochs": done, "pruned": False,
            "qat_epochs": got.get("qat_epochs"), "seconds": time.monotonic() - t0}


def _train_float(meter: Meter, c: Candidate, data, folder: Path, recipe, weights, done: int, acc: float | None,
                 epochs: int, limit: int | None, report) -> dict:
    """:func:`train_candidate`'s float training from epoch ``done`` (validation accuracy ``acc`` then) on."""
    from resnet_edge.train import saved_run, train

    while done < epochs:
        train(meter.spec(c), data, folder, recipe, weights=weights, resume=saved_run(folder) is not None, stop_after=1,
              limit=limit, verbose=0)
        done += 1
        acc = _val_accuracy(folder)
        # reported at every epoch; a stop at the last one is moot: the trial has trained whole
        if report is not None and report(acc, done) and done < epochs:
            return {"val_acc": acc, "epochs": done, "pruned": True}
    return {"val_acc": acc, "epochs": done, "pruned": False}


def search(source: str, target_text: str | None, budget_ms: float, **options) -> dict:
    """Search, and write ``out``/search.json, the winner's ``.tflite`` and a recipe that rebuilds it; return the
    result (see the module docstring and :func:`_search` for the options). ``jobs``: worker processes in all on this
    machine (the device elsewhere); ``worker``: only train trials of the search already started in this storage
    (:func:`join`), then return what this worker did."""
    crew = Crew(Path(options["out"]), options.get("progress") or (lambda text: None))
    try:
        return _search(source, target_text, budget_ms, crew=crew, **options)
    finally:
        crew.stop()


def _search(source: str, target_text: str | None, budget_ms: float, *, crew: Crew, metric: str = "p90",
            threads: int | None = 1, max_bytes: int | None = None, max_memory_mb: float | None = None,
            min_accuracy: float | None = None, trials: int = 12, epochs: int = 6, seed: int = 0, out: str | Path,
            storage: str | None = None, depths=None, widths=None, modes=None, measure: int = 24, batch_size: int = 64,
            limit: int | None = None, runs: int = 50, baseline: bool = True, store_path: str | None = None,
            worker: bool = False, time_limit: float | None = None, second_seed: bool = True,
            max_epochs: int | None = None, sizes=None, runtimes=None, io: str = "float32", streams=None, jobs: int = 1,
            weights: str | None = None, progress: Callable[[str], None] = lambda text: None) -> dict:
    """:func:`search`, with the workers of ``--jobs`` in ``crew`` (started here, stopped by the caller)."""
    import optuna

    from resnet_edge.data import load
    from resnet_edge.io import atomic_write_bytes
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.targets import resolve

    check_epochs(epochs, max_epochs)
    check_io(io, modes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = resolve(target_text)
    check_jobs(jobs, target.kind == "local")
    setting = Setting(threads=threads)
    data = load(source)
    if len(data.split("val")) < 10 or len(data.split("train")) < 20:
        raise ConfigError(f"{source}: {len(data.split('train'))} training and {len(data.split('val'))} validation "
                          "images are too few to choose a model on; give at least 20 and 10")
    space = space_for(data.image_size, depths, widths, modes, sizes, runtimes, streams)
    files, space = _weights_for(weights, space, depths)
    cands = space.candidates()
    asked = metric
    metric = metric_on(target, metric)
    if metric != asked:
        progress(f"search: {target} is timed by LiteRT's benchmark_model, which prints no {asked}: the budget is held "
                 "against the mean of each candidate's timed runs")
    key = f"{metric}_ms"
    storage = storage or f"sqlite:///{out / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name="search", storage=open_storage(storage), direction="maximize",
                                    load_if_exists=True,
                                    sampler=sampler(seed if not worker else seed + os.getpid()),
                                    pruner=pruner_for(epochs))
    except Exception as exc:  # noqa: BLE001 - any storage error is one line
        raise ConfigError(f"--storage {storage}: cannot open it ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not worker:
        study.set_user_attr("settings", {
            "source": source, "target_text": target_text, "budget_ms": budget_ms, "metric": metric, "threads": threads,
            "max_bytes": max_bytes, "max_memory_mb": max_memory_mb, "trials": trials, "epochs": epochs, "seed": seed,
            "depths": list(depths) if depths else None, "widths": list(widths) if widths else None,
            "modes": list(modes) if modes else None, "measure": measure, "batch_size": batch_size, "limit": limit,
            "runs": runs, "max_epochs": max_epochs, "sizes": list(sizes) if sizes else None,
            "runtimes": list(runtimes) if runtimes else None, "io": io,
            "streams": list(streams) if streams else None, "weights": weights})
        crew.start(jobs - 1, storage)  # they join once the feasible candidates are in the storage
    meter = Meter(target, setting, data, out / "latency", runs=runs, metric=key, store_path=store_path,
                  progress=progress, shared=study, lock=lambda: device_lock(target, storage, progress),
                  memory=max_memory_mb is not None, weights=files)
    cands = [c for c in cands if meter.buildable(c)]  # shortcut A cannot narrow the stream from one stage to the next
    rng = np.random.default_rng(seed)
    t_device = time.monotonic()
    first = spread_pick(cands, max(1, min(len(cands), measure // 2)), rng)
    meter.measure(first)

    def fitted():
        points = [(c, meter.features(c), meter.latency(c)) for c in cands if meter.latency(c) is not None]
        return LatencyModel().fit(points), points

    reference = first[0]  # timed first: what the device's drift is measured by
    reference_ms = meter.latency(reference)
    model, points = fitted()
    rest = [c for c in cands if meter.latency(c) is None]
    near = sorted(rest, key=lambda c: abs(model.predict(c, meter.features(c)) - budget_ms))
    more = [c for c in near if model.predict(c, meter.features(c)) <= 1.3 * budget_ms][:max(0, measure - len(first))]
    drift = []
    if more:
        meter.measure(more)
    if not all(meter.results[c.key].get("stored") for c in first + more):  # something was timed now: was it steady?
        drift.append({"after": "the latency phase", **meter.drift(reference, reference_ms, [
            c for c in first + more if c is not reference and not meter.results[c.key].get("stored")])})
    model, points = fitted()
    accuracy_of_model = held_out(points)
    device_seconds = time.monotonic() - t_device

    def predicted(c):
        return model.predict(c, meter.features(c))

    def size_ok(c):
        """Within --max-size and --max-memory, as far as measured (a candidate not timed yet is checked when drawn)."""
        r = meter.results.get(c.key) or {}
        return ((max_bytes is None or (r.get("bytes") or 0) <= max_bytes)
                and (max_memory_mb is None or (r.get("memory_mb") or 0) <= max_memory_mb))

    if max_memory_mb is not None and any(r.get("memory_mb") is None for r in meter.results.values()):
        raise ConfigError(f"--max-memory: {target} did not report the peak memory of what it ran (its kernel keeps no "
                          "resident-set high-water mark that can be reset); search without --max-memory")
    fast = [c for c in cands if (meter.latency(c) is not None and meter.latency(c) <= budget_ms)
            or (meter.latency(c) is None and predicted(c) <= 0.9 * budget_ms)]
    feasible = [c for c in fast if size_ok(c)]
    if fast and not feasible:
        measured = [c for c in fast if meter.results.get(c.key)]
        parts = []
        if max_memory_mb is not None:
            least = min(measured, key=lambda c: meter.results[c.key].get("memory_mb") or math.inf)
            parts.append(f"--max-memory {max_memory_mb:.4g} MiB (the least peak memory measured is "
                         f"{meter.results[least.key].get('memory_mb') or math.nan:.1f} MiB, {least.key})")
        if max_bytes is not None:
            least = min(measured, key=lambda c: meter.results[c.key].get("bytes") or math.inf)
            parts.append(f"--max-size {max_bytes / 1e6:g} MB (the smallest file is "
                         f"{(meter.results[least.key].get('bytes') or 0) / 1e6:.3g} MB, {least.key})")
        raise ConfigError(f"{len(fast)} candidate(s) reach {budget_ms:g} ms at {metric} on {target}, none within "
                          + " and ".join(parts) + ": allow more, or search smaller networks (--depths, --widths)")
    if not feasible:
        fastest = min((c for c in cands if meter.latency(c) is not None), key=meter.latency)
        raise ConfigError(
            f"nothing reaches {budget_ms:g} ms at {metric} on {target} ({setting.label()}): the fastest candidate "
            f"measured is {fastest.key} at {meter.latency(fastest):.3g} ms; give a larger budget, more threads "
            "(--threads, on a device with cores free), smaller images, or fewer modes that cost more (--modes int8)")
    progress(f"search: {len(feasible)} of {len(cands)} candidates can meet {budget_ms:g} ms "
             f"({len(meter.results)} measured, the rest predicted)")
    by_key = {c.key: c for c in cands}

    keys = study.user_attrs.get("feasible")
    if keys is None:  # the first worker's list; a worker starting at the same moment reads the one that stayed
        study.set_user_attr("feasible", sorted(c.key for c in feasible))
        study.set_user_attr("budget_ms", budget_ms)
        study.set_user_attr("metric", metric)
        keys = study.user_attrs["feasible"]
    elif study.user_attrs.get("budget_ms") != budget_ms or study.user_attrs.get("metric") != metric:
        raise ConfigError(f"{storage} holds a search for {study.user_attrs.get('budget_ms')} ms at "
                          f"{study.user_attrs.get('metric')}: give the same --budget and --metric to continue it, "
                          "or another --out / --storage")
    reap(study, progress)
    with shared_lock(storage, f"resnet-edge trials {storage}"):
        if not study.get_trials(deepcopy=False):  # a new search: the first trial is the prior's choice
            first_pick, why = prior([by_key[k] for k in keys], meter)
            study.enqueue_trial(params_of(first_pick, space), user_attrs={"prior": True})
            progress(f"search: the first trial is {first_pick.key}, {why}")
    if worker:
        study.set_user_attr(f"ready {os.getpid()}", socket.gethostname())  # the first worker's --jobs wait on it
    crew.ready(study)
    mine = 0
    since: list[Candidate] = []  # timed by the trials since the last reference timing
    t_train = time.monotonic()
    rung = first_rung(epochs)
    while True:
        if time_limit is not None and time.monotonic() - t_train > time_limit:
            progress(f"search: --time is up ({time_limit:g} s): no more trials started")
            break
        with shared_lock(storage, f"resnet-edge trials {storage}"):  # count and ask as one step: no trial too many
            real = trials_of(study)
            if len(real) >= trials:
                break
            if max_epochs is not None and epochs_spent(real) + rung > max_epochs:
                progress(f"search: the {max_epochs} epochs of --max-epochs are spent: no more trials started")
                break
            drawn = draw(study, space, set(keys), by_key, rng)
            if drawn is None:
                progress(f"search: every one of the {len(keys)} feasible candidates has been tried")
                break
            trial, c = drawn
        if meter.latency(c) is None:  # the device step: predicted only, measured now
            meter.measure([c])
            since.append(c)
        if mine and mine % DRIFT_EVERY == 0 and since:
            drift.append({"after": f"trial {trial.number}", **meter.drift(reference, reference_ms, since)})
            since = []
        lat = meter.latency(c)
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("predicted_ms", predicted(c))
        if meter.results[c.key].get("memory_mb") is not None:
            trial.set_user_attr("memory_mb", meter.results[c.key]["memory_mb"])
        if lat > budget_ms or not size_ok(c):
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            progress(f"search: trial {trial.number} {c.key}: {lat:.3g} ms measured, " + (
                "over the budget" if lat > budget_ms else "over --max-size or --max-memory"))
            continue
        twin = _twin(study, trial, c, by_key)
        if twin is not None:  # the same float network (another mode or runtime): that trial's training is this one's
            trial.set_user_attr("twin_of", twin.number)
            trial.set_user_attr("epochs", twin.user_attrs.get("epochs"))
            trial.set_user_attr("folder", twin.user_attrs["folder"])
            progress(f"search: trial {trial.number} {c.key} ({lat:.3g} ms): the network of trial {twin.number}, "
                     "trained already" + (f"; converting it ({c.mode})" if twin.state.name == "COMPLETE" else ""))
            if twin.state == optuna.trial.TrialState.COMPLETE:
                got = shipped(c.mode, Path(twin.user_attrs["folder"]), data, epochs=epochs, batch_size=batch_size,
                              limit=limit)
                _shipped_attrs(trial, got, twin.user_attrs.get("float_val_acc"))
                study.tell(trial, got["accuracy"])
            else:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        folder = out / "trials" / f"{trial.number:03d}-{c.key}"
        progress(f"search: trial {trial.number} {c.key} ({lat:.3g} ms): training")

        def report(acc, epoch, trial=trial):
            trial.report(acc, epoch)
            if max_epochs is not None and epoch < epochs and epochs_spent(trials_of(study)) >= max_epochs:
                trial.set_user_attr("stopped", "--max-epochs spent")
                return True
            return trial.should_prune()

        r = train_candidate(meter, c, data, folder, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit,
                            report=report)
        trial.set_user_attr("epochs", r["epochs"])
        trial.set_user_attr("train_seconds", r["seconds"])
        trial.set_user_attr("folder", str(folder))
        mine += 1
        if r["pruned"]:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            progress(f"search: trial {trial.number}: pruned after {r['epochs']} epoch(s) at {100 * r['val_acc']:.1f}%")
        else:
            _shipped_attrs(trial, r, r["float_val_acc"])
            study.tell(trial, r["val_acc"])
            progress(f"search: trial {trial.number}: {100 * r['val_acc']:.1f}% converted ({c.mode}; "
                     f"{100 * r['float_val_acc']:.1f}% in float) after {r['epochs']} epochs"
                     + (f" and {r['qat_epochs']} of QAT" if r.get("qat_epochs") else ""))
    crew.wait()
    if worker:
        return {"worker": os.getpid(), "host": socket.gethostname(), "trials_trained": mine, "storage": storage,
                "train_seconds": round(time.monotonic() - t_train, 1)}
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):  # the other workers' last
        reap(study, progress)
        time.sleep(1)
    train_seconds = time.monotonic() - t_train
    done = [t for t in trials_of(study) if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        spent = any(t.user_attrs.get("stopped") for t in trials_of(study))
        raise ResnetEdgeError("no trial completed: " + (
            f"the {max_epochs} epochs of --max-epochs were spent before one did; give a larger --max-epochs"
            if spent else "every candidate tried was pruned; give more --trials"))
    # The best trial first; one whose trained model misses the budget when timed again (its search measurement was
    # near the edge, or the device slowed) gives way to the next, up to FINAL_TRIES.
    misses = []
    for best in sorted(done, key=lambda t: (-t.value, t.user_attrs.get("latency_ms") or 0))[:FINAL_TRIES]:
        winner = by_key[best.user_attrs["candidate"]]
        folder = Path(best.user_attrs["folder"])
        if not (folder / "model.keras").exists():  # trained by a worker on another machine: trained again here
            folder = out / f"winner-train-{winner.key}"
            progress(f"search: {winner.key} was trained elsewhere: training it here ({epochs} epochs)")
            train_candidate(meter, winner, data, folder, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit)
        searched = meter.latency(winner)  # None when another worker timed it: then the trial's record of it
        searched = best.user_attrs.get("latency_ms") if searched is None else searched
        result = _finish(meter, winner, folder, data, source, out, budget_ms, metric, key, setting, target, progress,
                         searched, io, {"epochs": epochs, "batch_size": batch_size, "seed": seed, "limit": limit})
        if result["winner"]["meets_budget"]:
            break
        misses.append(result["winner"])
        progress(f"search: {winner.key} measured {result['winner'][key]:.3g} ms trained, over the budget: the next")
    if not result["winner"]["meets_budget"]:
        raise ResnetEdgeError(
            "no trained candidate met the budget when timed again: " + "; ".join(
                f"{m['key']} {m[key]:.3g} ms" for m in misses) + f" against {budget_ms:g} ms at {metric}; the device "
            "may be busier than during the search (the study is kept: run again to continue, or give a larger budget)")
    result["misses"] = misses
    if min_accuracy is not None and result["winner"]["test_top1"] < min_accuracy / 100:
        result["below_min_accuracy"] = True
    trials_out = [{"number": t.number, "state": t.state.name, "candidate": t.user_attrs.get("candidate"),
                   "val_acc": t.value if t.state == optuna.trial.TrialState.COMPLETE else
                   (max(t.intermediate_values.values()) if t.intermediate_values else None),
                   **{k: t.user_attrs.get(k) for k in ("latency_ms", "predicted_ms", "epochs", "train_seconds",
                                                       "over_budget", "stopped", "prior", "twin_of",
                                                       "float_val_acc", "qat_epochs", "folder")}}
                  for t in trials_of(study)]
    skipped = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("skipped")]
    grid = _baseline(meter, space, data, out, budget_ms, epochs, batch_size, seed, limit, progress,
                     _trained(trials_of(study), by_key)) if baseline else None
    spread = None
    if second_seed:  # the winner and the best of the grid again with another seed: how much of the gap is the seed
        spread = {}
        pairs = [("winner", winner)] + ([("baseline", grid["members"][grid["best"]["candidate"]])]
                                        if grid and grid["best"] else [])
        for role, c in pairs:
            progress(f"search: {role} {c.key} again with seed {seed + 1}")
            folder = out / "second-seed" / c.key  # the same candidate in both roles: trained once
            r = train_candidate(meter, c, data, folder, epochs=epochs, batch_size=batch_size, seed=seed + 1, limit=limit)
            spread[role] = {"candidate": c.key, "seed": seed + 1, "val_acc": r["val_acc"],
                            "test_top1": shipped(c.mode, folder, data, epochs=epochs, batch_size=batch_size,
                                                 limit=limit, split="test")["accuracy"]}
    result.update({"budget_ms": budget_ms, "metric": metric, "metric_asked": asked, "target": str(target),
                   "setting": setting.label(),
                   "space": {"family": space.family, "depths": list(space.depths), "keeps": list(space.keeps),
                             "modes": list(space.modes), "sizes": list(space.sizes), "runtimes": list(space.runtimes),
                             "streams": list(space.streams), "candidates": len(cands)},
                   "feasible": len(keys), "measured": len(meter.results), "jobs": jobs, "device_measurements": meter.measurements,
                   "device_seconds": round(device_seconds, 1), "train_seconds": round(train_seconds, 1),
                   "latency_model": accuracy_of_model, "drift": drift, "trials": trials_out,
                   "draws_skipped": len(skipped), "epochs_trained": epochs_spent(trials_of(study)), "pareto": _pareto(trials_out),
                   "baseline": {k: v for k, v in grid.items() if k != "members"} if grid else None, "second_seed": spread, "storage": storage, "seed": seed})
    atomic_write_bytes(out / "search.json", (json.dumps(result, indent=2, default=str) + "\n").encode())
    from resnet_edge.search.report import write

    result["report"] = str(write(out, result))
    return result


def _finish(meter, winner: Candidate, folder: Path, data, source: str, out: Path, budget_ms, metric, key, setting,
            target, progress, searched_ms: float | None, io: str, training: dict) -> dict:
    """The winner converted with its weights and metadata (``io``: its input and output type), timed with FINAL_RUNS
    runs, its test accuracy once, and the recipe that rebuilds it (:func:`winner_recipe`; ``training``: the trials'
    epochs, batch size, seed and limit); ``searched_ms`` is its untrained measurement during the search."""
    from resnet_edge.convert import convert
    from resnet_edge.io import atomic_write_bytes
    from resnet_edge.measure.bench import bench
    from resnet_edge.measure.evaluation import evaluate_tflite
    from resnet_edge.recipe import dump

    progress(f"search: the winner {winner.key}: converting with its weights")
    model_path = model_file(winner.mode, folder)
    (manifest,) = convert(model_path=model_path, modes=[converted_as(winner.mode)], out=str(out / "winner") + os.sep, data=data,
                          io=io, check_old_runtime=False, name="winner")
    tfl = out / "winner" / manifest["file"]["path"] if not os.path.isabs(manifest["file"]["path"]) else \
        Path(manifest["file"]["path"])
    if not tfl.exists():
        tfl = next((out / "winner").glob("*.tflite"))
    progress(f"search: timing the winner again ({FINAL_RUNS} runs after warm-up)")
    # A miss is timed again beside the untrained twin the search timed, in interleaved rounds, before it stands: the
    # twin shows whether the device moved (heat, another load) since the search. While the twin is more than the
    # drift tolerance off its searched latency, wait for the device to settle, as the drift check does (SETTLE_WAIT_S
    # at most, a timing every SETTLE_STEP_S); a miss with the twin back where it was is the model's own. Seen here
    # (Zen 4, one thread): a winner timed at 0.255 ms against a 0.213 ms budget right after its search, 0.209 ms beside
    # its untrained twin a minute later; the same file in one idle process 0.206 ms, and 25 s later 0.246 ms.
    tries = []
    waited, noisy = 0.0, 0
    while True:
        files = [str(tfl)] + ([str(meter.file(winner))] if tries and searched_ms else [])
        rounds = 1 if target.kind == "adb" else len(files)  # one round over adb, as the meter times there
        with meter.lock():
            recs = bench(files, [meter.setting_for(winner)], runs=FINAL_RUNS // rounds, warmup=20,
                         rounds=rounds, keep_times=target.kind != "adb",
                         target=None if target.kind == "local" else target, measure_memory=False)["records"]
        r = next(x for x in recs if x["model"] == str(tfl))
        twin = next((x for x in recs if x["model"] != str(tfl)), None)
        cv = cv_of(r)
        tries.append({key: r[key], "cv": cv, **({f"untrained_{key}": twin[key]} if twin else {})})
        settled = twin is not None and not moved(twin[key], searched_ms)
        if r[key] <= budget_ms or settled or waited >= SETTLE_WAIT_S or not searched_ms:
            if cv is not None and cv > FINAL_MAX_CV and noisy < FINAL_NOISY_TRIES:
                noisy += 1
                progress(f"search: the winner's timing spread {100 * cv:.1f}% (CV), over {100 * FINAL_MAX_CV:g}%: "
                         "timing it again")
                continue
            break
        progress(f"search: {r[key]:.3g} ms at {metric}, over {budget_ms:g} ms" + (
            f"; its untrained twin now {twin[key]:.3g} ms against {searched_ms:.3g} ms in the search" if twin else "")
            + ": timing both again")
        time.sleep(SETTLE_STEP_S)
        waited += SETTLE_STEP_S
    times = r.get("times_ms")
    robust = None
    if times:
        med = float(np.median(times))
        robust = float(1.4826 * np.median(np.abs(np.asarray(times) - med)) / med) if med else None
    if r[key] > budget_ms:
        return {"winner": {**winner.to_dict(), "file": str(tfl), "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"],
                           "avg_ms": r.get("avg_ms"),
                           "cv": cv, "cv_robust": robust, "meets_budget": False, "searched_ms": searched_ms,
                           "timings_ms": tries}}
    test = evaluate_tflite(tfl, data, split="test")
    recipe = winner_recipe(winner, meter, source, out, budget_ms, metric, target, io, training)
    atomic_write_bytes(out / "winner.yaml", dump(recipe).encode())
    return {"winner": {**winner.to_dict(), "file": str(tfl), "bytes": tfl.stat().st_size,
                       "memory_mb": (meter.results.get(winner.key) or {}).get("memory_mb"),  # untrained: the same
                       "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "avg_ms": r.get("avg_ms"), "cv": cv,
                       "cv_robust": robust, "runs": r["runs"] * r.get("rounds", 1),
                       "meets_budget": r[key] <= budget_ms, "searched_ms": searched_ms, "timings_ms": tries,
                       "test_top1": test["top1"], "recipe": str(out / "winner.yaml"),
                       "val_acc": shipped(winner.mode, folder, data, **{k: training[k] for k in ("epochs", "batch_size",
                                                                                                 "limit")})["accuracy"],
                       "float_val_acc": _val_accuracy(folder),
                       "measured_on": meter.setting_for(winner).label(), **_app_path(winner)}}


def winner_recipe(winner: Candidate, meter, source: str, out: Path, budget_ms: float, metric: str, target, io: str,
                  training: dict) -> dict:
    """The recipe of ``resnet-edge run`` that trains what the search trained: the winner's network built thin
    (``model.keep``, ``model.stream``), from the published weights thinned to it where the search started from them,
    with the trials' epochs, batch size, seed and limit; QAT fine-tuning for a ``qat`` winner; converted in its mode,
    on its runtime; the budget as the run's latency gate."""
    from resnet_edge.search.shipped import qat_epochs
    from resnet_edge.train import TRANSFER_LR

    train = {k: training[k] for k in ("epochs", "batch_size", "seed", "limit")}
    if winner.depth in meter.weights:  # the transfer recipe the trials trained with (train_candidate)
        train.update({"lr": TRANSFER_LR, "warmup": 0, "freeze": "none", "head_epochs": 0})
    variant = {"name": "winner", "modes": [converted_as(winner.mode)], **({"io": io} if io != "float32" else {}),
               **({"runtime": winner.runtime} if winner.runtime != "litert" else {})}
    if winner.mode == "qat":
        variant["optimize"] = {"qat": {"epochs": qat_epochs(training["epochs"]), "batch_size": training["batch_size"]}}
    return {"recipe_version": 1, "name": f"search-{winner.key}",
            "description": f"the winner of resnet-edge search under {budget_ms:g} ms at {metric} on {target}",
            "model": {"depth": winner.depth, "family": meter.base(winner.depth, winner.size).family,
                      **({"input_size": winner.size} if winner.size is not None else {}),
                      **({"keep": list(winner.keep)} if min(winner.keep) < 1 else {}),
                      **({"stream": list(winner.stream)} if winner.stream is not None else {})},
            **({"weights": str(Path(meter.weights[winner.depth].path).resolve())}
               if winner.depth in meter.weights else {}),
            "search": str((out / "search.json").resolve()),
            "data": source,
            "train": train,
            "variants": [variant],
            # a gate the run checks: p50 or p90 (a mean over adb has none; the search held the budget against it)
            "gates": {"latency": {"target": str(target), f"{metric}_ms": budget_ms} if metric in ("p50", "p90") else None}}


def _app_path(winner: Candidate) -> dict:
    """What an app gets when the winner was measured on another runtime than the one app frameworks run."""
    if winner.runtime == "litert":
        return {}
    return {"app_path": "measured on OpenVINO's CPU plugin; MediaPipe and the Task Library run LiteRT, where this "
                        "model is slower (its LiteRT twin's latency is in search.json when it was timed)"}


def _trained(trials: list, by_key: dict) -> dict:
    """The float networks the trials trained whole on this machine: {Candidate.trained_as: (trial, folder)}."""
    out = {}
    for t in trials:
        c, folder = by_key.get(t.user_attrs.get("candidate")), t.user_attrs.get("folder")
        if (c is not None and folder and t.state.name == "COMPLETE" and not t.user_attrs.get("twin_of")
                and (Path(folder) / "model.keras").exists()):
            out.setdefault(c.trained_as, (t, Path(folder)))
    return out


def _baseline(meter, space, data, out, budget_ms, epochs, batch_size, seed, limit, progress, by_trial: dict) -> dict:
    """The plain grid a user tries by hand: every depth at full width in int8 on LiteRT (at the largest resolution
    searched: the family's default is larger still), timed on the same device; those under the budget trained as
    the trials are. A member whose network a trial trained (``by_trial``, :func:`_trained`) is that training, converted
    in int8, with that trial's training time as its cost."""
    grid = [Candidate(d, (1.0,) * space.stages, "int8", max(space.sizes) if space.sizes != (None,) else None)
            for d in space.depths]
    meter.measure(grid)
    rows = []
    t0 = time.monotonic()
    for c in grid:
        lat = meter.latency(c)
        row = {"candidate": c.key, "latency_ms": lat, "under_budget": lat <= budget_ms}
        if lat <= budget_ms:
            trial, folder = by_trial.get(c.trained_as, (None, out / "baseline" / c.key))
            progress(f"search: baseline {c.key}: " + (f"the network of trial {trial.number}" if trial else "training"))
            r = train_candidate(meter, c, data, folder, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit)
            row.update({"val_acc": r["val_acc"], "float_val_acc": r["float_val_acc"],
                        "train_seconds": round(trial.user_attrs.get("train_seconds") or 0 if trial else r["seconds"], 1),
                        **({"trial": trial.number} if trial else {})})
        rows.append(row)
    trained = [r for r in rows if r.get("val_acc") is not None]
    return {"rows": rows, "best": max(trained, key=lambda r: r["val_acc"]) if trained else None,
            "train_seconds": round(time.monotonic() - t0, 1), "members": {c.key: c for c in grid}}


def _pareto(trials: list[dict]) -> list[dict]:
    """The trials (within the budget) no other beats on both measured latency and validation accuracy."""
    from resnet_edge.report.page import pareto

    scored = [t for t in trials if t.get("val_acc") is not None and t.get("latency_ms") is not None
              and not t.get("over_budget")]
    return [{k: t[k] for k in ("candidate", "latency_ms", "val_acc")}
            for t in pareto(scored, latency=lambda t: t["latency_ms"], accuracy=lambda t: t["val_acc"])]


def join(out: str | Path | None, storage: str | None, *, progress: Callable[[str], None] = lambda text: None,
         wait: float = 600) -> dict:
    """Add a worker to the search started in ``out`` (its SQLite study) or in ``storage`` (a shared one): the
    search's own settings are read from the storage; wait up to ``wait`` seconds for them (its first worker may be
    timing candidates still); train trials until the search has its number; return what this worker did."""
    import optuna

    if out is None and storage is None:
        raise ConfigError("--join needs the search's folder or --storage URL")
    out = Path(out) if out else Path("runs/search")
    storage = storage or f"sqlite:///{out / 'study.db'}"
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        raise ConfigError(f"{out} holds no search to join (no study.db): start one with resnet-edge search --out {out}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.monotonic() + wait
    while True:
        try:
            study = optuna.load_study(study_name="search", storage=open_storage(storage))
        except KeyError:
            study = None
        except Exception as exc:  # noqa: BLE001 - any storage error is one line
            raise ConfigError(f"--storage {storage}: cannot open it ({type(exc).__name__}: {str(exc)[:200]})") from None
        settings = study.user_attrs.get("settings") if study is not None else None
        if settings and study.user_attrs.get("feasible"):
            break
        if time.monotonic() > deadline:
            raise ConfigError(f"no search started in {storage} within {wait:g} s: start one with resnet-edge search")
        time.sleep(1)
    progress(f"search: joining the search in {storage} ({settings['budget_ms']:g} ms at {settings['metric']})")
    s = dict(settings)
    return search(s.pop("source"), s.pop("target_text"), s.pop("budget_ms"), **s, out=out, storage=storage,
                  worker=True, progress=progress)
