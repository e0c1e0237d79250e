"""Latency and scores of ``.tflite`` models, measured by :mod:`resnet_edge.runtime.harness` in a child
Python (edge side: numpy + a TFLite runtime, no TensorFlow).

Every model is read and checked here first (its resnet-edge checksum verified, its flatbuffer checked:
a damaged model is refused in one line), then the harness runs it in a child process with the memory
and time limits of :mod:`resnet_edge._child`, so a hostile model cannot take this process down. The
child is this Python, or for ``runtime="tflite-runtime"`` where this Python cannot import it, the side
environment of ``tools/make_tflite_runtime_env.sh`` (``$RESNET_EDGE_TFLITE_RUNTIME_PYTHON`` or
``.tflite-runtime-env/`` in the current folder). The same harness file runs on a remote device.

:func:`latency` is the in-process shortcut the tools use (one model, one setting, figures in ms).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from resnet_edge import _child
from resnet_edge.errors import ConfigError, MissingDependencyError, ResnetEdgeError
from resnet_edge.runtime import harness
from resnet_edge.runtime.replies import (OURS, BadReply, HarnessFailed, bad_field, clean, clean_machine,  # noqa: F401
                                         device_records, device_setting, reply_limit)
from resnet_edge.runtime.runner import TFLiteModel, read_checked
from resnet_edge.ui import safe_text

OLD_RUNTIME_ENV = "RESNET_EDGE_TFLITE_RUNTIME_PYTHON"
#: Where tools/make_tflite_runtime_env.sh puts the side environment by default.
OLD_RUNTIME_DIR = ".tflite-runtime-env"


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a model is run: the runtime, the API and accelerator, kernels, threads and delegates."""

    runtime: str = "auto"
    accelerator: str | None = None  # None: the Interpreter API; "cpu" / "gpu": LiteRT's CompiledModel
    fallback: bool = False
    kernels: str = "xnnpack"
    threads: int | None = None
    delegate: str | None = None
    delegate_options: tuple[tuple[str, str], ...] = ()
    weight_cache: str | None = None
    precision: str | None = None  # OpenVINO's inference precision: "f32" (its default here) or "bf16"

    def check(self, local: bool = True) -> "Setting":
        """Raise :class:`ConfigError` (one line) for a combination that cannot run; return self.
        ``local=False``: the paths (a delegate) are on a device, not checked here."""
        if self.runtime not in RUNTIME_CHOICES:
            raise ConfigError(f"unknown runtime {self.runtime!r}; valid: {', '.join(RUNTIME_CHOICES)}")
        if self.runtime == harness.OPENVINO:
            given = [name for name, on in (("--accelerator", self.accelerator), ("--fallback", self.fallback),
                                           ("--delegate", self.delegate), ("--kernels builtin", self.kernels != "xnnpack"))
                     if on]
            if given:
                raise ConfigError(f"{', '.join(given)} mean(s) nothing to OpenVINO, which runs the model with its own CPU "
                                  "plugin: leave it out (or use --runtime litert)")
            if self.precision not in (None, *harness.PRECISIONS):
                raise ConfigError(f"--precision must be one of {', '.join(harness.PRECISIONS)}, got {self.precision!r}")
            return self
        if self.precision is not None:
            raise ConfigError("--precision is an OpenVINO setting (a TFLite runtime computes in the model's own types): "
                              "add --runtime openvino")
        if self.accelerator not in (None, *harness.ACCELERATORS):
            raise ConfigError(f"unknown accelerator {self.accelerator!r}; valid: {', '.join(harness.ACCELERATORS)}")
        if self.kernels not in harness.KERNELS:
            raise ConfigError(f"kernels must be one of {', '.join(harness.KERNELS)}, got {self.kernels!r}")
        if self.accelerator and self.runtime == "tflite-runtime":
            raise ConfigError("--accelerator uses LiteRT's CompiledModel API, which tflite-runtime does not have; "
                              "use --runtime litert (or leave out --accelerator)")
        if self.accelerator and self.kernels == "builtin":
            raise ConfigError("--kernels builtin is an Interpreter option; leave out --accelerator to use it")
        if self.delegate and self.accelerator:
            raise ConfigError("--delegate loads into the Interpreter API; leave out --accelerator")
        if self.weight_cache and self.accelerator != "cpu":
            raise ConfigError("--weight-cache is a CompiledModel CPU option: use it with --accelerator cpu")
        if self.fallback and self.accelerator != "gpu":
            raise ConfigError("--fallback applies to --accelerator gpu")
        if local and self.delegate and not os.path.isfile(self.delegate):
            raise ConfigError(f"delegate library not found: {self.delegate}; give the path of a .so file")
        return self

    def as_job(self) -> dict:
        job = {"runtime": self.runtime, "accelerator": self.accelerator, "fallback": self.fallback,
               "kernels": self.kernels, "threads": self.threads, "delegate": self.delegate,
               "delegate_options": dict(self.delegate_options), "weight_cache": self.weight_cache}
        if self.runtime == harness.OPENVINO:  # only there: the settings stored before keep their keys
            job["precision"] = self.precision or "f32"
        return job

    def label(self) -> str:
        """Short text for a table: ``gpu``, ``xnnpack 2t``, ``tflite-runtime builtin 1t``."""
        if self.runtime == harness.OPENVINO:
            parts = ["openvino", self.precision or "f32", f"{self.threads}t" if self.threads else "",
                     "cache" if self.weight_cache else ""]
            return " ".join(p for p in parts if p)
        parts = [self.runtime if self.runtime != "auto" else "", self.accelerator or self.kernels,
                 Path(self.delegate).name if self.delegate else "",
                 f"{self.threads}t" if self.threads else "", "cache" if self.weight_cache else ""]
        return " ".join(p for p in parts if p)


SETTING_WORDS = {"cpu": ("accelerator", "cpu"), "gpu": ("accelerator", "gpu"), "interpreter": ("accelerator", None),
                 "xnnpack": ("kernels", "xnnpack"), "builtin": ("kernels", "builtin"), "litert": ("runtime", "litert"),
                 "tflite-runtime": ("runtime", "tflite-runtime"), "fallback": ("fallback", True),
                 "openvino": ("runtime", "openvino"), "f32": ("precision", "f32"), "bf16": ("precision", "bf16")}
#: What --runtime takes.
RUNTIME_CHOICES = ("auto", *harness.RUNTIMES, harness.OPENVINO)


def parse_setting(text: str, base: Setting, local: bool = True) -> Setting:
    """``gpu``, ``tflite-runtime+builtin``, ``cpu+2`` (words joined by ``+``, a number is threads) on
    top of ``base``."""
    changes: dict = {}
    for word in text.strip().lower().split("+"):
        if word in SETTING_WORDS:
            key, value = SETTING_WORDS[word]
            changes[key] = value
        elif word.isdigit() and 0 < int(word) <= 256:
            changes["threads"] = int(word)
        else:
            raise ConfigError(f"unknown setting {word!r} in {text!r}; use words joined by '+': "
                              f"{', '.join(SETTING_WORDS)} or a thread count (e.g. cpu,gpu or xnnpack+1,builtin+1)")
    if changes.get("runtime", base.runtime) != harness.OPENVINO and "precision" not in changes:
        changes["precision"] = None  # a TFLite runtime has no precision to set (litert,openvino+bf16)
    if changes.get("runtime") == harness.OPENVINO and base.runtime != harness.OPENVINO:
        changes.setdefault("kernels", "xnnpack")
    return dataclasses.replace(base, **changes).check(local)


def python_for(runtime: str) -> str:
    """The Python that runs ``runtime``: this one when it can import it, else tflite-runtime's side
    environment. Raises :class:`MissingDependencyError` naming what to install."""
    if runtime == harness.OPENVINO:
        if importlib.util.find_spec("openvino"):
            return sys.executable
        raise MissingDependencyError("OpenVINO is not installed here: pip install 'resnet-edge[openvino]' (or openvino)")
    wanted = list(harness.RUNTIMES) if runtime == "auto" else [runtime]
    if any(importlib.util.find_spec(harness.RUNTIMES[name]) for name in wanted):
        return sys.executable
    if runtime == "tflite-runtime":
        for python in (os.environ.get(OLD_RUNTIME_ENV), os.path.join(OLD_RUNTIME_DIR, "bin", "python")):
            if python and os.path.isfile(python) and os.access(python, os.X_OK):
                return python
        raise MissingDependencyError(
            "tflite-runtime is not installed for this Python (its last release, 2.14, needs numpy < 2): run "
            f"`bash tools/make_tflite_runtime_env.sh` (makes {OLD_RUNTIME_DIR}/) or set {OLD_RUNTIME_ENV}")
    raise MissingDependencyError("no TFLite runtime here: pip install ai-edge-litert (or 'resnet-edge[edge]')")


def check_model(path: str | os.PathLike, verify: bool = True) -> dict:
    """Read and check a model before any runtime sees it (:func:`~resnet_edge.runtime.runner.read_checked`):
    ``{"integrity": ..., "info": metadata or None, "bytes": n, "inputs": [...], "outputs": [...]}`` (the
    tensors are None where the schema module is missing). A damaged model of ours raises one line; a
    foreign one is "unverified"."""
    content, _, status, info = read_checked(path, verify)
    try:
        from resnet_edge.tflite.inspect import io_tensors

        inputs, outputs = io_tensors(content)
    except MissingDependencyError:  # no flatbuffer schema here (tflite-runtime alone)
        inputs = outputs = None
    return {"integrity": status, "info": info, "bytes": len(content), "inputs": inputs, "outputs": outputs}


def takes_raw_pixels(info: dict | None) -> bool:
    """Whether a model wants 0..255 pixels: ours say so in their metadata; a foreign one is assumed to."""
    return not (info and str((info.get("input") or {}).get("pixels", "")).startswith("normalized"))


def wants_gpu(job: dict) -> bool:
    """Whether a job opens a GPU: a GPU driver reserves address space far beyond what it uses, so such a
    child gets no address-space cap (here: a resident-memory watch instead)."""
    return any(s.get("accelerator") == "gpu" for s in job.get("settings", []))


def run_job(python: str, job: dict, *, memory: int, timeout: float = 3600,
            progress: Callable[[str], None] | None = None) -> dict:
    """Run the harness with ``job`` in a limited child ``python``; its result, or :class:`HarnessFailed`
    with the child's one-line reason. ``progress`` gets each progress line the harness writes."""
    cmd = [python, harness.__file__]
    gpu = wants_gpu(job)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_child._limits(None if gpu else memory))
    except OSError as exc:
        raise HarnessFailed(f"could not start {python}: {exc.strerror or exc}") from None
    watch = _child.ResidentWatch(proc, memory) if gpu else None
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
    except OSError:  # it died at once: its stderr says why
        pass
    got = _child.collect(proc, timeout=timeout, on_progress=lambda t: progress and progress(safe_text(t, 200)))
    if watch:
        watch.stop()
    if got.ended == "timeout":
        raise HarnessFailed(f"the measurement did not finish within {timeout:g} s")
    if watch and watch.fired:
        raise HarnessFailed(f"the runtime failed: its resident memory passed its limit of {memory >> 20} MB "
                            f"(set {_child.MEMORY_ENV} to change it)")
    return parse_result(proc.returncode, got, lambda failed: f"the runtime failed: {_child.describe_failure(failed, memory)}")


def parse_result(returncode: int, got: "_child.Collected", crashed: Callable) -> dict:
    """The harness's result from what a child (here or on a device) printed: its ``error:`` line when it
    refused, ``crashed(CompletedProcess)`` when it died otherwise, else the one JSON result (bounded,
    never evaluated)."""
    err_lines = got.err_lines
    if got.ended == "too_much":
        raise HarnessFailed(f"the runner wrote more than {got.limit / 1e6:.1f} MB of results, more than the job asked "
                            "for; refused")
    if returncode != 0:
        errors = [line[7:] for line in err_lines if line.startswith("error: ")]
        if errors:
            raise HarnessFailed(safe_text(errors[-1], 400))
        raise HarnessFailed(crashed(subprocess.CompletedProcess([], returncode, b"", "\n".join(err_lines).encode())))
    try:
        result = json.loads(got.stdout.decode().strip().splitlines()[-1])["result"]
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, TypeError, RecursionError):
        raise HarnessFailed("the measurement gave no result") from None
    if not isinstance(result, dict):
        raise HarnessFailed("the measurement gave no result")
    return result


def bench(paths: list[str | os.PathLike], settings: list[Setting], *, runs: int = 50, warmup: int = 5,
          rounds: int = 1, samples: dict[str, np.ndarray] | None = None, baseline: str | os.PathLike | None = None,
          measure_memory: bool = True, keep_times: bool = False, verify: bool = True,
          progress: Callable[[str], None] | None = None, target=None, timeout: float | None = None,
          benchmark_binary: str | None = None) -> dict:
    """Time every model with every setting (models and settings in turn, ``rounds`` times): one record
    per model x setting with benchmark_model's figures (see :mod:`resnet_edge.runtime.harness`), the
    model's integrity, and with ``baseline`` (one of ``paths``) the ratio of each median to the
    baseline's with the same setting. ``samples``: per model path, real inputs in the model's form.

    ``target`` (a :class:`~resnet_edge.targets.TargetURL`): measure on a device instead, one model per
    run; when the device fails after some models were measured, their records are returned with
    ``incomplete`` set to the reason. On an ``adb://`` target, LiteRT's benchmark_model measures
    (``benchmark_binary``: its local path, pushed to the device; else the device's own)."""
    if runs < 1 or warmup < 0 or rounds < 1:
        raise ConfigError("--runs and --rounds must be >= 1, --warmup >= 0")
    if not paths:
        raise ConfigError("give at least one model")
    remote = target is not None and target.kind != "local"
    if not (remote and target.kind == "adb"):  # benchmark_model's settings are checked by targets.adb
        settings = [s.check(local=not remote) for s in settings]
    paths = [str(p) for p in paths]
    if baseline is not None and str(baseline) not in paths:
        paths = [str(baseline)] + paths
    if len(set(paths)) != len(paths):
        raise ConfigError("a model is named twice; name each once")
    checked = {p: check_model(p, verify) for p in paths}
    if remote:
        result = _bench_on(target, paths, checked, settings, runs=runs, warmup=warmup, rounds=rounds, samples=samples,
                           measure_memory=measure_memory, keep_times=keep_times, progress=progress, timeout=timeout,
                           benchmark_binary=benchmark_binary)
        return _with_baseline(result, paths, baseline)
    pythons = {s.runtime: python_for(s.runtime) for s in settings}
    memory = _child.memory_limit(sum(c["bytes"] for c in checked.values()))
    records, machine = [], None
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        inputs = {}
        for i, (p, x) in enumerate((samples or {}).items()):
            inputs[str(p)] = os.path.join(tmp, f"samples{i}.npy")
            np.save(inputs[str(p)], np.ascontiguousarray(x, np.float32), allow_pickle=False)
        for python in dict.fromkeys(pythons.values()):
            mine = [(i, s) for i, s in enumerate(settings) if pythons[s.runtime] == python]
            job = {"op": "bench", "models": [os.path.abspath(p) for p in paths],
                   "settings": [s.as_job() for _, s in mine], "runs": runs, "warmup": warmup, "rounds": rounds,
                   "memory": measure_memory, "keep_times": keep_times,
                   "inputs": {os.path.abspath(p): f for p, f in inputs.items()},
                   "raw_pixels": {os.path.abspath(p): takes_raw_pixels(checked[p]["info"]) for p in paths}}
            result = run_job(python, job, memory=memory, progress=progress)
            machine = result.get("machine")
            by_abs = {os.path.abspath(p): p for p in paths}
            for r in result["records"]:
                index, setting = mine[r.pop("setting_index")]
                path = by_abs.get(r["model"], r["model"])
                records.append({"model": path, "setting": setting.label(), "setting_index": index,
                                "integrity": checked[path]["integrity"]["status"],
                                **{k: v for k, v in r.items() if k != "model"}})
    records.sort(key=lambda r: (paths.index(r["model"]), r["setting_index"]))
    return _with_baseline({"machine": machine, "target": "local", "target_url": "local", "incomplete": None,
                           "records": records}, paths, baseline)


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


def _bench_on(target, paths, checked, settings, *, runs, warmup, rounds, samples, measure_memory, keep_times,
              progress, timeout, benchmark_binary=None) -> dict:
    """``bench`` on a device: one run per model (so that a dropped connection keeps what was measured)."""
    from resnet_edge.targets import open_target

    if target.kind == "adb":
        if samples or rounds > 1 or keep_times:
            raise ConfigError(f"{target}: benchmark_model makes its own inputs and runs one round: leave out --data "
                              "and --rounds on adb:// targets")
        runner = open_target(target, benchmark_binary=benchmark_binary)
        return runner.bench(paths, checked, settings, runs=runs, warmup=warmup, measure_memory=measure_memory,
                            progress=progress, timeout=timeout)
    runner = open_target(target)
    records, machine, incomplete = [], None, None
    memory = _child.memory_limit(max(c["bytes"] for c in checked.values()))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for i, path in enumerate(paths):
            name = f"m{i}.tflite"
            send = {name: path}
            job = {"op": "bench", "models": [name], "settings": [s.as_job() for s in settings], "runs": runs,
                   "warmup": warmup, "rounds": rounds, "memory": measure_memory, "keep_times": keep_times,
                   "raw_pixels": {name: takes_raw_pixels(checked[path]["info"])}}
            if samples and samples.get(path) is not None:
                send[f"x{i}.npy"] = os.path.join(tmp, f"x{i}.npy")
                np.save(send[f"x{i}.npy"], np.ascontiguousarray(samples[path], np.float32), allow_pickle=False)
                job["inputs"] = {name: f"x{i}.npy"}
            if progress:
                progress(f"{target}: model {i + 1}/{len(paths)} {os.path.basename(path)}")
            try:
                result, _ = runner.run(job, send, memory=memory, timeout=timeout, progress=progress,
                                       reply_bytes=reply_limit(len(settings), runs, rounds, keep_times))
                mine = device_records(result, len(settings), runs, rounds, warmup, str(target))
            except ResnetEdgeError as exc:
                if not records:
                    raise
                incomplete = f"{exc} (after {len(records)} of {len(paths) * len(settings)} records)"
                break
            machine = clean_machine(result.get("machine"))
            for index, r in enumerate(mine):  # what we asked and know comes last: the device cannot override it
                records.append({**{k: v for k, v in r.items() if k not in OURS}, "model": path,
                                "setting": settings[index].label(), "setting_index": index,
                                "integrity": checked[path]["integrity"]["status"], "model_bytes": checked[path]["bytes"]})
    return {"machine": machine, "target": target.name, "target_url": target.url, "incomplete": incomplete,
            "records": records}


def predict(path: str | os.PathLike, settings: list[Setting], x: np.ndarray, *, verify: bool = True,
            progress: Callable[[str], None] | None = None, target=None,
            timeout: float | None = None) -> list[tuple[np.ndarray, dict]]:
    """Scores (float32, dequantized) of ``x`` (float, in the model's form) with each setting, and each
    setting's description and per-image latency figures. ``target``: on that device (ssh)."""
    checked = check_model(path, verify)
    out = []
    memory = _child.memory_limit(checked["bytes"]) + int(x.nbytes) * 3
    classes = _classes(checked)
    if target is not None and target.kind != "local":
        return _predict_on(target, path, [s.check(local=False) for s in settings], x, memory=memory,
                           progress=progress, timeout=timeout, classes=classes)
    settings = [s.check() for s in settings]
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        xin = os.path.join(tmp, "x.npy")
        np.save(xin, np.ascontiguousarray(x, np.float32), allow_pickle=False)
        for i, s in enumerate(settings):
            target = os.path.join(tmp, f"y{i}.npy")
            job = {"op": "predict", "model": os.path.abspath(path), "settings": [s.as_job()], "inputs": xin,
                   "outputs": [target]}
            result = run_job(python_for(s.runtime), job, memory=memory, progress=progress)
            scores = _read_scores(target, len(x), classes, "the runtime")
            out.append((scores, {"setting": s.label(), **result["settings"][0]}))
    return out


def _classes(checked: dict) -> int | None:
    """How many scores a model gives per image (None: unknown without the schema)."""
    outputs = checked.get("outputs")
    if outputs and len(outputs) == 1 and outputs[0]["shape"]:
        return int(outputs[0]["shape"][-1])
    return None


def _predict_on(target, path, settings, x, *, memory, progress, timeout, classes) -> list[tuple[np.ndarray, dict]]:
    import io

    from resnet_edge.targets import open_target

    if target.kind != "ssh":
        raise ConfigError(f"{target}: eval runs on an ssh:// target (Python on the device); on Android, bench measures "
                          "latency with benchmark_model, which gives no predictions")
    runner = open_target(target)
    out = []
    with tempfile.TemporaryDirectory(prefix="predict-") as tmp:
        xin = os.path.join(tmp, "x.npy")
        np.save(xin, np.ascontiguousarray(x, np.float32), allow_pickle=False)
        for i, s in enumerate(settings):
            job = {"op": "predict", "model": "m.tflite", "settings": [s.as_job()], "inputs": "x.npy",
                   "outputs": ["y.npy"]}
            result, files = runner.run(job, {"m.tflite": str(path), "x.npy": xin}, ("y.npy",), memory=memory,
                                       timeout=timeout, progress=progress, reply_bytes=reply_limit(1))
            scores = _read_scores(io.BytesIO(files["y.npy"]), len(x), classes, str(target))
            described = device_setting(result, 0, 1, str(target))
            out.append((scores, {"setting": s.label(), **described}))
    return out


def predict_folder_on(target, path, settings: list[Setting], folder: str, pre: dict, *, limit: int | None = None,
                      verify: bool = True, timeout: float | None = None, progress=None, max_pixels: int | None = None):
    """Scores of the images in ``folder`` on the ssh ``target`` (data that lives on the device), with each
    setting: ``(results as predict's, labels, class names, images skipped as unreadable, the first skipped
    files named: "PATH (why)")``. ``max_pixels``: the runner's bound on an image before it decodes it."""
    import io

    from resnet_edge.targets import open_target

    if target.kind != "ssh":
        raise ConfigError("device-folder: data is read by the runner on an ssh:// target; give --target ssh://...")
    checked = check_model(path, verify)
    settings = [s.check(local=False) for s in settings]
    runner = open_target(target)
    outputs = [f"y{i}.npy" for i in range(len(settings))]
    job = {"op": "predict_folder", "model": "m.tflite", "settings": [s.as_job() for s in settings], "folder": folder,
           "limit": limit, "raw": pre["raw"], "mean": pre["mean"], "std": pre["std"], "outputs": outputs,
           "labels_out": "labels.npy", "max_pixels": max_pixels}
    result, files = runner.run(job, {"m.tflite": str(path)}, (*outputs, "labels.npy"),
                               memory=_child.memory_limit(checked["bytes"]), timeout=timeout, progress=progress,
                               reply_bytes=reply_limit(len(settings), extra=24 << 20))
    labels = _read_npy(io.BytesIO(files["labels.npy"]), np.int64, None, 0)
    classes = result.get("classes")
    if not len(labels):
        raise BadReply(f"{target}: the device found no images in {safe_text(folder, 120)} (its labels are empty): refused")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or not 2 <= len(classes) <= 100_000 \
            or labels.min() < 0 or labels.max() >= len(classes) or result.get("images") not in (None, len(labels)):
        raise BadReply(f"{target}: the device's reply about {safe_text(folder, 120)} is malformed")
    out = [(_read_scores(io.BytesIO(files[outputs[i]]), len(labels), _classes(checked), str(target)),
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


def latency(model: str | os.PathLike | bytes, *, runs: int = 50, warmup: int = 5, threads: int | None = None,
            backend: str = "auto", kernels: str = "xnnpack", seed: int = 0) -> dict:
    """Time ``runs`` single-batch invocations of ``model`` in this process; figures in milliseconds
    (``median_ms``, ``mean_ms``, ``p90_ms``, ``min_ms``, ``max_ms``, ``init_ms``).

    ``kernels``: ``xnnpack`` (the runtime's default delegate) or ``builtin`` (TFLite's own kernels).
    A model that cannot be verified is probed in a limited child first (:class:`TFLiteModel`); that
    probe is not part of ``init_ms``, which times the checks and the interpreter's creation.
    """
    if runs < 1 or warmup < 0:
        raise ConfigError("runs must be >= 1 and warmup >= 0")
    runner = TFLiteModel(model, backend=backend, num_threads=threads, kernels=kernels)
    x = harness.signature_input(harness.tensor_detail(runner._input), np.random.default_rng(seed))
    interpreter, index = runner.interpreter, runner._input["index"]
    for _ in range(warmup):
        interpreter.set_tensor(index, x)
        interpreter.invoke()
    ms = np.empty(runs)
    for i in range(runs):
        interpreter.set_tensor(index, x)
        started = time.perf_counter()
        interpreter.invoke()
        ms[i] = (time.perf_counter() - started) * 1e3
    return {"runs": runs, "warmup": warmup, "threads": threads, "kernels": kernels,
            "init_ms": round(runner.init_ms, 2), "median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()),
            "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}
