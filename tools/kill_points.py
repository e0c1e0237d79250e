"""kill -9 at random and at aimed moments of `train`, `qat`, `prune` and `convert`, then check the debris.

For each command the uninterrupted run is made first (the reference). Then, for each kill point, the
command starts again in a fresh folder (for `qat`, `prune` and `convert`: a copy of the inputs) and
gets SIGKILL either at a random moment of its expected duration or *aimed*: the instant the k-th new
file or change appears in its output folder (a temporary file, a journal, a checkpoint, a model). After
each kill:

* its children must be gone (they die with their parent);
* once the folder is recovered as the next run would (:func:`resnet_edge.io.recover`), no temporary
  file is left, and every model with a manifest matches it (no half-written pair);
* its private temporary folder (TensorFlow's autograph files) is swept by the next run;
* the command run again (`train --resume` when a checkpoint exists) must reach the reference result:
  bit-identical weights for `train`, the same sha256 for `convert`, and for `qat`/`prune` the same
  weights where training is deterministic (reported, not required: tfmot's ops are not bit-reproducible
  across processes on every CPU).

    python tools/kill_points.py --points 8              # 8 kill points per command (half random, half aimed)
    python tools/kill_points.py --commands train,convert --points 16 --seed 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = [sys.executable, "-m", "resnet_edge"]


def commands(work: Path, src: Path) -> dict:
    """command name -> (argv builder for an output folder, the artifact that holds the result)."""
    return {
        "train": (lambda out: ["train", "--model", "resnet20", "--epochs", "3", "--batch-size", "64", "--limit", "192",
                               "--out", str(out)], "model.keras"),
        "convert": (lambda out: ["convert", str(src), "--float32", "--int8", "--calibration", "16", "--samples", "20",
                                 "--out", f"{out}/"], "model_int8.tflite"),
        "qat": (lambda out: ["qat", str(src), "--epochs", "1", "--limit", "128", "--out", str(out / "q.h5")], "q.h5"),
        "prune": (lambda out: ["prune", str(src), "--epochs", "1", "--limit", "128", "--out", str(out / "p.keras")],
                  "p.keras"),
    }


def snapshot(folder: Path) -> dict:
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            found[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return found


def descendants(pid: int) -> list[int]:
    kids, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == parent:
                    kids.append(int(entry.name))
                    frontier.append(int(entry.name))
    return kids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except (ProcessLookupError, FileNotFoundError):
        return False


def run_killed(argv: list[str], out: Path, tmp: Path, *, at_seconds: float | None, at_event: int | None) -> dict:
    """Start ``argv``; kill it at ``at_seconds`` or at the ``at_event``-th change in ``out``."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(BASE + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t0, events, seen, kids = time.perf_counter(), 0, snapshot(out), []
    while proc.poll() is None:
        now = snapshot(out)
        events += sum(1 for k, v in now.items() if seen.get(k) != v)
        seen = now
        due = (at_seconds is not None and time.perf_counter() - t0 >= at_seconds) or (at_event is not None and events >= at_event)
        if due:
            kids = descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.002)
    killed = proc.returncode == -signal.SIGKILL
    after = time.perf_counter() - t0
    time.sleep(1.0)  # let the kernel reap; then see which children are left
    return {"killed": killed, "after_s": round(after, 2), "events": events,
            "children_left": [k for k in kids if alive(k)], "pid": proc.pid}


def check(out: Path, killed_pid: int) -> dict:
    from resnet_edge.errors import ResnetEdgeError
    from resnet_edge.io import read_manifest, recover
    from resnet_edge.tflite.integrity import DamagedModelError, verify

    before = sorted(str(p.relative_to(out)) for p in out.rglob(".*"))  # nothing hidden is expected in an output
    for folder in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        recover(folder)
    left = sorted(str(p.relative_to(out)) for p in out.rglob(".*"))
    bad = []
    for model in [p for p in out.rglob("*") if p.suffix in (".tflite", ".keras", ".h5") and not p.name.startswith(".")]:
        if "checkpoints" in model.parts:
            continue
        try:
            read_manifest(model)
            if model.suffix == ".tflite":
                verify(model.read_bytes())
        except (ResnetEdgeError, DamagedModelError) as exc:
            bad.append(f"{model.name}: {exc}")
    return {"temporary_before_recovery": len(before), "temporary_left": left, "inconsistent": bad}


def result_of(name: str, artifact: Path):
    if name == "convert":
        return hashlib.sha256(artifact.read_bytes()).hexdigest()
    from resnet_edge.arch.keras_model import load_model

    return [w.copy() for w in load_model(artifact).get_weights()]


def same(a, b) -> bool:
    if isinstance(a, str):
        return a == b
    import numpy as np

    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def rerun(name: str, argv: list[str], out: Path, tmp: Path) -> int:
    if name == "train" and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("epoch-*/state.json")):
        argv = argv + ["--resume"]
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run(BASE + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env).returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", default="train,convert,qat,prune")
    ap.add_argument("--points", type=int, default=8, help="Kill points per command (half random, half aimed).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("runs/kill_points"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    print("reference: a ResNet-20 on 192 digits, 3 epochs", file=sys.stderr)
    src_run = args.work / "source"
    subprocess.run(BASE + commands(args.work, Path())["train"][0](src_run), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    src = src_run / "model.keras"
    table = commands(args.work, src)
    totals = {"points": 0, "killed": 0, "children_left": 0, "temporary_left": 0, "inconsistent": 0,
              "reached_reference": 0, "rerun_failed": 0, "tmp_not_swept": 0}
    rows = []
    for name in args.commands.split(","):
        build, artifact = table[name]
        ref_out = args.work / f"{name}-reference"
        ref_out.mkdir()
        ref_tmp = args.work / f"{name}-reference-tmp"
        ref_tmp.mkdir()
        watched = run_killed(build(ref_out), ref_out, ref_tmp, at_seconds=None, at_event=None)  # watched, never killed
        duration, events = watched["after_s"], watched["events"]  # changes an uninterrupted run makes
        reference = result_of(name, ref_out / artifact)
        print(f"{name}: uninterrupted {duration:.1f} s, {events} file changes", file=sys.stderr, flush=True)
        for k in range(args.points):
            out, tmp = args.work / f"{name}-{k}", args.work / f"{name}-{k}-tmp"
            out.mkdir()
            tmp.mkdir()
            aimed = k % 2 == 1
            point = (dict(at_seconds=None, at_event=rng.randint(1, max(1, events))) if aimed else
                     dict(at_seconds=rng.uniform(0.5, 0.95 * duration), at_event=None))
            r = run_killed(build(out), out, tmp, **point)
            c = check(out, r["pid"])
            code = rerun(name, build(out), out, tmp) if r["killed"] else 0  # finished before its kill point
            reached = code == 0 and same(result_of(name, out / artifact), reference)
            leftover = [p.name for p in tmp.iterdir() if p.name.startswith(f"resnet-edge-pid{r['pid']}-")]
            row = {"command": name, "point": k, "aimed": aimed, **r, **c, "rerun_exit": code, "reached_reference": reached,
                   "tmp_not_swept": leftover}
            rows.append(row)
            totals["points"] += 1
            totals["killed"] += r["killed"]
            totals["children_left"] += len(r["children_left"])
            totals["temporary_left"] += len(c["temporary_left"])
            totals["inconsistent"] += len(c["inconsistent"])
            totals["reached_reference"] += reached
            totals["rerun_failed"] += code != 0
            totals["tmp_not_swept"] += bool(leftover)
            how = f"after {r['events']} changes" if aimed else f"at {r['after_s']:.1f} s"
            print(f"{name:8} point {k:2} {'aimed ' if aimed else 'random'} {how:18} killed={r['killed']!s:5} "
                  f"temp={c['temporary_before_recovery']}->{len(c['temporary_left'])} inconsistent={len(c['inconsistent'])} "
                  f"children_left={len(r['children_left'])} rerun={code} same_result={reached}", flush=True)
    (args.work / "result.json").write_text(json.dumps({"totals": totals, "rows": rows}, indent=1, default=str))
    print(json.dumps(totals))
    bad = totals["children_left"] or totals["temporary_left"] or totals["inconsistent"] or totals["rerun_failed"] \
        or totals["tmp_not_swept"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
