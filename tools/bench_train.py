#!/usr/bin/env python
"""Benchmark of the training recipe: ResNet-20 on the bundled digits (figures, not a test).

Runs `resnet-edge train` twice as a user would: once straight through, once killed with SIGKILL after
a checkpoint and resumed with --resume. Reports test accuracy (goal: >= 97% within 15 epochs),
seconds per epoch on this machine, and how far the resumed run is from the uninterrupted one.

    python tools/bench_train.py --epochs 15 --kill-after 7 --out runs/bench_train
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_edge", *args], capture_output=True, text=True, cwd=ROOT)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="resnet20", show_default=True)
@click.option("--data", "source", default="digits", show_default=True)
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--kill-after", type=int, default=7, show_default=True, help="SIGKILL the second run once this epoch's checkpoint exists.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench_train", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(model, source, epochs, kill_after, out, as_json):
    import numpy as np

    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.data import load
    from resnet_edge.evaluate import evaluate
    from resnet_edge.ui import key_values

    out = Path(out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    common = ["train", "--model", model, "--data", source, "--epochs", str(epochs)]

    t0 = time.perf_counter()
    full = cli(*common, "--out", str(out / "full"))
    wall_full = time.perf_counter() - t0
    if full.returncode:
        sys.exit(full.stderr)

    killed = out / "killed"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "resnet_edge", *common, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    marker = killed / "checkpoints" / f"epoch-{kill_after:04d}"
    while not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = cli("train", "--resume", "--out", str(killed))
    wall_killed = time.perf_counter() - t0
    if resumed.returncode:
        sys.exit(resumed.stderr)

    data = load(source)
    acc_full = evaluate(out / "full" / "model.keras", data)["top1"]
    acc_resumed = evaluate(killed / "model.keras", data)["top1"]
    acc_best = evaluate(out / "full" / "best.keras", data)["top1"]
    wa = load_model(out / "full" / "model.keras").get_weights()
    wb = load_model(killed / "model.keras").get_weights()
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(wa, wb))
    hist = json.loads((out / "full" / "history.json").read_text())
    hist_r = json.loads((killed / "history.json").read_text())
    per_epoch = [h["seconds"] for h in hist]
    result = {
        "model": model, "data": source, "epochs": epochs, "cpu_count": os.cpu_count(),
        "test_top1_final": acc_full, "test_top1_best_val_checkpoint": acc_best, "goal_top1": 0.97,
        "seconds_per_epoch_median": float(np.median(per_epoch)), "seconds_first_epoch": per_epoch[0],
        "wall_seconds_uninterrupted": round(wall_full, 1), "wall_seconds_killed_plus_resumed": round(wall_killed, 1),
        "killed_after_epoch": kill_after, "test_top1_resumed": acc_resumed,
        "resumed_steps_equal": [h["step"] for h in hist] == [h["step"] for h in hist_r],
        "resumed_max_weight_difference": max_diff,
    }
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(key_values([
        ("run", f"{model} on {source}, {epochs} epochs, {os.cpu_count()} CPU cores"),
        ("test top-1 (final model)", f"{acc_full:.2%}  (goal >= 97%)"),
        ("test top-1 (best.keras)", f"{acc_best:.2%}"),
        ("seconds per epoch", f"{result['seconds_per_epoch_median']:.2f} median (first epoch {per_epoch[0]:.2f}, with tracing)"),
        ("wall time", f"{wall_full:.1f} s uninterrupted; {wall_killed:.1f} s killed at epoch {kill_after} + resumed"),
        ("resumed run", f"test top-1 {acc_resumed:.2%}; same steps: {result['resumed_steps_equal']}; "
                        f"max weight difference {max_diff:.2e}"),
    ]))


if __name__ == "__main__":
    main()
