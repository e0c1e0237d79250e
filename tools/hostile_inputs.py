"""Hostile devices, stores and files through the real `resnet-edge`: every finding of issue 21 as a named case,
plus seeded random variants of each kind, counted per kind.

Kinds: ``outputs`` (device nodes, FIFOs, links and foreign .json beside an --out), ``metadata`` (texts, numbers and
labels files), ``store`` (other programs' databases, damaged stores, odd times), ``devices`` (the devices file),
``ssh`` (replies of a device reached with the real OpenSSH client through a real sshd, whose "runtime Python" is a
script that answers what a hostile device would), ``adb`` (benchmark_model text from a fake device end, read by
the real adb client), ``weights`` (.safetensors and .h5 files) and ``images`` (image folders for eval).

Each case runs the command in its own process with a time limit and is classified:

* ``clean``: refused in exactly one ``Error:`` line with a non-zero exit, or succeeded with a result that its
  check finds right;
* ``traceback``, ``hang``, ``multi-line`` (an error of more than one line, or exit 0 for what must be refused);
* ``silent``: exit 0 with a wrong result (a figure out of range, a raw escape on the terminal, a skipped file not
  counted);
* ``altered``: something that was there before is changed or gone (a device node, another program's database, a
  model whose command failed).

    python tools/hostile_inputs.py                      # named cases + 12 variants a kind (about 10 minutes)
    python tools/hostile_inputs.py --variants 50 --seed 3 --kinds ssh,adb
    python tools/hostile_inputs.py --json               # every case and its outcome

Needs TensorFlow once (one small model is converted at the start), sshd for ``ssh`` and adb for ``adb`` (kinds
whose program is missing are skipped and said so).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("outputs", "metadata", "store", "devices", "ssh", "adb", "weights", "images")
OUTCOMES = ("clean", "traceback", "hang", "multi-line", "silent", "altered")


@dataclasses.dataclass
class Case:
    kind: str
    name: str
    argv: list
    expect: str = "refused"  # "refused", "ok" or "either" (a random variant: clean either way)
    env: dict = dataclasses.field(default_factory=dict)
    check: Callable[[subprocess.CompletedProcess], str | None] | None = None  # what is wrong after exit 0, or None
    intact: Callable[[], str | None] | None = None  # what was altered, or None
    timeout: float = 120


def classify(case: Case, cwd: Path) -> tuple[str, str]:
    argv = [str(a).replace("\0", "\x01") for a in case.argv]  # no command line can hold a NUL byte
    try:
        proc = subprocess.run([sys.executable, "-m", "resnet_edge", *argv], cwd=cwd, capture_output=True,
                              timeout=case.timeout, stdin=subprocess.DEVNULL, env={**os.environ, **case.env})
    except subprocess.TimeoutExpired:
        return "hang", f"no answer within {case.timeout:g} s"
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    altered = case.intact() if case.intact else None
    if "Traceback (most recent call last)" in err:
        return "traceback", err.strip().splitlines()[-1][:200]
    if altered:
        return "altered", altered
    if "\x1b" in out or "\x1b" in err:
        return "silent", "a raw escape sequence reached the terminal"
    if proc.returncode == 0:
        if case.expect == "refused":
            return "multi-line", "exit 0 for what must be refused"
        wrong = case.check(done) if case.check else None
        return ("silent", wrong) if wrong else ("clean", "ok")
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    if case.expect == "ok":
        return "multi-line", (errors[0] if errors else err.strip()[-200:])[:200]
    if len(errors) != 1 or err.split(errors[0], 1)[1].strip():
        return "multi-line", err.strip()[-200:]
    return "clean", errors[0][:200]


# ---------------------------------------------------------------- helpers


def snapshot(path: Path) -> Callable[[], str | None]:
    """A check that ``path`` is still what it is now (kind, and bytes for a regular file)."""
    st = os.lstat(path)
    data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None

    def intact():
        try:
            now = os.lstat(path)
        except FileNotFoundError:
            return f"{path.name} is gone"
        if stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
            return f"{path.name} was replaced by another kind of file"
        if data is not None and path.read_bytes() != data:
            return f"{path.name} was changed"
        return None
    return intact


def all_intact(*checks) -> Callable[[], str | None]:
    return lambda: next((w for w in (c() for c in checks) if w), None)


def escapes(rng: random.Random) -> str:
    return rng.choice(["\x1b[2J", "\x1b]0;owned\x07", "\x9b31m", "\u202e", "\x00", "\r\x1b[K"])


def hostile_value(rng: random.Random):
    return rng.choice([-1, -5.0, -1e30, 1e30, 1e300, "NaN", float("nan"), float("inf"), True, [], {}, None, "fast",
                       escapes(rng), "x" * 5000, 2 ** 63, [1, 2], {"a": 1}])


def no_raw_escapes(proc) -> str | None:
    return "raw escape" if "\x1b" in proc.stdout + proc.stderr else None


# ---------------------------------------------------------------- kinds


def outputs_cases(w: Path, model: Path, rng: random.Random, variants: int) -> list[Case]:
    cases = []
    folder = w / "outputs"
    folder.mkdir()

    def special(name: str, make) -> Path:
        p = folder / name
        make(p)
        return p

    def device(p):
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))

    victim = special("victim.bin", lambda p: p.write_bytes(b"someone else's"))
    makers = {"device": device, "FIFO": os.mkfifo, "symlink": lambda p: p.symlink_to(victim)}
    for command, suffix, args in (("metadata", ".tflite", ["metadata", model, "--author", "A"]),
                                  ("build", ".keras", ["build", "--depth", "20"]),
                                  ("convert", ".tflite", ["convert", "--depth", "20", "--samples", "8"])):
        for what, make in makers.items():
            p = special(f"{what}_{command}{suffix}", make)
            cases.append(Case("outputs", f"{command} --out a {what}", [*args, "--out", p],
                              intact=all_intact(snapshot(p), snapshot(victim)), timeout=300))
    proj = folder / "proj"
    proj.mkdir()
    pkg = proj / "package.json"
    pkg.write_text('{"name": "app"}\n')
    for command, args in (("metadata", ["metadata", model]), ("convert", ["convert", "--depth", "20", "--samples", "8"])):
        cases.append(Case("outputs", f"{command} --out beside a foreign package.json",
                          [*args, "--out", proj / "package.tflite"], intact=snapshot(pkg), timeout=300))
    for i in range(variants):  # a random special file under a random name and suffix, for a random command
        suffix = rng.choice([".tflite", ".keras", ".h5"])
        what = rng.choice(list(makers))
        p = special(f"v{i}_{rng.randrange(1 << 30):x}{suffix}", makers[what])
        args = ["metadata", model] if suffix == ".tflite" and rng.random() < 0.7 else ["build", "--depth", "20"]
        cases.append(Case("outputs", f"variant: {args[0]} --out a {what} ({suffix})", [*args, "--out", p],
                          intact=all_intact(snapshot(p), snapshot(victim)), timeout=300))
    return cases


def metadata_cases(w: Path, model: Path, rng: random.Random, variants: int) -> list[Case]:
    cases = []
    folder = w / "metadata"
    folder.mkdir()

    def copy(name: str) -> Path:
        p = folder / name
        shutil.copy(model, p)
        return p

    named = [("--name non-UTF-8", ["--name", os.fsdecode(b"\xff\xfe")]), ("--author non-UTF-8", ["--author", os.fsdecode(b"\xff")]),
             ("--mean 1e39", ["--mean", "1e39", "--std", "1"]), ("--std 1e-50", ["--mean", "0", "--std", "1e-50"]),
             ("--mean 1e308 --std 1e-308", ["--mean", "1e308", "--std", "1e-308"]),
             ("--std 1e-320", ["--mean", "0", "--std", "1e-320"])]
    for name, args in named:
        m = copy(f"{len(cases)}.tflite")
        cases.append(Case("metadata", f"metadata {name}", ["metadata", m, *args], intact=snapshot(m)))
    for sep in ("\u2028", "\x0c", "\x1c", "\x85", "\u2029"):
        m = copy(f"{len(cases)}.tflite")
        labels = folder / f"labels{len(cases)}.txt"
        names = [f"c{i}" for i in range(10)]
        labels.write_text("\n".join(names[:4] + [names[4] + sep + names[5]] + names[6:]) + "\n", encoding="utf-8")
        cases.append(Case("metadata", f"labels file with {sep!r} inside a line", ["metadata", m, "--labels", labels],
                          intact=snapshot(m)))
    fifo = folder / "labels.fifo"
    os.mkfifo(fifo)
    cases.append(Case("metadata", "labels file is a FIFO", ["metadata", copy("f.tflite"), "--labels", fifo]))
    for i in range(variants):
        m = copy(f"v{i}.tflite")
        choice = rng.randrange(3)
        if choice == 0:  # a random text with random odd characters
            text = "".join(rng.choice(["a", " ", "\n", "\t", escapes(rng), chr(rng.randrange(0x80, 0x3000)),
                                       os.fsdecode(bytes([rng.randrange(0x80, 0x100)]))]) for _ in range(rng.randrange(1, 30)))
            args = [rng.choice(["--name", "--author", "--license", "--description"]), text]
        elif choice == 1:  # random magnitudes
            mean = f"{rng.choice(['', '-'])}{rng.random():.3f}e{rng.randrange(-330, 330)}"
            std = f"{rng.random():.3f}e{rng.randrange(-330, 330)}"
            args = ["--mean", mean, "--std", std]
        else:  # a labels file of 10 names with random separators and control characters
            labels = folder / f"vl{i}.txt"
            names = [f"c{k}" + (escapes(rng) if rng.random() < 0.2 else "") for k in range(10)]
            labels.write_bytes(rng.choice(["\n", "\r\n", "\n\n"]).join(names).encode("utf-8", "surrogatepass"))
            args = ["--labels", labels]
        before = snapshot(m)

        def check(proc, m=m):
            from resnet_edge.tflite.integrity import verify
            from resnet_edge.tflite.inspect import read_standard

            data = m.read_bytes()
            verify(data)
            found = read_standard(data, "m")
            if found and found[3] is not None and len(found[3]) != 10:
                return f"{len(found[3])} labels written for 10 classes"
            return None
        cases.append(Case("metadata", f"variant: metadata {' '.join(a if len(a) < 20 else '...' for a in map(str, args))!r}"[:90],
                          ["metadata", m, *args], expect="either", check=check,
                          intact=lambda before=before, m=m: None if m.exists() else "the model is gone"))
    return cases


def store_cases(w: Path, model: Path, rng: random.Random, variants: int) -> list[Case]:
    from resnet_edge.measure.results import SCHEMA

    cases = []
    folder = w / "store"
    folder.mkdir()

    def foreign(name: str, tables: list[tuple[str, str]]) -> Path:
        p = folder / name
        db = sqlite3.connect(p)
        for t, cols in tables:
            db.execute(f"CREATE TABLE {t} ({cols})")
        db.commit()
        db.close()
        return p

    other = foreign("other_app.sqlite", [("users", "id INTEGER PRIMARY KEY, name TEXT")])
    for args in (["results"], ["results", "--json"], ["results", "--csv"], ["results", "compare", "a", "b"]):
        cases.append(Case("store", f"{' '.join(args)} on another program's database",
                          [args[0], "--store", other, *args[1:]], intact=snapshot(other)))
    cases.append(Case("store", "bench into another program's database", ["bench", model, "--runs", "2", "--store", other],
                      expect="ok", intact=snapshot(other),
                      check=lambda p: None if "warning: not stored" in p.stderr else "no warning"))
    ours = folder / "ours.sqlite"
    db = sqlite3.connect(ours)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO results (measured_at, toolkit_version, model_sha256, model_name, target, target_url, device, "
               "setting, setting_key, record) VALUES (?, '0', 'ab', ?, 'local', 'local', '{}', 'x', 'k', '{}')",
               (b"\x1b[31m", "m\x1b]0;x"))
    db.commit()
    db.close()
    for since in ("0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00"):
        cases.append(Case("store", f"results --since {since}", ["results", "--store", ours, "--since", since]))
    cases.append(Case("store", "a BLOB in measured_at", ["results", "--store", ours], expect="ok", check=no_raw_escapes))
    cut = foreign("cut.sqlite", [("results", "id INTEGER PRIMARY KEY, measured_at TEXT")])
    cases.append(Case("store", "a results table without our columns", ["results", "--store", cut], intact=snapshot(cut)))
    fifo = folder / "fifo.sqlite"
    os.mkfifo(fifo)
    cases.append(Case("store", "the store is a FIFO", ["results", "--store", fifo], timeout=30))
    for i in range(variants):
        p = folder / f"v{i}.sqlite"
        choice = rng.randrange(4)
        if choice == 0:
            p.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 4096))))
            what = "random bytes"
        elif choice == 1:
            cols = ", ".join(f"c{k} {rng.choice(['TEXT', 'REAL', 'BLOB'])}" for k in range(rng.randrange(1, 6)))
            foreign(p.name, [(rng.choice(["results", "data", "t"]), cols)])
            what = "a random schema"
        elif choice == 2:
            db = sqlite3.connect(p)
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA application_id = {rng.randrange(1, 1 << 31)}")
            db.commit()
            db.close()
            what = "our tables under another application id"
        else:
            shutil.copy(ours, p)
            db = sqlite3.connect(p)
            db.execute(f"UPDATE results SET {rng.choice(['p50_ms', 'model_name', 'record', 'device'])} = ?",
                       (rng.choice([b"\xff\x00", -1e308, "\x1b[2J", 10 ** 18]),))
            db.commit()
            db.close()
            what = "odd values in a row"
        args = rng.choice([["results"], ["results", "--json"], ["results", "--csv"], ["results", "--since", "7d"]])
        cases.append(Case("store", f"variant: {' '.join(args)} on {what}", [args[0], "--store", p, *args[1:]],
                          expect="either" if choice == 3 else "refused", check=no_raw_escapes,
                          intact=snapshot(p) if choice != 3 else None))
    return cases


def devices_cases(w: Path, model: Path, rng: random.Random, variants: int) -> list[Case]:
    cases = []
    folder = w / "devices"
    folder.mkdir()
    fifo = folder / "devices.fifo"
    os.mkfifo(fifo)
    for args in (["devices", "list"], ["devices", "add", "pi5", "ssh://pi@host"], ["bench", model, "--target", "pi5"]):
        cases.append(Case("devices", f"{' '.join(map(str, args[:2]))} with the devices file a FIFO", args,
                          env={"RESNET_EDGE_DEVICES": str(fifo)}, timeout=30))
    plain = folder / "d.json"
    env = {"RESNET_EDGE_DEVICES": str(plain)}
    cases.append(Case("devices", "devices add a name ending in a newline", ["devices", "add", "pi\n", "ssh://pi@h"], env=env))
    cases.append(Case("devices", "devices add ssh://[::1;touch]:22", ["devices", "add", "x", "ssh://[::1;touch]:22"], env=env))
    damaged = folder / "damaged.json"
    damaged.write_text(json.dumps({"version": 1, "devices": {"ok": {"url": "ssh://pi@h"},
                                                             "bad": {"url": "ssh://[::1;touch]:22"}}}))
    denv = {"RESNET_EDGE_DEVICES": str(damaged)}
    cases.append(Case("devices", "devices list with a damaged entry", ["devices", "list"], env=denv, expect="ok",
                      check=lambda p: None if "DAMAGED" in p.stdout else "the damaged entry is not shown"))
    cases.append(Case("devices", "bench --target a damaged entry", ["bench", model, "--target", "bad"], env=denv))
    for i in range(variants):
        p = folder / f"v{i}.json"
        url = list("ssh://pi@raspberrypi.local:22")
        for _ in range(rng.randrange(1, 4)):
            url.insert(rng.randrange(len(url)), rng.choice(list("[]@:;$`'\" /?#%\n\x1b-")))
        entry = rng.choice([{"url": "".join(url)}, {"url": 5}, "x", {"url": "ssh://h", "note": hostile_value(rng)},
                            {"url": "".join(url), "note": escapes(rng)}])
        name = rng.choice(["pi", "pi\n", "-oProxy", "a" * 70, "p" + escapes(rng), "ok"])
        try:
            p.write_text(json.dumps({"version": 1, "devices": {name: entry}}))
        except ValueError:
            p.write_text(json.dumps({"version": 1, "devices": {name: str(entry)}}))
        args = rng.choice([["devices", "list"], ["devices", "add", "new", "ssh://pi@h"], ["bench", model, "--target", name],
                           ["devices", "remove", name]])
        before = snapshot(p)
        cases.append(Case("devices", f"variant: {args[0]} {args[1] if len(args) > 1 else ''} on a random entry", args,
                          env={"RESNET_EDGE_DEVICES": str(p)}, expect="either", check=no_raw_escapes, timeout=30,
                          intact=None if args[1] in ("add", "remove") else before))
    return cases


GOOD = {"setting_index": 0, "p50_ms": 1.0, "avg_ms": 1.0, "min_ms": 0.9, "count": 5, "runs": 5, "rounds": 1,
        "warmup_runs": 0, "runtime": "litert", "runtime_version": "2.3.0", "api": "interpreter", "init_ms": 3.0}


def _script(path: Path, reply) -> Path:
    body = reply if isinstance(reply, str) else json.dumps({"result": reply})
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\nsys.stdout.write({body!r} + '\\n')\n")
    path.chmod(0o755)
    return path


def _bench_right(proc) -> str | None:
    """What is wrong with a bench --json that a device answered (figures out of range, fields it overrode)."""
    try:
        out = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    except ValueError:
        return "no JSON"
    for r in out["records"]:
        for k, v in r.items():
            if k.endswith(("_ms", "_mb")) and isinstance(v, (int, float)) and not k.startswith("memory_") and v < 0:
                return f"{k} = {v} printed"
        if r.get("setting") != "xnnpack" or r.get("integrity") not in ("verified", "unverified"):
            return "the device overrode the setting or the integrity"
    if len(out["records"]) != 1:
        return f"{len(out['records'])} records for one setting"
    return None


def ssh_cases(w: Path, model: Path, rng: random.Random, variants: int, sshd) -> list[Case]:
    cases = []
    folder = w / "ssh"
    folder.mkdir()
    env = {"RESNET_EDGE_SSH_CONFIG": str(sshd.config), "RESNET_EDGE_RESULTS": str(folder / "r.sqlite")}
    url = lambda script: f"{sshd.url}/?python={script}"  # noqa: E731
    named = {
        "no peak_rss_init_mb, with overall": {"records": [{**GOOD, "peak_rss_overall_mb": 10.0}]},
        "peak_rss_init_mb a string": {"records": [{**GOOD, "peak_rss_init_mb": "lots"}]},
        "weight_cache_init a string": {"records": [{**GOOD, "weight_cache_init": "x"}]},
        "weight_cache_init incomplete": {"records": [{**GOOD, "weight_cache_init": {"path": "p"}}]},
        "records: 5": {"records": 5},
        "negative p50": {"records": [{**GOOD, "p50_ms": -5.0}]},
        "negative memory": {"records": [{**GOOD, "peak_rss_overall_mb": -3.0}]},
        "setting and integrity overridden": {"records": [{**GOOD, "setting": "gpu", "integrity": "verified!"}]},
        "duplicate records": {"records": [GOOD] * 3},
        "5,000 duplicate records": {"records": [GOOD] * 5000},
        "accelerator with escapes": {"records": [{**GOOD, "accelerator": "\x1b[2J", "fully_accelerated": True}]},
        "a 20 MB reply of []": "[]," * (7 << 20),
    }
    for name, reply in named.items():
        ok = name in ("no peak_rss_init_mb, with overall", "accelerator with escapes", "setting and integrity overridden")
        cases.append(Case("ssh", f"bench reply: {name}", ["bench", model, "--runs", "5", "--warmup", "0", "--json",
                                                          "--target", url(_script(folder / f"n{len(cases)}", reply))],
                          env=env, expect="ok" if ok else "refused", check=_bench_right, timeout=120))
    settings_named = {"settings [{}]": [{}], "settings a string": "x",
                      "a setting without runtime_version": [{"runtime": "litert", "api": "interpreter"}]}
    for name, settings in settings_named.items():
        script = folder / f"e{len(cases)}"
        script.write_text(f"#!{sys.executable}\nimport json, sys\nimport numpy as np\njob = json.load(sys.stdin)\n"
                          "n = np.load('x.npy').shape[0]\nnp.save(job['outputs'][0], np.full((n, 10), .1, np.float32))\n"
                          f"print(json.dumps({{'result': {{'machine': {{}}, 'settings': {settings!r}}}}}))\n")
        script.chmod(0o755)
        cases.append(Case("ssh", f"eval reply: {name}", ["eval", model, "--limit", "20", "--target", url(script)], env=env))
    for name, scores in (("scores of shape (20, 10, 1)", "np.full((n, 10, 1), .1, np.float32)"),
                         ("NaN scores", "np.full((n, 10), np.nan, np.float32)"),
                         ("3-column scores", "np.full((n, 3), .1, np.float32)")):
        script = folder / f"s{len(cases)}"
        script.write_text(f"#!{sys.executable}\nimport json, sys\nimport numpy as np\njob = json.load(sys.stdin)\n"
                          f"n = np.load('x.npy').shape[0]\nnp.save(job['outputs'][0], {scores})\n"
                          "print(json.dumps({'result': {'machine': {}, 'settings': [{'runtime': 'litert', "
                          "'runtime_version': '2.3', 'api': 'interpreter'}]}}))\n")
        script.chmod(0o755)
        cases.append(Case("ssh", f"eval reply: {name}", ["eval", model, "--limit", "20", "--target", url(script)], env=env))
    for name, labels, skipped in (("empty labels.npy", "np.zeros(0, np.int64)", 0),
                                  ("skipped -1000", "np.zeros(4, np.int64)", -1000),
                                  ("skipped 1e30", "np.zeros(4, np.int64)", 1e30),
                                  ("skipped true", "np.zeros(4, np.int64)", True)):
        script = folder / f"f{len(cases)}"
        script.write_text(f"#!{sys.executable}\nimport json, sys\nimport numpy as np\njob = json.load(sys.stdin)\n"
                          f"y = {labels}\nnp.save(job['labels_out'], y)\n"
                          "[np.save(o, np.full((len(y), 10), .1, np.float32)) for o in job['outputs']]\n"
                          "print(json.dumps({'result': {'machine': {}, 'classes': [str(i) for i in range(10)], "
                          f"'images': len(y), 'skipped': {skipped!r}, 'settings': [{{'runtime': 'litert', "
                          "'runtime_version': '2.3', 'api': 'interpreter'}]}}))\n")
        script.chmod(0o755)
        cases.append(Case("ssh", f"device-folder reply: {name}", ["eval", model, "--data", "device-folder:/x",
                                                                   "--target", url(script)], env=env))
    keys = list(GOOD) + ["peak_rss_overall_mb", "p90_ms", "accelerator", "kernels", "fully_accelerated", "notes",
                         "weight_cache_init", "times_ms", "setting", "integrity"]
    for i in range(variants):
        record = dict(GOOD)
        for _ in range(rng.randrange(1, 4)):
            record[rng.choice(keys)] = hostile_value(rng)
        reply = {"machine": rng.choice([{}, {"cpu": escapes(rng)}, {"isa": 5}, "x"]),
                 "records": rng.choice([[record], [record, record], record, [record] * rng.randrange(0, 3)])}
        text = json.dumps({"result": reply}, allow_nan=True)
        cases.append(Case("ssh", "variant: bench reply with hostile fields",
                          ["bench", model, "--runs", "5", "--warmup", "0", "--json",
                           "--target", url(_script(folder / f"v{i}", text))], env=env, expect="either",
                          check=_bench_right))
    return cases


def adb_cases(w: Path, model: Path, rng: random.Random, variants: int) -> tuple[list[Case], Callable[[], None]]:
    from tests.fake_adbd import FakeDevice

    real = (ROOT / "tests" / "data" / "benchmark_model" / "mi11_cpu_fp32.txt").read_text()
    binary = w / "benchmark_model"
    binary.write_bytes(b"\x7fELF stands in for benchmark_model")
    phones: list = []

    def case(name: str, text: str, expect: str) -> Case:
        phone = FakeDevice("device", text)
        phones.append(phone)
        subprocess.run(["adb", "connect", phone.serial], capture_output=True, timeout=30)
        args = ["bench", model, "--target", f"adb://{phone.serial}", "--benchmark-binary", binary, "--runs", "50",
                "--json", "--no-store"]

        def check(proc):
            wrong = _bench_right(proc)
            return None if wrong == "the device overrode the setting or the integrity" else wrong
        return Case("adb", name, args, expect=expect, check=check, timeout=120)

    cases = [case("benchmark_model text as a phone prints it", real, "ok"),
             case("text cut off after the timings", real[:len(real) // 3], "either"),
             case("text cut off before the timings", real[:60], "refused"),
             case("text full of escape sequences", real.replace("\n", "\x1b[2J\x1b]0;x\x07\n"), "either"),
             case("a negative figure", real.replace("Inference (avg): ", "Inference (avg): -"), "either"),
             case("NaN figures", real.replace("avg=", "avg=nan "), "either"),
             case("an absurd figure", real.replace("Inference (avg): ", "Inference (avg): 1e300 "), "refused"),
             case("2 MB of text", real + "x" * (2 << 20), "refused")]
    for _ in range(variants):
        text = list(real)
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(text))
            op = rng.randrange(4)
            if op == 0:
                text = text[:at]
            elif op == 1:
                text[at:at] = list(rng.choice(["-", "nan", "1e300", "e", escapes(rng), "\n", "count=7 "]))
            elif op == 2:
                text[at:at] = text[at:at + rng.randrange(1, 200)] * rng.randrange(2, 50)
            elif text:
                text[at] = rng.choice("0123456789.-e")
        cases.append(case("variant: benchmark_model text edited at random", "".join(text) or "x", "either"))

    def close():
        for phone in phones:
            subprocess.run(["adb", "disconnect", phone.serial], capture_output=True, timeout=30)
            phone.close()
    return cases, close


def keras_h5(path: Path, make) -> Path:
    """A Keras Applications-like weights file whose one dataset (conv1_conv/kernel:0) ``make(file, group)`` makes."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1_conv"]
        g = f.create_group("conv1_conv")
        g.attrs["weight_names"] = [b"conv1_conv/kernel:0"]
        make(f, g.create_group("conv1_conv"))
    return path


def hostile_h5(folder: Path, secret: Path) -> dict[str, tuple[Path, str]]:
    """The .h5 files of issue 21 whose data is not inside them, in ``folder``: {what: (path, what the refusal
    says)}. ``secret``: the file external storage points at."""
    import h5py

    other = keras_h5(folder / "other.h5", lambda f, g: g.create_dataset("kernel:0", data=np.ones(10, np.float32)))

    def virtual(f, g):
        layout = h5py.VirtualLayout(shape=(10,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "conv1_conv/conv1_conv/kernel:0", shape=(10,))
        g.create_virtual_dataset("kernel:0", layout)

    makers = {
        "external raw storage pointing at /etc/passwd-like data": (lambda f, g: g.create_dataset(
            "kernel:0", shape=(64,), dtype="u1", external=[(str(secret), 0, 64)]), "external file"),
        "a virtual dataset into another file": (virtual, "virtual dataset"),
        "an external link": (lambda f, g: g.__setitem__("kernel:0", h5py.ExternalLink(str(other), "/conv1_conv")),
                             "external link"),
        "a soft-link loop": (lambda f, g: g.__setitem__("kernel:0", h5py.SoftLink("/conv1_conv/conv1_conv/kernel:0")),
                             "soft link"),
    }
    return {name: (keras_h5(folder / f"hostile{i}.h5", make), says) for i, (name, (make, says)) in enumerate(makers.items())}


def weights_cases(w: Path, model: Path, rng: random.Random, variants: int) -> list[Case]:
    from safetensors.numpy import save_file

    from tests.torchvision_reference import random_state_dict

    cases = []
    folder = w / "weights"
    folder.mkdir()
    out = folder / "never.keras"
    secret = folder / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 40)

    for name, (path, _) in hostile_h5(folder, secret).items():
        cases.append(Case("weights", f".h5 with {name}", ["build", "--weights", path, "--out", out]))
    sd = random_state_dict(18, classes=3)

    def st(name: str, state=None, raw: bytes | None = None) -> Path:
        p = folder / name
        if raw is not None:
            p.write_bytes(raw)
        else:
            save_file(state, str(p))
        return p

    many = json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(1_000_000)}).encode()
    zero = {**sd, "fc.weight": np.zeros((2_000_000, 0), np.float32), "fc.bias": np.zeros(1, np.float32)}
    for name, p in {
        "1M zero-size tensors": st("many.safetensors", raw=struct.pack("<Q", len(many)) + many),
        "a 99.9 MB header": st("header.safetensors", raw=struct.pack("<Q", 99_900_000) + b"{" + b" " * 4096),
        "fc.weight of [2000000, 0]": st("zero.safetensors", zero),
        "NaN in a BatchNorm": st("nan.safetensors", {**sd, "bn1.running_var": np.full(64, np.nan, np.float32)}),
        "an extra tensor": st("extra.safetensors", {**sd, "layer1.0.se.weight": np.zeros(4, np.float32)}),
        "a missing tensor": st("missing.safetensors", {k: v for k, v in sd.items() if k != "layer3.1.bn2.weight"}),
    }.items():
        cases.append(Case("weights", f".safetensors with {name}", ["build", "--weights", p, "--out", out],
                          env={"RESNET_EDGE_CHILD_MEMORY_MB": "800"}, timeout=60))
    cases.append(Case("weights", "train from a NaN file leaves no folder",
                      ["train", "--weights", folder / "nan.safetensors", "--data", f"folder:{w / 'images' / 'base'}",
                       "--out", folder / "run"], intact=lambda: "the run folder was made" if (folder / "run").exists()
                      else None))
    names = [k for k in sd if not k.endswith("num_batches_tracked")]  # a file may leave those out (timm's do)
    for i in range(variants):
        state = dict(sd)
        key = rng.choice(names)
        out = folder / f"never{i}.keras"
        op = rng.randrange(5)
        if op == 0:
            state[key] = state[key].astype(rng.choice([np.int32, np.int8]))
        elif op == 1:
            state[key] = np.zeros(tuple(d + rng.randrange(1, 3) for d in state[key].shape) or (2,), np.float32)
        elif op == 2:
            state[f"{key}.x{i}"] = np.zeros(3, np.float32)
        elif op == 3:
            del state[key]
        else:
            v = np.array(state[key], np.float32)
            v.reshape(-1)[rng.randrange(v.size)] = rng.choice([np.nan, np.inf, -np.inf])
            state[key] = v
        p = st(f"v{i}.safetensors", state)
        raw = bytearray(p.read_bytes())
        if rng.random() < 0.3:  # and sometimes a flipped byte in the header
            n = struct.unpack("<Q", raw[:8])[0]
            raw[8 + rng.randrange(n)] ^= 1 << rng.randrange(8)
            p.write_bytes(bytes(raw))
        cases.append(Case("weights", f"variant: .safetensors with {['a wrong dtype', 'a wrong shape', 'an extra tensor', 'a missing tensor', 'a non-finite value'][op]}",
                          ["build", "--weights", p, "--out", out], timeout=60,
                          intact=lambda out=out: "a model was written" if out.exists() else None))
    return cases


def digit_folders(root: Path, digits, per_class: int = 2) -> Path:
    """train/, val/ and test/ folders of real digit images (a class folder per digit, PNG files)."""
    from PIL import Image

    for split in ("train", "val", "test"):
        for c in range(10):
            (root / split / str(c)).mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(digits.test.y == c)[:per_class]:
                Image.fromarray(digits.test.x[i]).save(root / split / str(c) / f"{i}.png")
    return root


def png(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG whose header states ``width`` x ``height`` (RGB, 8 bits), with ``body`` chunks."""
    import zlib

    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + body +
            chunk(b"IEND", b""))


def bomb() -> bytes:
    """A real 13000 x 13000 PNG of about 0.5 MB (500 MB once decoded)."""
    import zlib

    raw = zlib.compress(b"\0" * (13000 * 3 + 1) * 13000, 9)
    return png(13000, 13000, struct.pack(">I", len(raw)) + b"IDAT" + raw + struct.pack(">I", zlib.crc32(b"IDAT" + raw)))


def images_cases(w: Path, model: Path, rng: random.Random, variants: int) -> list[Case]:
    from resnet_edge.data import load

    digits = load("digits")
    base = w / "images" / "base"

    def folder(root: Path, per_class: int = 2) -> Path:
        return digit_folders(root, digits, per_class)

    folder(base, 12)
    the_bomb = bomb()
    good = next((base / "test" / "3").glob("*.png")).read_bytes()

    def bad_files(root: Path, kinds: list[str]) -> int:
        for k, kind in enumerate(kinds):
            d = root / "test" / str(k % 10)
            p = d / f"bad{k}.png"
            if kind == "dev-zero link":
                p.symlink_to("/dev/zero")
            elif kind == "FIFO":
                os.mkfifo(p)
            elif kind == "bomb":
                p.write_bytes(the_bomb)
            elif kind == "cut":
                p.write_bytes(good[:rng.randrange(20, len(good) - 20)])
            elif kind == "random bytes":
                p.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))))
            elif kind == "empty":
                p.write_bytes(b"")
            elif kind == "broken link":
                p.symlink_to(root / "nowhere.png")
            elif kind == "huge header":
                p.write_bytes(png(rng.randrange(10_001, 1 << 20), rng.randrange(10_001, 1 << 20)))
        return len(kinds)

    def expect_skipped(n: int):
        def check(proc):
            try:
                rep = json.loads(proc.stdout)
            except ValueError:
                return "no JSON"
            if rep.get("skipped") != n:
                return f"{rep.get('skipped')} skipped for {n} unreadable files"
            return None
        return check

    cases = []
    for name, kinds in (("a link to /dev/zero", ["dev-zero link"]), ("a FIFO", ["FIFO"]),
                        ("a 13000 x 13000 PNG of 164 kB", ["bomb"]), ("a truncated image", ["cut"])):
        root = folder(w / "images" / f"n{len(cases)}")
        n = bad_files(root, kinds)
        cases.append(Case("images", f"eval on a folder with {name}", ["eval", model, "--data", f"folder:{root}", "--json"],
                          expect="ok", check=expect_skipped(n), timeout=120))
        cases.append(Case("images", f"eval --strict on a folder with {name}", ["eval", model, "--data", f"folder:{root}",
                                                                                "--strict"], timeout=120))
    pool = ["dev-zero link", "FIFO", "bomb", "cut", "random bytes", "empty", "broken link", "huge header"]
    for i in range(variants):
        root = folder(w / "images" / f"v{i}")
        n = bad_files(root, [rng.choice(pool) for _ in range(rng.randrange(1, 6))])
        cases.append(Case("images", "variant: eval on a folder with random unreadable files",
                          ["eval", model, "--data", f"folder:{root}", "--json"], expect="ok", check=expect_skipped(n),
                          timeout=120))
    return cases


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", type=int, default=12, help="Random variants per kind.")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="hostile-inputs-"))
    closers = []
    results = []
    try:
        model = work / "m_float32.tflite"
        proc = subprocess.run([sys.executable, "-m", "resnet_edge", "convert", "--model", "resnet20", "--samples", "8",
                               "--out", model], capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 2
        cases: list[Case] = []
        (work / "images").mkdir()
        for kind in ("images", *[k for k in kinds if k != "images"]):  # the image folders are used by weights too
            if kind not in KINDS:
                print(f"unknown kind {kind}", file=sys.stderr)
                return 2
            if kind == "images" and "images" not in kinds and "weights" not in kinds:
                continue
            if kind == "ssh":
                from tests.sshd import SSHD, Server

                if not SSHD:
                    print("ssh: skipped (no sshd)", file=sys.stderr)
                    continue
                server = Server(work / "sshd")
                closers.append(server.stop)
                cases += ssh_cases(work, model, rng, args.variants, server)
            elif kind == "adb":
                if not shutil.which("adb"):
                    print("adb: skipped (no adb)", file=sys.stderr)
                    continue
                more, close = adb_cases(work, model, rng, args.variants)
                closers.append(close)
                cases += more
            else:
                made = globals()[f"{kind}_cases"](work, model, rng, args.variants)
                if kind in kinds:
                    cases += made
        started = time.monotonic()
        for i, case in enumerate(cases):
            outcome, detail = classify(case, work)
            results.append({"kind": case.kind, "case": case.name, "outcome": outcome, "detail": detail})
            if not args.json:
                from resnet_edge.ui import safe_text

                mark = "ok    " if outcome == "clean" else "DEFECT"
                print(f"{mark} {i + 1:4}/{len(cases)} {case.kind:<8} {safe_text(case.name, 70):<70} {outcome:<10} "
                      f"{safe_text(detail, 110)}", flush=True)
        summary = []
        for kind in KINDS:
            mine = [r for r in results if r["kind"] == kind]
            if not mine:
                continue
            row = {"kind": kind, "cases": len(mine), "named": sum(not r["case"].startswith("variant") for r in mine)}
            row.update({o: sum(r["outcome"] == o for r in mine) for o in OUTCOMES})
            summary.append(row)
        if args.json:
            print(json.dumps({"seed": args.seed, "variants": args.variants, "summary": summary, "cases": results}, indent=1))
        else:
            from resnet_edge.ui import table

            print()
            print(table(summary, [("kind", "kind"), ("cases", "cases"), ("named", "named"), ("clean", "clean errors/ok"),
                                  ("traceback", "tracebacks"), ("hang", "hangs"), ("multi-line", "multi-line"),
                                  ("silent", "silent wrong"), ("altered", "data altered")],
                        right={"cases", "named", "clean", "traceback", "hang", "multi-line", "silent", "altered"}))
            print(f"{len(results)} cases in {time.monotonic() - started:.0f} s (seed {args.seed})")
        return 1 if any(r["outcome"] != "clean" for r in results) else 0
    finally:
        for close in closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - cleanup of test servers
                pass
        subprocess.run(["find", str(work), "-type", "p", "-delete"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
