"""Latency measured on the device, and predicted only to decide what to measure.

:class:`Meter` converts a candidate untrained (latency does not depend on the weights) and times it on the target:
warm-up, rounds interleaved where the target allows, the coefficient of variation recorded and a candidate
measured again when its spread is too wide. Every measurement lands in the results store, the file named by the
candidate's architecture hash, so nothing is measured twice on one device with one setting.

:class:`LatencyModel` is a regression per mode and runtime on the MACs of the stem and of each stage and the number of
blocks (in the spirit of nn-Meter's kernel-level predictors, at the level of the family's stages), fitted from the
measurements; its leave-one-out error is reported.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from resnet_edge.search.shipped import converted_as
from resnet_edge.search.space import Candidate, family_for, features, spec_of

#: A measurement whose coefficient of variation is above this is taken again (with twice the runs), once.
MAX_CV = 0.10
#: How far a timing may move from an earlier one of the same model before the device counts as moved (heat, another
#: load), and how long to wait for it to come back (seconds, a timing every SETTLE_STEP_S): the drift check's and the
#: final timing's.
DRIFT_TOLERANCE = 0.10
SETTLE_WAIT_S = 120.0
SETTLE_STEP_S = 10.0


def moved(now_ms: float, was_ms: float, tolerance: float = DRIFT_TOLERANCE) -> bool:
    """Whether a timing moved more than ``tolerance`` (a share) from an earlier one."""
    return abs(now_ms / was_ms - 1) > tolerance


class Meter:
    """Times candidates on ``target`` with ``setting``; ``base`` is the data's network at each depth."""

    def __init__(self, target, setting, data, folder: Path, *, runs: int = 50, warmup: int = 10, metric: str = "p90_ms",
                 store_path: str | None = None, progress: Callable[[str], None] = lambda text: None,
                 shared=None, lock=None, memory: bool = False, weights: dict | None = None):
        self.target, self.setting, self.data, self.folder = target, setting, data, Path(folder)
        #: Measure each candidate's peak memory too (a fresh process per candidate on the device; --max-memory).
        self.memory = memory
        #: Published weights per depth (``--weights``): a network's normalization and variant are theirs.
        self.weights = weights or {}
        self.runs, self.warmup, self.metric, self.store_path, self.say = runs, warmup, metric, store_path, progress
        self.bases: dict[int, object] = {}
        self.results: dict[str, dict] = {}
        self.measurements = 0
        #: An Optuna study whose storage the workers share: measurements made by a worker elsewhere are read there.
        self.shared = shared
        self.lock = lock or contextlib.nullcontext
        self.folder.mkdir(parents=True, exist_ok=True)

    def base(self, depth: int, size: int | None = None):
        """The data's network at ``depth`` (and input resolution ``size``, for an image folder)."""
        from resnet_edge.train import spec_for_data

        if (depth, size) not in self.bases:
            self.bases[depth, size] = spec_for_data(self.data, depth=depth, input_size=size,
                                                    family=family_for(size or self.data.image_size),
                                                    weights=self.weights.get(depth))
        return self.bases[depth, size]

    def spec(self, c: Candidate):
        return spec_of(c, self.base(c.depth, c.size))

    def buildable(self, c: Candidate) -> bool:
        """Whether ``c`` is a network (a stream that shortcut A would have to narrow is not). What is wrong with the
        data's network itself (an input size the family cannot take) is raised, one line."""
        from resnet_edge.errors import ConfigError

        base = self.base(c.depth, c.size)
        if c.stream is None:
            return True
        try:
            spec_of(c, base)
        except ConfigError:
            return False
        return True

    def setting_for(self, c: Candidate):
        """The setting ``c`` is timed with: the search's, on ``c``'s runtime."""
        import dataclasses

        return dataclasses.replace(self.setting, runtime="openvino") if c.runtime == "openvino" else self.setting

    def features(self, c: Candidate) -> list[float]:
        return features(self.spec(c))

    def file(self, c: Candidate) -> Path:
        """The candidate converted untrained (written once; the same .tflite whatever runtime times it); a QAT
        candidate through tfmot's QAT graph, as its trained model is converted."""
        from resnet_edge.arch.keras_model import build_model
        from resnet_edge.convert import representative_samples, to_tflite
        from resnet_edge.io import atomic_write_bytes

        path = self.folder / self.file_name(c)
        if not path.exists():
            model = build_model(self.spec(c))
            if c.mode == "qat":  # the QAT graph (its input normalization in int8 too), converted to full int8
                from resnet_edge.optimize.qat import quantize

                model = quantize(model)
            rep = representative_samples(model, self.data, 8) if c.mode in ("int8", "int16x8") else None
            atomic_write_bytes(path, to_tflite(model, converted_as(c.mode), representative=rep))
        return path

    @staticmethod
    def file_name(c: Candidate) -> str:
        """The untrained .tflite's name: the candidate's on LiteRT (the runtime is the setting's, not the file's)."""
        import dataclasses

        return f"{dataclasses.replace(c, runtime='litert').key}.tflite"

    def _shared_key(self, c: Candidate) -> str:
        return f"latency|{self.target.url}|{self.setting_for(c).label()}|{c.key}"

    def _stored(self, c: Candidate, shared: dict) -> dict | None:
        from resnet_edge.measure.results import Store

        if shared:
            got = shared.get(self._shared_key(c))
            if (isinstance(got, dict) and isinstance(got.get(self.metric), (int, float))
                    and (got.get("runs") or 0) >= self.runs and (not self.memory or got.get("memory_mb") is not None)):
                return {**got, "stored": True}

        rows = []
        with Store(self.store_path, write=False) as store:
            for r in store.query(model=self.file_name(c), target=str(self.target)):
                try:
                    rec = json.loads(r.get("record") or "{}")
                except ValueError:  # a row another writer damaged: measured again
                    continue
                runs = (rec.get("runs") or 0) * (rec.get("rounds") or 1) if isinstance(rec, dict) else 0
                if (r.get("setting") == self.setting_for(c).label() and isinstance(runs, int) and runs >= self.runs
                        and (not self.memory or isinstance(rec.get("memory_overall_mb"), (int, float)))):
                    rows.append((r, rec))
        if not rows:
            return None
        r, rec = rows[-1]  # the figures from the row's columns (checked numbers), the rest from its record
        return _figures({**rec, **{k: r.get(k) for k in ("p50_ms", "p90_ms", "avg_ms")}},
                        (rec.get("runs") or 0) * (rec.get("rounds") or 1), stored=True)

    def measure(self, cands: list[Candidate], *, runs: int | None = None, again: bool = False) -> dict[str, dict]:
        """Latency of every candidate of ``cands`` (those measured before on this target and setting are read from
        the store unless ``again``); returns {key: figures}."""
        from resnet_edge.io import sha256_file
        from resnet_edge.measure.bench import bench
        from resnet_edge.measure.results import Store

        runs = runs or self.runs
        rounds = 1 if self.target.kind == "adb" else 2
        runs = rounds * -(-runs // rounds)
        todo = []
        shared = self.shared.user_attrs if self.shared is not None and not again else {}
        for c in cands:
            if c.key in self.results and not again:
                continue
            stored = None if again else self._stored(c, shared)
            if stored:
                self.results[c.key] = stored
            else:
                todo.append(c)
        if not todo:
            return {c.key: self.results[c.key] for c in cands}
        self.say(f"latency: converting {len(todo)} untrained candidate(s)")
        paths = {c.key: str(self.file(c)) for c in todo}
        records = {}
        for setting in dict.fromkeys(self.setting_for(c) for c in todo):  # one bench per runtime
            group = [c for c in todo if self.setting_for(c) == setting]
            files = [paths[c.key] for c in group]
            self.say(f"latency: timing {len(group)} candidate(s) on {self.target} ({setting.label()}, {runs} runs)")
            with self.lock():
                result = bench(files, [setting], runs=runs // rounds, warmup=self.warmup, rounds=rounds,
                               target=None if self.target.kind == "local" else self.target,
                               measure_memory=self.memory and not again)
            self.measurements += len(result["records"])
            with Store(self.store_path) as store:
                store.add(result["records"], target=result["target"], target_url=result["target_url"],
                          machine=result.get("machine"), models={p: sha256_file(p) for p in files},
                          settings={0: setting.as_job()})
            for c in group:
                records[c.key] = next(r for r in result["records"] if r["model"] == paths[c.key])
        wide = []
        for c in todo:
            rec = records[c.key]
            before = self.results.get(c.key) or {}
            self.results[c.key] = _figures(rec, runs, stored=False)
            if self.results[c.key]["memory_mb"] is None:  # timed again for latency only: the memory stays
                self.results[c.key]["memory_mb"] = before.get("memory_mb")
            if self.shared is not None:
                self.shared.set_user_attr(self._shared_key(c), self.results[c.key])
            if (self.results[c.key]["cv"] or 0) > MAX_CV:
                wide.append(c)
        if wide and not again:
            self.say(f"latency: {len(wide)} measurement(s) spread over {100 * MAX_CV:.0f}% (CV): timing them again")
            self.measure(wide, runs=2 * runs, again=True)
        return {c.key: self.results[c.key] for c in cands}

    def drift(self, reference: Candidate, was_ms: float, since: list[Candidate], *, tolerance: float = DRIFT_TOLERANCE,
              wait: float = SETTLE_WAIT_S, step: float = SETTLE_STEP_S) -> dict:
        """Time ``reference`` again: when it moved more than ``tolerance`` from ``was_ms`` (heat, another load), wait
        (up to ``wait`` seconds, timing it every ``step``) for it to come back, then time ``since`` (the candidates
        timed after the last good reference) again. Returns what happened."""
        import time

        now = self.measure([reference], again=True)[reference.key][self.metric]
        event = {"reference": reference.key, "was_ms": was_ms, "now_ms": now, "moved": now / was_ms - 1}
        if not moved(now, was_ms, tolerance):
            return {**event, "drift": False}
        self.say(f"latency: the reference moved {100 * event['moved']:+.0f}% ({was_ms:.3g} -> {now:.3g} ms): waiting "
                 "for the device to settle")
        waited = 0.0
        while moved(now, was_ms, tolerance) and waited < wait:
            time.sleep(step)
            waited += step
            now = self.measure([reference], again=True)[reference.key][self.metric]
        settled = not moved(now, was_ms, tolerance)
        if since:
            self.say(f"latency: timing the {len(since)} candidate(s) measured since the last good reference again")
            self.measure(since, again=True)
        return {**event, "drift": True, "waited_s": waited, "settled": settled, "settled_ms": now,
                "retimed": [c.key for c in since]}

    def latency(self, c: Candidate) -> float | None:
        r = self.results.get(c.key)
        return None if r is None else r.get(self.metric)


def _figures(record: dict, runs: int, *, stored: bool) -> dict:
    """What the search keeps of a bench record (fresh, or a results-store row's): latency, spread, size, peak memory
    (when measured), runs."""
    return {"p50_ms": record.get("p50_ms"), "p90_ms": record.get("p90_ms"), "avg_ms": record.get("avg_ms"),
            "cv": cv_of(record), "bytes": record.get("model_bytes"), "memory_mb": record.get("memory_overall_mb"),
            "runs": runs, "stored": stored}


def cv_of(record: dict) -> float | None:
    """A timing's coefficient of variation (std / mean of its timed runs), None without them."""
    avg, std = record.get("avg_ms"), record.get("std_ms")
    return std / avg if avg and std is not None else None


def _group(c: Candidate) -> str:
    """What the latency model fits apart: each mode on each runtime."""
    return c.mode if c.runtime == "litert" else f"{c.mode} {c.runtime}"


class LatencyModel:
    """Per mode and runtime, latency ~ features (least squares): the MACs of each stage when there are three
    measurements per coefficient, else total MACs and blocks. A group with fewer than three measurements is the fitted
    group with the most (int8 first, for QAT int8: the same integer kernels) times the median ratio of its own
    measurements to that group's predictions; a group with none is scaled by total MACs."""

    def __init__(self):
        self.coef: dict[str, np.ndarray] = {}
        self.per_mac: dict[str, float] = {}
        self.size: dict[str, int] = {}
        self.borrowed: dict[str, tuple[str, float]] = {}  # group -> (the fitted group it follows, times what)

    def fit(self, points: list[tuple[Candidate, list[float], float]]) -> "LatencyModel":
        by_mode: dict[str, list] = {}
        for c, f, ms in points:
            by_mode.setdefault(_group(c), []).append((f, ms))
        for mode, rows in by_mode.items():
            x = np.asarray([self._x(f, len(rows)) for f, _ in rows])
            y = np.asarray([ms for _, ms in rows])
            self.per_mac[mode] = float(np.median(y / np.asarray([sum(f[1:-1]) for f, _ in rows])))
            if len(rows) >= 3:
                lam = 1e-6 * np.eye(x.shape[1])
                self.coef[mode] = np.linalg.solve(x.T @ x + lam, x.T @ y)
                self.size[mode] = len(rows)
        for mode, rows in by_mode.items():
            if mode in self.coef or not self.coef:
                continue
            runtime = mode.partition(" ")[2]
            base = max(self.coef, key=lambda g: (g.partition(" ")[0] == "int8" and g.partition(" ")[2] == runtime,
                                                 self.size[g], g))
            preds = [self._fitted(base, f) for f, _ in rows]
            ratios = [ms / p for (_, ms), p in zip(rows, preds) if p > 0]
            if ratios:
                self.borrowed[mode] = (base, float(np.median(ratios)))
        return self

    def _fitted(self, g: str, f: list[float]) -> float:
        return float(np.asarray(self._x(f, self.size[g])) @ self.coef[g])

    @staticmethod
    def _x(f: list[float], n: int) -> list[float]:
        """The stage-level features with enough measurements (three per coefficient), else 1, total MACs, blocks."""
        return list(f) if n >= 3 * len(f) else [1.0, sum(f[1:-1]), f[-1]]

    def predict(self, c: Candidate, f: list[float]) -> float:
        g = _group(c)
        if g in self.coef:
            ms = self._fitted(g, f)
            if ms > 0:
                return ms
        if g in self.borrowed:
            base, ratio = self.borrowed[g]
            ms = self._fitted(base, f) * ratio
            if ms > 0:
                return ms
        rate = self.per_mac.get(g) or (float(np.median(list(self.per_mac.values()))) if self.per_mac else 0.0)
        return rate * sum(f[1:-1])


def held_out(points: list[tuple[Candidate, list[float], float]]) -> dict:
    """Leave-one-out: each measured candidate predicted by the model fitted on the others; the share within +-10%
    and the errors."""
    errors = []
    for i, (c, f, ms) in enumerate(points):
        rest = points[:i] + points[i + 1:]
        if not any(_group(p[0]) == _group(c) for p in rest):
            continue
        pred = LatencyModel().fit(rest).predict(c, f)
        errors.append({"key": c.key, "measured_ms": ms, "predicted_ms": pred, "error": (pred - ms) / ms})
    within = [abs(e["error"]) <= 0.10 for e in errors]
    return {"n": len(errors), "within_10pct": (sum(within) / len(within)) if within else None,
            "median_abs_error": float(np.median([abs(e["error"]) for e in errors])) if errors else None,
            "points": errors}


def spread_pick(cands: list[Candidate], k: int, rng) -> list[Candidate]:
    """``k`` candidates to measure first: the cheapest and the dearest of each mode and depth (full and thinnest
    width), then random others."""
    picked: dict[str, Candidate] = {}
    for c in cands:
        if all(x == max(c.keep) for x in c.keep) or all(x == min(c.keep) for x in c.keep):
            if len({x for x in c.keep}) == 1:
                picked.setdefault(c.key, c)
    extremes = list(picked.values())
    rest = [c for c in cands if c.key not in picked]
    order = rng.permutation(len(rest)) if rest else []
    out = extremes[:k] + [rest[i] for i in order[: max(0, k - len(extremes))]]
    return out[:max(k, 1)]


__all__ = ["Meter", "LatencyModel", "cv_of", "held_out", "spread_pick", "MAX_CV"]
