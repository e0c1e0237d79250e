"""Latency and scores of ``.tflite`` models on a target: this machine, a board over SSH or a phone over adb
(edge side: numpy + a TFLite runtime, no TensorFlow).

Every model is read and checked once first (:func:`~resnet_edge.runtime.runner.check_model`: its resnet-edge
checksum verified, its flatbuffer checked, a damaged model refused in one line), and that checked model is
handed down. The device harness (:mod:`resnet_edge.harness`) then runs it through the target's runner
(:func:`~resnet_edge.targets.open_target`): here in a child with the memory and time limits of
:mod:`resnet_edge._child`, on a device over SSH, so a hostile model cannot take this process down. What a child
or a device gives back is checked (:mod:`resnet_edge.runtime.replies`) before it is used. On ``adb://``,
LiteRT's ``benchmark_model`` measures instead (:class:`~resnet_edge.targets.adb.AdbTarget`).
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Callable

import numpy as np

from resnet_edge import _child
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.runtime.replies import (OURS, BadReply, HarnessFailed, bad_field, clean, clean_machine, device_records,
                                         device_setting, reply_limit)
from resnet_edge.runtime.runner import check_model, takes_raw_pixels
from resnet_edge.runtime.setting import Setting
from resnet_edge.targets import LOCAL, open_target
from resnet_edge.ui import safe_text


def bench(paths: list[str | os.PathLike], settings: list[Setting], *, runs: int = 50, warmup: int = 5,
          rounds: int = 1, samples: dict[str, np.ndarray] | None = None, baseline: str | os.PathLike | None = None,
          measure_memory: bool = True, keep_times: bool = False, verify: bool = True,
          progress: Callable[[str], None] | None = None, target=None, timeout: float | None = None,
          benchmark_binary: str | None = None) -> dict:
    """Time every model with every setting (models and settings in turn, ``rounds`` times): one record
    per model x setting with benchmark_model's figures (see :mod:`resnet_edge.harness`), the
    model's integrity, and with ``baseline`` (one of ``paths``) the ratio of each median to the
    baseline's with the same setting. ``samples``: per model path, real inputs in the model's form.

    ``target`` (a :class:`~resnet_edge.targets.TargetURL`, None for this machine): where to measure. Here all
    models go in one run per Python, so rounds interleave them; on a device each model has its own run, and
    when the device fails after some models were measured, their records are returned with ``incomplete`` set
    to the reason. On an ``adb://`` target, LiteRT's benchmark_model measures (``benchmark_binary``: its
    local path, pushed to the device; else the device's own)."""
    if runs < 1 or warmup < 0 or rounds < 1:
        raise ConfigError("--runs and --rounds must be >= 1, --warmup >= 0")
    if not paths:
        raise ConfigError("give at least one model")
    target = target or LOCAL
    if target.kind != "adb":  # benchmark_model's settings are checked by targets.adb
        settings = [s.check(local=target.local) for s in settings]
    paths = [str(p) for p in paths]
    if baseline is not None and str(baseline) not in paths:
        paths = [str(baseline)] + paths
    if len(set(paths)) != len(paths):
        raise ConfigError("a model is named twice; name each once")
    checked = {p: check_model(p, verify) for p in paths}
    runner = open_target(target, benchmark_binary=benchmark_binary)
    if target.kind == "adb":
        if samples or rounds > 1 or keep_times:
            raise ConfigError(f"{target}: benchmark_model makes its own inputs and runs one round: leave out --data "
                              "and --rounds on adb:// targets")
        result = runner.bench(paths, checked, settings, runs=runs, warmup=warmup, measure_memory=measure_memory,
                              progress=progress, timeout=timeout)
        return _with_baseline(result, paths, baseline)
    records, machine, incomplete = [], None, None
    batches = [[p] for p in paths] if runner.one_model_per_run else [paths]
    groups = runner.groups(settings)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for b, batch in enumerate(batches):
            names = {p: f"m{paths.index(p)}.tflite" for p in batch}
            send, inputs = {names[p]: p for p in batch}, {}
            for p in batch:
                if samples and samples.get(p) is not None:
                    x = f"x{paths.index(p)}.npy"
                    send[x] = os.path.join(tmp, x)
                    np.save(send[x], np.ascontiguousarray(samples[p], np.float32), allow_pickle=False)
                    inputs[names[p]] = x
            if progress and len(batches) > 1:
                progress(f"{target}: model {b + 1}/{len(batches)} {os.path.basename(batch[0])}")
            memory = _child.memory_limit(sum(checked[p]["bytes"] for p in batch))
            for group in groups:
                job = {"op": "bench", "models": list(names.values()), "settings": [settings[i].as_job() for i in group],
                       "runs": runs, "warmup": warmup, "rounds": rounds, "memory": measure_memory,
                       "keep_times": keep_times, "raw_pixels": {names[p]: takes_raw_pixels(checked[p]["info"]) for p in batch}}
                if inputs:
                    job["inputs"] = inputs
                try:
                    result, _ = runner.run(job, send, memory=memory, timeout=timeout, progress=progress,
                                           reply_bytes=reply_limit(len(group) * len(batch), runs, rounds, keep_times))
                    mine = {p: device_records(_records_of(result, names[p], len(batch)), len(group), runs, rounds,
                                              warmup, str(target)) for p in batch}
                except ResnetEdgeError as exc:
                    if not records:
                        raise
                    incomplete = f"{exc} (after {len(records)} of {len(paths) * len(settings)} records)"
                    break
                heat = (machine or {}).get("temperature_c")  # before the first run, after the last
                machine = clean_machine(result.get("machine"))
                if heat and machine.get("temperature_c"):
                    machine["temperature_c"]["before"] = heat.get("before", {})
                for p in batch:  # what we asked and know comes last: the device cannot override it
                    for j, r in enumerate(mine[p]):
                        records.append({**{k: v for k, v in r.items() if k not in OURS}, "model": p,
                                        "setting": settings[group[j]].label(), "setting_index": group[j],
                                        "integrity": checked[p]["integrity"]["status"], "model_bytes": checked[p]["bytes"]})
            if incomplete:
                break
    records.sort(key=lambda r: (paths.index(r["model"]), r["setting_index"]))
    return _with_baseline({"machine": machine, "target": target.name, "target_url": target.url,
                           "incomplete": incomplete, "records": records}, paths, baseline)


def _records_of(result: dict, name: str, models: int) -> dict:
    """The part of a run's reply that is about model ``name`` (a run of one model: all of it)."""
    got = result.get("records")
    if models == 1 or not isinstance(got, list):
        return result
    return {"records": [r for r in got if isinstance(r, dict) and r.get("model") == name]}


def _with_baseline(result: dict, paths: list[str], baseline) -> dict:
    records = result["records"]
    if baseline is not None:
        base = {r["setting_index"]: r for r in records if r["model"] == str(baseline)}
        for r in records:
            ref = base.get(r["setting_index"])
            r["vs_baseline"] = (r["p50_ms"] / ref["p50_ms"]) if ref and ref["p50_ms"] and r["p50_ms"] else None
    return {"machine": result["machine"], "target": result["target"], "target_url": result["target_url"],
            "baseline": None if baseline is None else str(baseline), "incomplete": result["incomplete"],
            "records": records}


def predict(checked: dict, settings: list[Setting], x: np.ndarray, *, progress: Callable[[str], None] | None = None,
            target=None, timeout: float | None = None) -> list[tuple[np.ndarray, dict]]:
    """Scores (float32, dequantized) of ``x`` (float, in the model's form) with each setting, and each
    setting's description and per-image latency figures. ``checked``: :func:`check_model`'s result for the
    model (checked once, handed down); ``target``: where it runs (this machine by default, or an ssh:// device)."""
    target = target or LOCAL
    if target.kind == "adb":
        raise ConfigError(f"{target}: eval runs on an ssh:// target (Python on the device); on Android, bench measures "
                          "latency with benchmark_model, which gives no predictions")
    local = target.local
    settings = [s.check(local=local) for s in settings]
    what = "the runtime" if local else str(target)
    runner = open_target(target)
    memory = _child.memory_limit(checked["bytes"]) + int(x.nbytes) * 3
    out = []
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        xin = os.path.join(tmp, "x.npy")
        np.save(xin, np.ascontiguousarray(x, np.float32), allow_pickle=False)
        for s in settings:
            job = {"op": "predict", "model": "m.tflite", "settings": [s.as_job()], "inputs": "x.npy",
                   "outputs": ["y.npy"]}
            result, files = runner.run(job, {"m.tflite": checked["path"], "x.npy": xin}, ("y.npy",), memory=memory,
                                       timeout=timeout, progress=progress, reply_bytes=reply_limit(1))
            scores = _read_scores(io.BytesIO(files["y.npy"]), len(x), checked["classes"], what)
            out.append((scores, {"setting": s.label(), **device_setting(result, 0, 1, what)}))
    return out


def predict_folder(checked: dict, settings: list[Setting], folder: str, pre: dict, *, target, limit: int | None = None,
                   timeout: float | None = None, progress=None, max_pixels: int | None = None):
    """Scores of the images in ``folder`` on the ssh ``target`` (data that lives on the device), with each
    setting, for the model :func:`check_model` checked: ``(results as predict's, labels, class names, images
    skipped as unreadable, the first skipped files named: "PATH (why)")``. ``max_pixels``: the runner's bound on
    an image before it decodes it."""
    if target is None or target.kind != "ssh":
        raise ConfigError("device-folder: data is read by the runner on an ssh:// target; give --target ssh://...")
    settings = [s.check(local=False) for s in settings]
    runner = open_target(target)
    outputs = [f"y{i}.npy" for i in range(len(settings))]
    job = {"op": "predict_folder", "model": "m.tflite", "settings": [s.as_job() for s in settings], "folder": folder,
           "limit": limit, "raw": pre["raw"], "mean": pre["mean"], "std": pre["std"], "outputs": outputs,
           "labels_out": "labels.npy", "max_pixels": max_pixels}
    result, files = runner.run(job, {"m.tflite": checked["path"]}, (*outputs, "labels.npy"),
                               memory=_child.memory_limit(checked["bytes"]), timeout=timeout, progress=progress,
                               reply_bytes=reply_limit(len(settings), extra=24 << 20))
    labels = _read_npy(io.BytesIO(files["labels.npy"]), np.int64, None, 0)
    classes = result.get("classes")
    if not len(labels):
        raise BadReply(f"{target}: the device found no images in {safe_text(folder, 120)} (its labels are empty): refused")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or not 2 <= len(classes) <= 100_000 \
            or labels.min() < 0 or labels.max() >= len(classes) or result.get("images") not in (None, len(labels)):
        raise BadReply(f"{target}: the device's reply about {safe_text(folder, 120)} is malformed")
    out = [(_read_scores(io.BytesIO(files[outputs[i]]), len(labels), checked["classes"], str(target)),
            {"setting": s.label(), **device_setting(result, i, len(settings), str(target))})
           for i, s in enumerate(settings)]
    skipped = result.get("skipped")
    if isinstance(skipped, bool) or not isinstance(skipped, int) or not 0 <= skipped <= 100_000_000:
        raise bad_field(str(target), "skipped", skipped)
    named = [f"{f.get('path')} ({f.get('why')})" for f in clean(result.get("skipped_files") or [])[:20]
             if isinstance(f, dict)] if isinstance(result.get("skipped_files"), list) else []
    return out, labels, [safe_text(c, 200) for c in classes], skipped, named


def _read_npy(f, dtype, n: int | None, max_row: int) -> np.ndarray:
    """A .npy from a child or a device, read without pickles and bounded: ``dtype``, ``n`` rows (any number up
    to 10M when None) of at most ``max_row`` values (0: one dimension)."""
    try:
        with f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, got = read_header(f)
            rows_ok = bool(shape) and (shape[0] == n if n is not None else shape[0] <= 10_000_000)
            row_ok = len(shape) == 1 if max_row == 0 else int(np.prod(shape[1:])) <= max_row
            if got != dtype or not rows_ok or not row_ok:
                raise ValueError(f"an array of shape {shape} and type {got}")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise HarnessFailed(f"the runtime's results are unreadable ({exc})") from None


def _read_scores(path, n: int, classes: int | None = None, what: str = "the runtime") -> np.ndarray:
    """Scores a child or a device wrote, without pickles: ``n`` rows of ``classes`` float32 values (at most 1M
    when unknown), two dimensions, every value finite (NaN scores would count as a class)."""
    scores = _read_npy(open(path, "rb") if isinstance(path, (str, os.PathLike)) else path, np.float32, n, 1_000_000)
    if scores.ndim != 2 or (classes is not None and scores.shape[1] != classes):
        raise BadReply(f"{what} returned scores of shape {scores.shape} for {n} images of "
                       f"{classes if classes is not None else 'some'} classes: refused")
    bad = int(np.count_nonzero(~np.isfinite(scores)))
    if bad:
        raise BadReply(f"{what} returned {bad:,} scores that are NaN or infinite ({bad / scores.size:.0%}): the model or "
                       "the runtime is broken; no accuracy can be computed")
    return scores
