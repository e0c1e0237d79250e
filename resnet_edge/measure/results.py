"""The results store: every ``bench`` and ``sweep`` measurement, in one SQLite file (stdlib ``sqlite3``).

The file is ``$RESNET_EDGE_RESULTS``, else ``$XDG_DATA_HOME/resnet-edge/results.sqlite``
(``~/.local/share/resnet-edge/results.sqlite``). It runs in WAL mode with a busy timeout, and each
measurement's rows are added in one ``BEGIN IMMEDIATE`` transaction: several processes can append at
once without losing or doubling a row, and a process killed at any moment leaves the rows of whole
measurements only. A row holds the model's sha256 and name, the target and the device's facts, the
runtime and its version, the setting, the main figures as columns, the whole record as JSON, the time
and the toolkit's version.

A store is marked as ours: SQLite's ``application_id`` (:data:`APPLICATION_ID`) and ``user_version`` (the
schema version, :data:`SCHEMA_VERSION`). A database without the mark is adopted only when its tables are
exactly ours; any other database is refused in one line and left as it was. Reading never writes: a query
opens the file read-only (a read-only file or folder can still be queried) and a missing store reads as
empty. A writer waits a bounded time for another (``$RESNET_EDGE_STORE_WAIT`` seconds, default 10), then
fails in one line (:class:`StoreError`), as it does on a full disk; the transaction is rolled back, so the
store stays whole.

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
WAIT_ENV = "RESNET_EDGE_STORE_WAIT"
#: "rEdg": SQLite's application_id of a resnet-edge results store.
APPLICATION_ID = int.from_bytes(b"rEdg", "big")
SCHEMA_VERSION = 1
TEXT_COLUMNS = ("measured_at", "toolkit_version", "model_sha256", "model_name", "target", "target_url", "device",
                "runtime", "runtime_version", "setting", "setting_key", "record")
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


class StoreError(ConfigError):
    """A results store that cannot be read or written (not ours, damaged, locked, a full disk): one line."""


#: The results table's columns, in order.
COLUMNS = ("id", *(c for c in TEXT_COLUMNS if c != "record"), *FIGURES, "record")


def _wait() -> float:
    from resnet_edge.io import env_seconds

    return env_seconds(WAIT_ENV, 10.0, 3600.0)


class Store:
    """One results file. Use as a context manager, or call :meth:`close`. ``write=False`` opens it
    read-only (and a missing file as an empty store, creating nothing)."""

    def __init__(self, file: str | None = None, *, write: bool = True):
        from resnet_edge.ui import safe_text

        self.path = file or path()
        self.write = write
        self.shown = safe_text(self.path, 200)
        self.db = None
        self._check_file()
        if not write and not os.path.exists(self.path):
            return  # nothing stored yet: reading creates nothing
        wait = _wait()
        try:
            if write:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=wait, isolation_level=None)
            else:
                self.db = self._read_only(wait)
            self.db.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            self._adopt()
            if write:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot open the results store {self.shown}: {_why(exc)} (--store or {ENV} names another "
                             "file)") from None
        except BaseException:
            self.close()
            raise

    def _check_file(self) -> None:
        """A store is a regular file (a FIFO would block SQLite's open, a device is not a database)."""
        import stat

        from resnet_edge.io import file_kind, mode_of

        mode = mode_of(self.path, follow=True, doing="read the results store")
        if mode is not None and not stat.S_ISREG(mode):
            raise StoreError(f"the results store {self.shown} is {file_kind(mode)}, not a database file: give "
                             f"another --store (or set {ENV})")

    def _read_only(self, wait: float) -> sqlite3.Connection:
        """Open without writing anything; a store in a read-only folder whose WAL index cannot be made is
        opened immutable (what it holds on disk)."""
        import urllib.parse

        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=wait, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=wait, isolation_level=None)

    def _adopt(self) -> None:
        """Check that this database is a store of ours; mark a new one (and adopt an unmarked one whose
        tables are exactly ours) when writing."""
        app = self.db.execute("PRAGMA application_id").fetchone()[0]
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        objects = {(t, n) for t, n in self.db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE "
                                                      "'sqlite_%'")}
        ours = {("table", "results"), ("index", "results_key"), ("index", "results_time")}
        columns = [r[1] for r in self.db.execute("PRAGMA table_info(results)")] if ("table", "results") in objects else []
        if app not in (0, APPLICATION_ID):
            raise StoreError(f"{self.shown} is another program's database (application id {app:#x}), not a resnet-edge "
                             f"results store; give another --store (or set {ENV})")
        if app == APPLICATION_ID and version > SCHEMA_VERSION:
            raise StoreError(f"the results store {self.shown} was written by a newer resnet-edge (schema {version}, this "
                             f"one reads {SCHEMA_VERSION}): upgrade resnet-edge, or give another --store")
        if objects and (objects != ours or tuple(columns) != COLUMNS):
            names = ", ".join(sorted(n for _, n in objects))[:200]
            if app == APPLICATION_ID:
                raise StoreError(f"{self.shown} is a damaged resnet-edge results store (it holds {names}, or its "
                                 f"columns are not ours): move it away, or give another --store (or set {ENV})")
            raise StoreError(f"{self.shown} is not a resnet-edge results store (it holds {names}) and is left as it "
                             f"is: give another --store (or set {ENV})")
        if not self.write:
            return
        if not objects or app == 0 or version < SCHEMA_VERSION:
            with self._transaction():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    @contextlib.contextmanager
    def _transaction(self):
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the results store {self.shown}: {_why(exc)}") from None
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot write the results store {self.shown}: {_why(exc)}; nothing was added") from None
            raise

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
        columns = COLUMNS[1:]  # all but the id, in the order of each row above
        with self._transaction():
            self.db.executemany(f"INSERT INTO results ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                rows)
        return len(rows)

    def has(self, model_sha256: str, target: str, setting: dict) -> bool:
        if self.db is None:
            return False
        try:
            row = self.db.execute("SELECT 1 FROM results WHERE model_sha256 = ? AND target = ? AND setting_key = ? "
                                  "LIMIT 1", (model_sha256, target, setting_key(setting))).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the results store {self.shown}: {_why(exc)}") from None
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
        if self.db is None:
            return []
        sql = f"SELECT {', '.join(COLUMNS)} FROM results" + (" WHERE " + " AND ".join(where) if where else "") + \
            " ORDER BY id"
        if limit:
            sql = f"SELECT * FROM ({sql.replace(' ORDER BY id', ' ORDER BY id DESC')} LIMIT {int(limit)}) ORDER BY id"
        try:
            cursor = self.db.execute(sql, args)
            return [_plain(dict(zip(COLUMNS, row))) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the results store {self.shown}: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if "locked" in text or "busy" in text:
        return f"{text}: another process holds it (waited {_wait():g} s; set {WAIT_ENV} to wait longer)"
    return text


def _plain(row: dict) -> dict:
    """A row as the readers expect it, whatever another writer put in it: text columns text (escaped later),
    figures finite numbers or None."""
    import math

    for key in TEXT_COLUMNS:
        v = row.get(key)
        if isinstance(v, (bytes, memoryview)):
            row[key] = bytes(v).decode("utf-8", errors="replace")
        elif v is None:
            row[key] = "" if key not in ("runtime", "runtime_version") else None
        elif not isinstance(v, str):
            row[key] = str(v)
    for key in FIGURES:
        v = row.get(key)
        row[key] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    return row


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
    try:
        return when.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds")
    except OverflowError:
        raise ConfigError(f"--since {text!r} is outside the calendar once moved to UTC; give a date between the years 1 "
                          "and 9999") from None


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
