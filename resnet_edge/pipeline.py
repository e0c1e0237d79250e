"""``resnet-edge run``: every stage of a recipe (:mod:`resnet_edge.recipe`), each skipped when nothing it depends
on has changed (host side: it trains and converts).

The stages are the codebase's own stage functions, the ones the commands call: ``train`` (:func:`resnet_edge.train.
train`), the float model's ``reference`` accuracy (:func:`resnet_edge.evaluate.evaluate`), per variant ``optimize``
(:mod:`resnet_edge.optimize`), ``convert`` (:func:`resnet_edge.convert.convert`) and per mode ``validate`` (the
accuracy and agreement with the float model by :func:`resnet_edge.measure.evaluation.evaluate_tflite`, the latency
on every target by :func:`resnet_edge.measure.bench.bench`).

A stage's key is the sha256 of its inputs' sha256, its settings and the code it runs (the source of its module and
of every module that one imports: :func:`resnet_edge._imports.code_digest`). Each stage writes its files
atomically, then ``stage.json`` (the key, what went in, the sha256 of every output, its result): a stage whose
record matches its key and whose outputs are intact is skipped; otherwise it runs, and the line says why (never
run, settings, an input or the code changed, an output deleted or damaged). So a changed setting reruns exactly
the stages downstream of it, and a run killed at any moment continues when run again: training resumes from its
checkpoint, a stage cut off before its record runs again. One run at a time holds the run folder's lock.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.io import atomic_write_bytes, exclusive, sha256_file
from resnet_edge.recipe import learns_ranges, model_file


@dataclass
class Stage:
    """One step of a run: its name, its folder, the sha256 of what goes in, its settings, the modules whose
    code it runs, the files it must leave, and the function that makes them (``work(stage) -> result``)."""

    name: str
    folder: Path
    inputs: dict[str, str]
    settings: dict
    code: tuple[str, ...]
    outputs: tuple[str, ...]
    work: Callable[["Stage"], dict]
    after: tuple[str, ...] = ()
    #: The function of this module that does the work: its own source is part of the key too.
    fn: Callable | None = None
    #: Called before the stage is keyed, when the stages before it have run: for a stage whose settings come
    #: from their results (the per-stage latency of the variant the run chose).
    prepare: Callable[["Stage"], None] | None = None
    result: dict | None = None
    why: str = ""
    ran: bool = False

    def key(self) -> str:
        from resnet_edge._imports import code_digest

        own = hashlib.sha256(inspect.getsource(self.fn).encode()).hexdigest() if self.fn else ""
        return _digest({"stage": self.name, "inputs": self.inputs, "settings": self.settings,
                        "code": code_digest(*self.code) + own})

    @property
    def record_path(self) -> Path:
        return self.folder / "stage.json"

    def record(self) -> dict | None:
        try:
            with open(self.record_path, "rb") as f:
                raw = f.read(16 << 20)
            record = json.loads(raw)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def stale(self) -> str:
        """Why this stage must run ("" when what is on disk is its result)."""
        record = self.record()
        if record is None:
            if self.record_path.exists():
                return "its record is unreadable"
            return "its last attempt stopped before the end" if (self.folder / "attempt.json").exists() else "never run"
        if record.get("key") != self.key():
            if record.get("settings") != _plain(self.settings):
                old, new = record.get("settings") or {}, self.settings
                changed = sorted(k for k in set(old) | set(new) if json.dumps(old.get(k), default=str, sort_keys=True)
                                 != json.dumps(new.get(k), default=str, sort_keys=True))
                return f"settings changed ({', '.join(changed) or 'their form'})"
            if record.get("inputs") != self.inputs:
                changed = sorted(k for k in set(record.get("inputs") or {}) | set(self.inputs)
                                 if (record.get("inputs") or {}).get(k) != self.inputs.get(k))
                return f"its input changed ({', '.join(changed)})"
            return "its code changed"
        recorded = record.get("outputs") or {}
        for name in list(self.outputs) + sorted(set(recorded) - set(self.outputs)):  # and what the stage left
            path = self.folder / name
            if not path.exists():
                return f"{name} was deleted"
            if sha256_file(path) != (record.get("outputs") or {}).get(name):
                return f"{name} was changed or damaged"
        return ""

    def output(self, name: str) -> Path:
        return self.folder / name


@dataclass
class Run:
    """A recipe's stages in order, the folder they live in, and what they share: the data (read once), its
    digest, and the weights a pretrained start loads."""

    recipe: dict
    folder: Path
    stages: list[Stage] = field(default_factory=list)
    data: object = None
    data_digest: str = ""
    weights: object = None
    #: The float Keras model's scores for a set of inputs, computed once per run (every validate stage compares
    #: its .tflite with it on the same images).
    float_scores: dict = field(default_factory=dict)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _plain(obj):
    """``obj`` as its JSON record holds it (tuples as lists, anything else as text), to compare with a record."""
    return json.loads(json.dumps(obj, default=str))


def data_digest(data) -> str:
    """What identifies a data set's content: the arrays of an in-memory source; an image folder's files by path,
    size and modification time (reading every image would cost more than the stage it guards)."""
    h = hashlib.sha256(json.dumps({"name": data.name, "classes": data.classes}).encode())
    for split in ("train", "val", "test"):
        part = data.split(split)
        h.update(split.encode())
        h.update(part.y.tobytes() if hasattr(part.y, "tobytes") else json.dumps(list(map(int, part.y))).encode())
        if part.x is not None:
            h.update(part.x.tobytes())
        for f in part.files or []:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def plan(recipe: dict, folder: str | Path, *, say: Callable[[str], None] = lambda text: None) -> Run:
    """The stages of ``recipe`` in ``folder`` (nothing runs yet; the data is read to key the first stage)."""
    from resnet_edge.data import load

    folder = Path(folder)
    run = Run(recipe, folder)
    for v in recipe["variants"]:
        if v.get("input_size") is not None:
            raise ConfigError(f"variants: {v['name']}: input_size (a resolution of its own) is in the schema for the "
                              "search to come and not built yet: leave it out (the model's own size is used)")
    data = load(recipe["data"])
    run.data = data
    run.data_digest = data_digest(data)
    weights_sha = None
    if recipe.get("weights"):
        from resnet_edge.arch.weights import choose

        m = recipe.get("model") or {}
        run.weights = choose(recipe["weights"], m.get("depth"))
        weights_sha = sha256_file(run.weights.file.path)
    else:
        run.weights = None
    train = Stage("train", folder / "train", {"data": run.data_digest, **({"weights": weights_sha} if weights_sha else {})},
                  {"model": recipe.get("model"), "train": recipe["train"], "data": recipe["data"]},
                  ("resnet_edge.train",), ("model.keras",), lambda st: _train(run, st, say), fn=_train)
    run.stages.append(train)
    reference = Stage("reference", folder / "reference", {"model": "train/model.keras", "data": run.data_digest},
                      {"split": recipe["validate"]["split"], "limit": recipe["validate"]["limit"]},
                      ("resnet_edge.evaluate",), (), lambda st: _reference(run, st), after=("train",),
                      fn=_reference)
    run.stages.append(reference)
    for v in recipe["variants"]:
        base, made_by = model_file(v), "train"
        if v.get("optimize"):
            (method, settings), = v["optimize"].items()
            opt = Stage(f"optimize:{v['name']}", folder / "variants" / v["name"] / "optimize",
                        {"model": "train/model.keras", "data": run.data_digest},
                        {method: settings, "limit": recipe["train"]["limit"]}, (_OPT_MODULES[method],),
                        (Path(base).name,), lambda st, m=method, s=settings: _optimize(run, st, m, s, say),
                        after=("train",), fn=_optimize)
            run.stages.append(opt)
            made_by = opt.name
        files = tuple(f"{v['name']}_{mode}.tflite" for mode in v["modes"])
        conv = Stage(f"convert:{v['name']}", folder / "variants" / v["name"] / "convert",
                     {"model": base, "data": run.data_digest},
                     {"modes": v["modes"], "io": v["io"], "calibration": v["calibration"]},
                     ("resnet_edge.convert",), files, lambda st, v=v, base=base: _convert(run, st, v, base, say),
                     after=(made_by,), fn=_convert)
        run.stages.append(conv)
        for mode, file in zip(v["modes"], files):
            val = Stage(f"validate:{v['name']}:{mode}", folder / "variants" / v["name"] / f"validate_{mode}",
                        {"model": f"variants/{v['name']}/convert/{file}", "float": "train/model.keras",
                         "data": run.data_digest},
                        {**{k: recipe["validate"][k] for k in ("split", "limit", "runs", "warmup", "targets")},
                         "runtime": v["runtime"]},
                        ("resnet_edge.measure.evaluation", "resnet_edge.measure.bench", "resnet_edge.evaluate"),
                        (), lambda st, v=v, mode=mode, file=file: _validate(run, st, v, mode, file, say),
                        after=(conv.name, "train"), fn=_validate)
            run.stages.append(val)
        if recipe["validate"]["layer_errors"] and "int8" in v["modes"] and not learns_ranges(v):
            run.stages.append(Stage(f"layers:{v['name']}", folder / "variants" / v["name"] / "layers",
                                    {"model": base, "data": run.data_digest},
                                    {"calibration": v["calibration"], "images": recipe["validate"]["layer_error_images"]},
                                    ("resnet_edge.diagnose",), ("layer_errors.csv",),
                                    lambda st, base=base: _layers(run, st, base, say), after=(made_by,), fn=_layers))
    if recipe["validate"]["stage_latency"]:
        run.stages.append(Stage("stage_latency", folder / "stage_latency", {}, {}, ("resnet_edge.diagnose",
                                "resnet_edge.measure.bench"), (), lambda st: _stage_latency(run, st, say),
                                after=tuple(s.name for s in run.stages if s.name.startswith("validate:")),
                                fn=_stage_latency, prepare=lambda st: _prepare_stage_latency(run, st)))
    return run


_OPT_MODULES = {"qat": "resnet_edge.optimize.qat", "prune": "resnet_edge.optimize.prune",
                "channels": "resnet_edge.optimize.channels"}


def _resolve_inputs(run: Run, stage: Stage) -> None:
    """Input files named by their place in the run -> their sha256 now (after the stages before have run)."""
    for k, v in list(stage.inputs.items()):
        if isinstance(v, str) and v.endswith((".keras", ".h5", ".tflite")):
            path = run.folder / v
            stage.inputs[k] = sha256_file(path) if path.exists() else f"missing:{v}"


def measures(stage: Stage) -> bool:
    """Whether a stage times models (it then runs alone: another stage beside it would be in its figures)."""
    return stage.name.startswith("validate:") or stage.name == "stage_latency"


def execute(run: Run, *, dry_run: bool = False, progress: Callable[[str], None] = lambda text: None,
            jobs: int = 1) -> list[Stage]:
    """Run (or with ``dry_run`` only say) every stage that is stale, in order; return the stages with
    ``ran``, ``why`` and ``result`` set. The run folder's lock is held throughout.

    With ``jobs`` > 1, the stages that do not time anything (training, optimizing, converting, the per-layer
    error) run up to ``jobs`` at once, each in a process of its own as soon as the stages it needs are done
    (the variants are independent); the stages that time models run in this process, one at a time, when
    nothing else runs."""
    run.folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with exclusive(run.folder, wait=0):
        if jobs > 1 and not dry_run:
            return _execute_parallel(run, jobs, progress, started)
        would: set[str] = set()  # the stages a dry run says would run
        for i, stage in enumerate(run.stages, 1):
            why = _check(run, stage)
            before = [a for a in stage.after if a in would]
            if dry_run and before and (not why or why.startswith("its input changed") or stage.prepare):
                why = f"{before[0]} runs first, so its input may change"  # (or its settings, for a prepared one)
            stage.why = why
            head = f"[{i}/{len(run.stages)}] {stage.name}"
            if not why:
                stage.result = stage.record().get("result")
                progress(f"{head}: up to date, skipped")
                continue
            if dry_run:
                progress(f"{head}: would run ({why})")
                would.add(stage.name)
                continue
            progress(f"{head}: running ({why}); {time.monotonic() - started:.0f} s so far")
            record = _run_stage(stage)
            progress(f"{head}: done in {record['seconds']:.1f} s")
    return run.stages


def _check(run: Run, stage: Stage) -> str:
    """Key ``stage`` now that the stages before it have run; why it must run ("" when it is up to date)."""
    if stage.prepare:
        stage.prepare(stage)
    _resolve_inputs(run, stage)
    return stage.stale()


def _run_stage(stage: Stage) -> dict:
    """Do a stale stage's work and write its record (last: a stage cut off before it runs again)."""
    t0, wall = time.monotonic(), time.time()
    _fresh(stage)
    stage.result = stage.work(stage) or {}
    stage.ran = True
    record = {"stage": stage.name, "key": stage.key(), "inputs": stage.inputs, "settings": _plain(stage.settings),
              "outputs": {n: sha256_file(stage.output(n)) for n in stage.outputs},
              "seconds": round(time.monotonic() - t0, 2), "started": round(wall, 3), "finished": round(time.time(), 3),
              "pid": os.getpid(), "result": stage.result}
    atomic_write_bytes(stage.record_path, (json.dumps(record, indent=2, default=str) + "\n").encode())
    return record


def _execute_parallel(run: Run, jobs: int, progress, started: float) -> list[Stage]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    index = {s.name: i for i, s in enumerate(run.stages, 1)}
    head = {s.name: f"[{index[s.name]}/{len(run.stages)}] {s.name}" for s in run.stages}
    done: set[str] = set()
    pending = list(run.stages)
    running: dict = {}

    def ready(stage: Stage) -> bool:
        return all(a in done for a in stage.after)

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_child_init, initargs=(jobs,)) as pool:
        try:
            while pending or running:
                moved = False
                for stage in [s for s in pending if ready(s)]:
                    if (measures(stage) and running) or (not measures(stage) and len(running) >= jobs):
                        continue
                    pending.remove(stage)
                    stage.why = _check(run, stage)
                    if not stage.why:
                        stage.result = stage.record().get("result")
                        progress(f"{head[stage.name]}: up to date, skipped")
                        done.add(stage.name)
                        moved = True
                        continue
                    alone = not running and not any(ready(s) for s in pending)
                    where = "" if measures(stage) or alone else f"; in a worker, {len(running) + 1} running"
                    progress(f"{head[stage.name]}: running ({stage.why}); {time.monotonic() - started:.0f} s so far{where}")
                    if measures(stage) or alone:  # here: alone on the machine, or nothing to run beside it
                        record = _run_stage(stage)
                        progress(f"{head[stage.name]}: done in {record['seconds']:.1f} s")
                        done.add(stage.name)
                        moved = True
                        break  # the stages it unblocks are looked at again
                    running[pool.submit(_child_stage, run.recipe, str(run.folder), stage.name)] = stage
                if moved:
                    continue
                if not running:
                    if pending:
                        raise ResnetEdgeError(f"the run's stages wait on each other: {pending[0].name}")
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    stage = running.pop(future)
                    record = future.result()  # a stage's error ends the run, as it does without --jobs
                    stage.result, stage.ran = record["result"], True
                    done.add(stage.name)
                    progress(f"{head[stage.name]}: done in {record['seconds']:.1f} s")
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return run.stages


def _child_init(jobs: int) -> None:
    """A worker process: it dies with the run (a run killed with -9 leaves no worker writing into its folder),
    and takes its share of the cores."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # pragma: no cover - other systems
        pass
    if os.getppid() == 1:  # the run died before the worker could ask
        os._exit(1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    from resnet_edge._tf import tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _child_stage(recipe: dict, folder: str, name: str) -> dict:
    """One stage in a worker process: the run planned again from its recipe, that stage keyed and run; its
    record back (its lines go to this process's stderr, prefixed with the stage's name)."""
    import sys

    def say(text: str) -> None:
        print(f"{name}: {text}" if not text.startswith(name) else text, file=sys.stderr, flush=True)

    run = plan(recipe, folder, say=say)
    stage = next(s for s in run.stages if s.name == name)
    _check(run, stage)
    return _run_stage(stage)


# --- the stages ---------------------------------------------------------------------------------------------


def _fresh(stage: Stage) -> None:
    """A stage that runs for another key than its last attempt's starts from an empty folder; one that continues
    an attempt with the same key (killed before its record) keeps what it left: training resumes from its
    checkpoint. ``attempt.json`` says which key the folder's files are for."""
    attempt = stage.folder / "attempt.json"
    key = stage.key()
    try:
        same = json.loads(attempt.read_text()).get("key") == key
    except (OSError, ValueError):
        same = False
    if not same and stage.folder.exists():
        for child in stage.folder.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    stage.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(attempt, json.dumps({"key": key}).encode())


def _train(run: Run, stage: Stage, say) -> dict:
    from resnet_edge.train import saved_run, spec_for_data, train, transfer_defaults, transfer_recipe

    r, m = run.recipe["train"], run.recipe.get("model") or {}
    args = {k: r[k] for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "seed")}
    args["lr_boundaries"] = tuple(r["lr_boundaries"]) if r["lr_boundaries"] else None
    args["warmup"] = {"auto": "auto", "off": 0}.get(r["warmup"], r["warmup"])
    weights = run.weights.file if run.weights else None
    spec = spec_for_data(run.data, model=m.get("name"), depth=m.get("depth") or (run.weights.depth if run.weights else None),
                         family=m.get("family"), plain=m.get("plain") or None, shortcut=m.get("shortcut"),
                         input_size=m.get("input_size"), weights=weights)
    if m.get("keep") is not None or m.get("stream") is not None:  # built thin (a search's winner), trained so
        from resnet_edge.arch.spec import thinned

        spec = thinned(spec, m.get("keep", 1.0), m.get("stream"))
    transfer = {k: r[k] for k in ("freeze", "head_epochs", "fine_tune_lr")}
    if weights is not None:
        images = min(len(run.data.train), r["limit"] or len(run.data.train))
        given = set(run.recipe["_source"].get("train_given", ()))  # what the recipe (or --set) says itself
        recipe = transfer_recipe(transfer_defaults(args, given, images), transfer, True, images, run.data.num_classes)
    else:
        recipe = transfer_recipe(args, transfer, False)
    resume = saved_run(stage.folder) is not None
    if resume:
        say(f"train: resuming from the checkpoint in {stage.folder}")
    manifest = train(spec, run.data, stage.folder, recipe, weights=weights, resume=resume, limit=r["limit"],
                     verbose=0, checkpoint_every=r["checkpoint_every"], progress=say)
    return {"name": manifest.get("name"), "final": manifest.get("final"), "best": manifest.get("best"),
            "epochs": manifest.get("epochs_done")}


def _reference(run: Run, stage: Stage) -> dict:
    from resnet_edge.evaluate import evaluate

    v = run.recipe["validate"]
    report = evaluate(run.folder / "train" / "model.keras", run.data, v["split"], limit=v["limit"])
    return {k: report[k] for k in ("n", "top1", "top5", "top_k", "per_class", "confusions", "confusion_matrix")}


def _optimize(run: Run, stage: Stage, method: str, s: dict, say) -> dict:
    source = run.folder / "train" / "model.keras"
    out = stage.output(stage.outputs[0])
    common = {"epochs": s["epochs"], "batch_size": s["batch_size"], "limit": run.recipe["train"]["limit"], "verbose": 0}
    if s.get("lr") is not None:
        common["lr"] = s["lr"]
    say(f"{stage.name}: {method}")
    if method == "qat":
        from resnet_edge.optimize.qat import qat

        manifest = qat(source, run.data, out, scheme=s["scheme"], **common)
    elif method == "prune":
        from resnet_edge.optimize.prune import prune

        manifest = prune(source, run.data, out, sparsity=s["sparsity"], structure=s["structure"],
                         skip=tuple(x for x in s["skip"].split(",") if x), pqat=s["pqat"], clusters=s["clusters"],
                         **common)
    else:
        from resnet_edge.optimize.channels import channel_prune

        keep, stream = (tuple(s[k]) if isinstance(s[k], list) else s[k] for k in ("keep", "stream"))  # one ratio,
        # or one per stage
        manifest = channel_prune(source, run.data, out, keep=keep, stream=stream, criterion=s["criterion"], **common)
    return {"accuracy": manifest.get("accuracy")}


def _convert(run: Run, stage: Stage, v: dict, base: str, say) -> dict:
    from resnet_edge.convert import convert

    manifests = convert(model_path=run.folder / base, modes=v["modes"], out=str(stage.folder) + os.sep, data=run.data,
                        calibration=v["calibration"], io=v["io"], check_old_runtime=False, name=v["name"],
                        progress=lambda text: say(f"{stage.name}: {text}"))
    return {m["mode"]: {"bytes": m["file"]["bytes"], "parity": m["parity"], "status": m["status"]} for m in manifests}


def _validate(run: Run, stage: Stage, v: dict, mode: str, file: str, say) -> dict:
    from resnet_edge.measure.bench import bench
    from resnet_edge.measure.evaluation import evaluate_tflite
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.targets import resolve

    val = run.recipe["validate"]
    path = run.folder / "variants" / v["name"] / "convert" / file
    runtime = v["runtime"]
    say(f"{stage.name}: accuracy on {run.data.name}")
    report = evaluate_tflite(path, run.data, split=val["split"], limit=val["limit"],
                             setting=Setting(runtime=runtime, threads=1),
                             reference=lambda x: _float_reference(run, x))
    out = {"bytes": path.stat().st_size, "top1": report["top1"], "n": report["n"],
           "agreement": report["compare"]["top1_agreement"], "float_top1": report["compare"]["keras_top1"],
           "per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"], "latency": []}
    for t in val["targets"]:
        target = resolve(t["target"])
        settings = [Setting(runtime=runtime, threads=n, accelerator=t["accelerator"]) for n in (t["threads"] or [None])]
        say(f"{stage.name}: latency on {target}")
        try:
            result = bench([path], settings, runs=val["runs"], warmup=val["warmup"], target=target)
        except ResnetEdgeError as exc:
            out["latency"].append({"target": str(target), "error": str(exc)})
            continue
        for r in result["records"]:
            out["latency"].append({"target": str(target), "setting": r["setting"], "machine": result.get("machine"),
                                   **{k: r.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "avg_ms", "std_ms", "min_ms",
                                                            "init_ms", "first_inference_ms", "runtime",
                                                            "runtime_version", "threads", "peak_rss_overall_mb")}})
    return out


def _layers(run: Run, stage: Stage, base: str, say) -> dict:
    import csv
    import io as _io

    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.diagnose import layer_errors

    say(f"{stage.name}: the int8 error of each layer")
    split = "val" if len(run.data.split("val")) else "train"
    errors = layer_errors(load_model(run.folder / base), run.data, calibration=stage.settings["calibration"],
                          samples=stage.settings["images"], split=split)
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(errors[0]) if errors else ["layer"])
    writer.writeheader()
    writer.writerows(errors)
    atomic_write_bytes(stage.output("layer_errors.csv"), buf.getvalue().encode())
    return {"split": split, "images": stage.settings["images"], "layers": errors}


def chosen(run: Run) -> tuple[str, str] | None:
    """The variant and mode the run ships: the most accurate that meets every gate (the fastest of equals),
    else the most accurate; None before anything was validated."""
    from resnet_edge.report.page import rank

    table = rows(run)
    passing = {(x["variant"], x["mode"]) for x in table if not x["failed"]}
    best = min([x for x in table if (x["variant"], x["mode"]) in passing] or table, key=rank, default=None)
    return (best["variant"], best["mode"]) if best else None


def _variant(run: Run, name: str) -> dict:
    return next(v for v in run.recipe["variants"] if v["name"] == name)


def _prepare_stage_latency(run: Run, stage: Stage) -> None:
    """Key the per-stage latency on what it measures: the chosen variant and the float model's float32."""
    pick = chosen(run)
    val = run.recipe["validate"]
    stage.settings = {"chosen": list(pick) if pick else None, "targets": val["targets"], "runs": val["runs"],
                      "warmup": val["warmup"],
                      "runtime": _variant(run, pick[0])["runtime"] if pick else "litert"}
    stage.inputs = {"model": model_file(_variant(run, pick[0])), "float": "train/model.keras"} if pick else {}
    stage.outputs = ()


def _stage_latency(run: Run, stage: Stage, say) -> dict:
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.diagnose import per_stage, stage_models
    from resnet_edge.measure.bench import bench
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.targets import resolve

    pick = stage.settings["chosen"]
    if not pick:
        return {"skipped": "no variant was validated"}
    variant, mode = pick
    v = _variant(run, variant)
    models = [(f"{variant} {mode}", model_file(v), mode, v["calibration"])]
    if (variant, mode) != ("float", "float32"):
        models.append(("float float32", "train/model.keras", "float32", v["calibration"]))
    files: dict[str, list[tuple[str, Path]]] = {}
    for label, base, m, calibration in models:
        say(f"{stage.name}: {label} cut after each stage, converting")
        keras_model = load_model(run.folder / base)
        for part, tfl in stage_models(keras_model, m, run.data, calibration=calibration):
            path = stage.output(f"{label.replace(' ', '_')}_{part}.tflite")
            atomic_write_bytes(path, tfl)
            files.setdefault(label, []).append((part, path))
    stage.outputs = tuple(p.name for parts in files.values() for _, p in parts)
    paths = [str(p) for parts in files.values() for _, p in parts]
    out = {"models": list(files), "targets": []}
    for t in stage.settings["targets"]:
        target = resolve(t["target"])
        settings = [Setting(runtime=stage.settings["runtime"], threads=n, accelerator=t["accelerator"])
                    for n in (t["threads"] or [None])]
        say(f"{stage.name}: timing {len(paths)} prefixes on {target}")
        try:
            result = bench(paths, settings, runs=stage.settings["runs"], warmup=stage.settings["warmup"],
                           target=target, measure_memory=False)
        except ResnetEdgeError as exc:
            out["targets"].append({"target": str(target), "error": str(exc)})
            continue
        for setting in {r["setting"] for r in result["records"]}:
            p50 = {r["model"]: r["p50_ms"] for r in result["records"] if r["setting"] == setting}
            parts = {label: per_stage({part: p50.get(str(path)) or 0.0 for part, path in files[label]})
                     for label in files}
            out["targets"].append({"target": str(target), "setting": setting, "ms": parts,
                                   "total_ms": {label: p50.get(str(files[label][-1][1])) for label in files}})
    return out


# --- the table and the gates --------------------------------------------------------------------------------


def _float_reference(run: Run, x) -> tuple:
    """The float model's scores for ``x`` and its name, computed the first time these inputs are seen."""
    from resnet_edge.evaluate import keras_reference

    key = hashlib.sha256(x.tobytes() + str(x.shape).encode()).hexdigest()
    if key not in run.float_scores:
        run.float_scores[key] = keras_reference(run.folder / "train" / "model.keras")(x)
    return run.float_scores[key]


def rows(run: Run) -> list[dict]:
    """One row per variant x mode x target setting: size, top-1, drop against the float model, agreement with it,
    p50/p90, speed-up over the float variant's float32 on the same target and setting, and the gates' verdict."""
    reference = next(s for s in run.stages if s.name == "reference").result or {}
    float_top1 = reference.get("top1")
    gates = run.recipe["gates"]
    out = []
    for stage in run.stages:
        if not stage.name.startswith("validate:") or not stage.result:
            continue
        _, variant, mode = stage.name.split(":")
        r = stage.result
        latency = r.get("latency") or [{}]
        for lat in latency:
            row = {"variant": variant, "mode": mode, "bytes": r["bytes"], "top1": r["top1"],
                   "drop_points": None if float_top1 is None else 100 * (float_top1 - r["top1"]),
                   "agreement": r["agreement"], "target": lat.get("target"), "setting": lat.get("setting"),
                   "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "error": lat.get("error")}
            out.append(row)
    for row in out:
        base = next((x for x in out if x["mode"] == "float32" and x["target"] == row["target"]
                     and x["setting"] == row["setting"] and x["p50_ms"]), None)
        row["speedup"] = base["p50_ms"] / row["p50_ms"] if base and row["p50_ms"] else None
        row["failed"] = _gate(row, out, gates)
    return out


def _gate(row: dict, rows_: list[dict], gates: dict) -> list[str]:
    """The gates ``row``'s variant and mode miss, each with by how much ([] = it passes every gate)."""
    same = [x for x in rows_ if x["variant"] == row["variant"] and x["mode"] == row["mode"]]
    failed = []
    if gates.get("max_drop") is not None and row["drop_points"] is not None and row["drop_points"] > gates["max_drop"]:
        failed.append(f"accuracy drop {row['drop_points']:.2f} points > {gates['max_drop']:g}")
    if gates.get("min_top1") is not None and 100 * row["top1"] < gates["min_top1"]:
        failed.append(f"top-1 {100 * row['top1']:.2f}% < {gates['min_top1']:g}%")
    if gates.get("max_bytes") is not None and row["bytes"] > gates["max_bytes"]:
        failed.append(f"size {row['bytes']:,} B > {gates['max_bytes']:,} B")
    lat = gates.get("latency")
    if lat:
        on = [x for x in same if x["target"] == lat["target"] and x["p50_ms"] is not None]
        if not on:
            failed.append(f"no latency measured on {lat['target']}")
        else:
            best = min(on, key=lambda x: x["p50_ms"])  # the variant meets the budget if one setting does
            for key in ("p50_ms", "p90_ms"):
                if lat.get(key) is not None and best[key] is not None and best[key] > lat[key]:
                    failed.append(f"{key[:3]} {best[key]:.3g} ms on {lat['target']} > {lat[key]:g} ms")
    return failed


def finish(run: Run, stages: list[Stage]) -> dict:
    """Write ``results.json`` (the table, the gates' verdict, the resolved recipe) and the report beside it,
    each whole or not at all; return the results. The variant chosen for the report's per-class view is the
    most accurate one that meets every gate (the fastest of equals), else the most accurate."""
    import datetime as _dt

    from resnet_edge import __version__
    from resnet_edge.recipe import dump

    from resnet_edge.report.page import write

    table = rows(run)
    passing = sorted({(x["variant"], x["mode"]) for x in table if not x["failed"]})
    best = chosen(run)
    reference = next(s for s in run.stages if s.name == "reference").result or {}
    results = {"recipe": {k: v for k, v in run.recipe.items() if not k.startswith("_")},
               "source": run.recipe.get("_source"), "recipe_yaml": dump(run.recipe), "folder": str(run.folder),
               "rows": table, "passing": [list(p) for p in passing],
               "chosen": list(best) if best else None, "float_top1": reference.get("top1"),
               "ran": [s.name for s in stages if s.ran], "version": __version__,
               "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_bytes(run.folder / "results.json", (json.dumps(results, indent=2, default=str) + "\n").encode())
    html, md = write(run.folder)
    results["report"] = {"html": str(html), "markdown": str(md)}
    return results

