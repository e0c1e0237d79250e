"""The results store: every ``bench`` and ``sweep`` measurement, in one SQLite file (stdlib ``sqlite3``).

The file is ``$RESNET_EDGE_RESULTS``, else ``$XDG_DATA_HOME/resnet-edge/results.sqlite``
(``~/.local/share/resnet-edge/results.sqlite``). It runs in WAL mode with a busy timeout, and each
measurement's rows are added in one ``BEGIN IMMEDIATE`` transaction: several processes can append at
once without losing or doubling a row, and a process killed at any moment leaves the rows of whole
measurements only. A row holds the model's sha256 and name, the target and the device's facts, the
runtime and its version, the setting, the main figures as columns, the whole record as JSON, the time
and the toolkit's version.

Pure standard library: edge side.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import sqlite3

from resnet_edge.errors import ConfigError

ENV = "RESNET_EDGE_RESULTS"
FIGURES = ("p50_ms", "p90_ms", "avg_ms", "min_ms", "init_ms", "peak_rss_overall_mb")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    measured_at TEXT NOT NULL,
    toolkit_version TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    model_name TEXT NOT NULL,
    target TEXT NOT NULL,
    target_url TEXT NOT NULL,
    device TEXT NOT NULL,
    runtime TEXT,
    runtime_version TEXT,
    setting TEXT NOT NULL,
    setting_key TEXT NOT NULL,
    {", ".join(f"{f} REAL" for f in FIGURES)},
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_key ON results (model_sha256, target, setting_key);
CREATE INDEX IF NOT EXISTS results_time ON results (measured_at);
"""


def path() -> str:
    env = os.environ.get(ENV, "").strip()
    if env:
        return env
    from resnet_edge.io import user_path

    return user_path("data", "results.sqlite")


def setting_key(setting: dict) -> str:
    """The canonical text of a setting: two measurements with the same key measured the same thing."""
    return json.dumps(setting, sort_keys=True, separators=(",", ":"))


class Store:
    """One results file. Use as a context manager, or call :meth:`close`."""

    def __init__(self, file: str | None = None):
        self.path = file or path()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout = 60000")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the results store {self.path}: {exc} (set {ENV} to use another file)") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add(self, records: list[dict], *, target: str, target_url: str, machine: dict | None,
            models: dict[str, str], settings: dict[int, dict]) -> int:
        """Append ``records`` (bench records) in one transaction; ``models`` maps each record's model path to
        its sha256, ``settings`` each record's ``setting_index`` to its setting (as a job dict). Returns
        how many rows were added."""
        from resnet_edge import __version__

        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        rows = []
        for r in records:
            rows.append((now, __version__, models[r["model"]], os.path.basename(str(r["model"])), target, target_url,
                         json.dumps(machine or {}, sort_keys=True), r.get("runtime"), r.get("runtime_version"),
                         r.get("setting") or "", setting_key(settings[r["setting_index"]]),
                         *[r.get(f) if isinstance(r.get(f), (int, float)) else None for f in FIGURES],
                         json.dumps(r, sort_keys=True, default=str)))
        columns = ("measured_at, toolkit_version, model_sha256, model_name, target, target_url, device, runtime, "
                   f"runtime_version, setting, setting_key, {', '.join(FIGURES)}, record")
        with self._transaction():
            self.db.executemany(f"INSERT INTO results ({columns}) VALUES ({', '.join('?' * (12 + len(FIGURES)))})",
                                rows)
        return len(rows)

    def has(self, model_sha256: str, target: str, setting: dict) -> bool:
        row = self.db.execute("SELECT 1 FROM results WHERE model_sha256 = ? AND target = ? AND setting_key = ? LIMIT 1",
                              (model_sha256, target, setting_key(setting))).fetchone()
        return row is not None

    def query(self, *, model: str | None = None, target: str | None = None, since: str | None = None,
              limit: int | None = None) -> list[dict]:
        """Rows, oldest first. ``model``: a name or the start of a sha256 (at least 6 hex digits);
        ``since``: an ISO date or time, or ``7d`` / ``12h`` before now."""
        where, args = [], []
        if model:
            if re.fullmatch(r"[0-9a-f]{6,64}", model):
                where.append("(model_sha256 LIKE ? OR model_name = ?)")
                args += [model + "%", model]
            else:
                where.append("model_name = ?")
                args.append(os.path.basename(model))
        if target:
            where.append("(target = ? OR target_url = ?)")
            args += [target, target]
        if since:
            where.append("measured_at >= ?")
            args.append(parse_since(since))
        sql = "SELECT * FROM results" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql.replace(' ORDER BY id', ' ORDER BY id DESC')} LIMIT {int(limit)}) ORDER BY id"
        cursor = self.db.execute(sql, args)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def parse_since(text: str) -> str:
    """``2026-11-20``, ``2026-11-20T08:00``, ``7d``, ``12h`` or ``30m`` -> an ISO UTC time to compare with."""
    text = text.strip()
    m = re.fullmatch(r"(\d{1,5})([dhm])", text)
    now = datetime.datetime.now(datetime.timezone.utc)
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        return (now - datetime.timedelta(**{unit: int(m.group(1))})).isoformat(timespec="milliseconds")
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: give a date (2026-11-20), a time (2026-11-20T08:00) or an age "
                          "(7d, 12h, 30m)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")


def latest(rows: list[dict]) -> dict[tuple, dict]:
    """The newest row of each (model, target, setting)."""
    out = {}
    for r in rows:
        out[(r["model_sha256"], r["target"], r["setting_key"])] = r
    return out


def compare(rows: list[dict], a: str, b: str) -> dict:
    """Ratios of two models (on the same target and setting) or two targets (same model and setting):
    ``a`` and ``b`` are targets when both are targets in ``rows``, else models (names or sha256 starts)."""
    targets = {r["target"] for r in rows} | {r["target_url"] for r in rows}
    newest = latest(rows)

    def is_model(row, text):
        return row["model_name"] == os.path.basename(text) or (len(text) >= 6 and row["model_sha256"].startswith(text))

    if a in targets and b in targets:
        kind = "target"
        pick_a = {(r["model_sha256"], r["setting_key"]): r for r in newest.values() if a in (r["target"], r["target_url"])}
        pick_b = {(r["model_sha256"], r["setting_key"]): r for r in newest.values() if b in (r["target"], r["target_url"])}
    else:
        kind = "model"
        pick_a = {(r["target"], r["setting_key"]): r for r in newest.values() if is_model(r, a)}
        pick_b = {(r["target"], r["setting_key"]): r for r in newest.values() if is_model(r, b)}
        if not pick_a or not pick_b:
            missing = a if not pick_a else b
            raise ConfigError(f"nothing in the store for {missing!r} as a model or a target: see resnet-edge results")
    pairs = []
    for key in sorted(set(pick_a) & set(pick_b)):
        ra, rb = pick_a[key], pick_b[key]
        pairs.append({"model": ra["model_name"] if kind == "target" else f"{ra['model_name']} / {rb['model_name']}",
                      "target": ra["target"] if kind == "model" else f"{ra['target']} / {rb['target']}",
                      "setting": ra["setting"], "a_p50_ms": ra["p50_ms"], "b_p50_ms": rb["p50_ms"],
                      "ratio": (rb["p50_ms"] / ra["p50_ms"]) if ra["p50_ms"] and rb["p50_ms"] else None})
    if not pairs:
        raise ConfigError(f"{a!r} and {b!r} share no {'model and setting' if kind == 'target' else 'target and setting'} "
                          "in the store: measure both the same way first (resnet-edge sweep)")
    return {"kind": kind, "a": a, "b": b, "pairs": pairs}
