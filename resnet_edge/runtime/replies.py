"""What a device says, checked before anything is printed, stored or computed from it (edge side: numpy).

A device (over SSH or adb) is not trusted: its bench records and setting descriptions are made plain and
bounded (strings escaped for a terminal), every figure must be a number in its range, records must be one
per setting asked for, and a reply may be no larger than the job needs (:func:`reply_limit`). A reply that
fails is :class:`BadReply`, one line naming the field.
"""

from __future__ import annotations

import numpy as np

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.ui import safe_text


class HarnessFailed(ResnetEdgeError):
    """The harness child (here or on a device) failed: its one-line reason."""


#: The fields of a record that resnet-edge sets itself, whatever a device says.
OURS = ("model", "setting", "setting_index", "integrity", "model_bytes", "vs_baseline")


#: Figures of a bench record: from a device they must be numbers in their range (or absent: None).
NUMBER_FIELDS = ("init_ms", "first_inference_ms", "warmup_avg_ms", "avg_ms", "std_ms", "min_ms", "p50_ms", "p90_ms",
                 "p99_ms", "max_ms", "throughput_per_s", "rss_start_mb", "peak_rss_init_mb", "peak_rss_overall_mb",
                 "memory_init_mb", "memory_overall_mb", "count", "runs", "rounds", "warmup_runs", "model_bytes", "threads")
#: What a figure from a device may be: milliseconds up to a day, memory up to 10 TB, growth of memory may
#: be negative (the process gave memory back), counts up to 10^9.
_DAY_MS, _MB = 86_400_000.0, 1e7
RANGES = {**{k: (0.0, _DAY_MS) for k in NUMBER_FIELDS if k.endswith("_ms")},
          **{k: (0.0, _MB) for k in ("rss_start_mb", "peak_rss_init_mb", "peak_rss_overall_mb")},
          "memory_init_mb": (-_MB, _MB), "memory_overall_mb": (-_MB, _MB), "throughput_per_s": (0.0, 1e9),
          "count": (0, 1e9), "runs": (0, 1e9), "rounds": (0, 1e9), "warmup_runs": (0, 1e9), "model_bytes": (0, 1 << 40),
          "threads": (0, 4096)}
#: Text a device describes a setting with: escaped and bounded (:func:`clean`), and never a number or list.
TEXT_FIELDS = ("runtime", "runtime_version", "api", "accelerator", "kernels", "delegate", "input_source", "precision",
               "device_name")


class BadReply(HarnessFailed):
    """A device's reply that is not what was asked: a field of the wrong type or out of range, records
    missing, doubled or not asked for, scores of the wrong shape or not finite."""


def clean(value, depth: int = 0):
    """A device's JSON made plain and bounded: strings escaped for a terminal and cut at 300 characters
    (:func:`~resnet_edge.ui.safe_text`), keys likewise at 100, non-finite numbers None, lists at 10,000 items,
    nesting at 6 levels (deeper is dropped)."""
    if depth > 6:
        return None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 1 << 62 else None
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, str):
        return safe_text(value, 300)
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value[:10_000]]
    if isinstance(value, dict):
        return {safe_text(k, 100): clean(v, depth + 1) for k, v in list(value.items())[:200]}
    return None


def bad_field(what: str, key: str, value) -> BadReply:
    return BadReply(f"{what}: the device's reply is malformed ({key} = {safe_text(repr(value), 60)}): refused; is the "
                    "edge runner on the device this version's, or is the device's runtime broken?")


def clean_record(record, what: str = "the device") -> dict:
    """A bench record or setting description from a device: plain and bounded (:func:`clean`), every figure
    absent (None) or a number in its range (:data:`RANGES`), texts text, ``fully_accelerated`` a bool, the
    weight cache's figures whole; anything else is :class:`BadReply`, naming the field."""
    if not isinstance(record, dict):
        raise bad_field(what, "record", record)
    raw = record
    r = clean(record)
    for key in NUMBER_FIELDS:
        v = raw.get(key)
        if v is None:
            r[key] = None
            continue
        lo, hi = RANGES.get(key, (-1e300, 1e300))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or not lo <= v <= hi:
            raise bad_field(what, key, v)
    for key in TEXT_FIELDS:
        if r.get(key) is not None and not isinstance(r[key], str):
            raise bad_field(what, key, r[key])
    if r.get("fully_accelerated") is not None and not isinstance(r["fully_accelerated"], bool):
        raise bad_field(what, "fully_accelerated", r["fully_accelerated"])
    wc = r.get("weight_cache_init")
    if wc is not None:
        if not isinstance(wc, dict) or not isinstance(wc.get("path"), str) or any(
                wc.get(k) is not None and (isinstance(wc.get(k), bool) or not isinstance(wc.get(k), (int, float))
                                           or not 0 <= wc[k] <= _DAY_MS)
                for k in ("init_without_ms", "init_building_ms")) or "init_without_ms" not in wc:
            raise bad_field(what, "weight_cache_init", wc)
        wc.setdefault("init_building_ms", None)
    times = r.get("times_ms")
    if times is not None and (not isinstance(times, list) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= _DAY_MS for t in times)):
        raise bad_field(what, "times_ms", "a list that is not of times")
    return _string_lists(r, ("notes",))


def clean_machine(machine) -> dict:
    """A device's description of itself: plain, bounded, ``isa`` a list of strings, ``temperature_c`` (before
    and after a bench) zone names with degrees in -50..200 (anything else dropped)."""
    out = _string_lists(clean(machine) if isinstance(machine, dict) else {}, ("isa",))
    heat = out.pop("temperature_c", None)
    if isinstance(heat, dict):
        out["temperature_c"] = {
            when: {k: float(v) for k, v in zones.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and np.isfinite(v) and -50 <= v <= 200}
            for when, zones in heat.items() if when in ("before", "after") and isinstance(zones, dict)}
    return out


def _string_lists(r: dict, keys) -> dict:
    for key in keys:
        if key in r and not (isinstance(r[key], list) and all(isinstance(v, str) for v in r[key])):
            r[key] = []
    return r


def reply_limit(settings: int, runs: int = 0, rounds: int = 1, keep_times: bool = False, extra: int = 0) -> int:
    """The most bytes a device's reply to a job may hold: what the records asked for can take (64 kB a
    record, 32 bytes a kept time) and ``extra``, far below what would cost gigabytes to parse."""
    return (256 << 10) + settings * ((64 << 10) + (32 * runs * rounds if keep_times else 0)) + extra


def device_records(result: dict, settings: int, runs: int, rounds: int, warmup: int, what: str) -> list[dict]:
    """A device's bench records for one model, one per setting asked for, in setting order; each checked
    (:func:`clean_record`) against what was asked: the runs, rounds and warm-up runs, and their count."""
    got = result.get("records")
    if not isinstance(got, list) or len(got) != settings:
        n = len(got) if isinstance(got, list) else safe_text(repr(got), 40)
        raise BadReply(f"{what}: the device's reply holds {n} records for the {settings} setting(s) asked for: refused")
    out: list = [None] * settings
    for raw in got:
        index = raw.get("setting_index") if isinstance(raw, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < settings or out[index] is not None:
            raise BadReply(f"{what}: the device's reply names a setting that was not asked for, or one twice: refused")
        r = clean_record(raw, what)
        for key, asked in (("runs", runs), ("rounds", rounds), ("warmup_runs", warmup), ("count", runs * rounds)):
            if r.get(key) is not None and r[key] != asked:
                raise bad_field(what, key, r[key])
        if r.get("times_ms") is not None and len(r["times_ms"]) > runs * rounds:
            raise bad_field(what, "times_ms", f"{len(r['times_ms'])} times")
        out[index] = r
    return out


def device_setting(result: dict, i: int, n: int, what: str) -> dict:
    """Setting ``i`` of ``n`` as a device's runner described it (checked, plain and bounded: it must name its
    runtime, version and API), and whether it ran emulated."""
    settings = result.get("settings")
    if not isinstance(settings, list) or len(settings) != n:
        raise bad_field(what, "settings", settings if not isinstance(settings, list) else f"{len(settings)} settings")
    described = clean_record(settings[i], what)
    for key in ("runtime", "runtime_version", "api"):
        if not isinstance(described.get(key), str) or not described[key]:
            raise bad_field(what, key, described.get(key))
    described["emulated"] = bool(clean_machine(result.get("machine")).get("emulated"))
    return described
