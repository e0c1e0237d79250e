#!/usr/bin/env python
"""Benchmark of the training recipe: ResNet-20 on the bundled digits (figures, not a test).

Runs `resnet-edge train` twice as a user would: once straight through, once killed with SIGKILL after
a checkpoint and resumed with --resume. Reports test accuracy (goal: >= 97% within 15 epochs),
seconds per epoch on this machine, and how far the resumed run is from the uninterrupted one.

Before that, where an epoch's time goes (``--breakdown``, on by default): the same run in a fresh process
with each part of every epoch timed (the training steps, the validation pass, the rest of ``fit``, keeping
the best weights, writing best.keras and the checkpoint, the history), the median per epoch of each; and
the same epochs with the step compiled by XLA (``jit_compile=True``) against without, in turn.

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


BREAKDOWN = r"""
import json, sys, tempfile, time
from resnet_edge import build as B, train as T
from resnet_edge._tf import keras
from resnet_edge.data import load
parts = {}
def timed(owner, name, label):
    f = getattr(owner, name)
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); parts.setdefault(label, []).append(time.perf_counter() - t); return r
    setattr(owner, name, g)
timed(T, "_write_checkpoint", "write the checkpoint")
timed(T, "_write_history", "write history.csv/json")
timed(T, "_snapshot", "keep the best weights")
timed(B, "save_keras", "write best.keras / model.keras")
timed(T, "_clean", "build the model to ship")
class Steps(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None): self.steps += time.perf_counter() - self.t
    def on_epoch_begin(self, e, logs=None): self.steps = 0.0
    def on_test_begin(self, logs=None): self.v = time.perf_counter()
    def on_test_end(self, logs=None): parts.setdefault("validation pass", []).append(time.perf_counter() - self.v)
    def on_epoch_end(self, e, logs=None): parts.setdefault("training steps", []).append(self.steps)
fit = keras.Model.fit
def fit_timed(self, *a, **k):
    k["callbacks"] = list(k.get("callbacks") or []) + [Steps()]
    t = time.perf_counter(); r = fit(self, *a, **k); parts.setdefault("fit", []).append(time.perf_counter() - t)
    return r
keras.Model.fit = fit_timed
model, source, epochs, xla = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "xla"
if xla:
    compile_model = T.compile_model
    def compile_xla(m, recipe, spec):
        compile_model(m, recipe, spec); m.compile(optimizer=m.optimizer, loss=m.loss, metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")], jit_compile=True)
    T.compile_model = compile_xla
data = load(source)
t = time.perf_counter()
m = T.train(T.spec_for_data(data, model=model), data, tempfile.mkdtemp(), T.Recipe(epochs=epochs), verbose=0)
parts["total"] = [time.perf_counter() - t]
print(json.dumps({"parts": parts, "val_acc": m["final"]["val_acc"]}))
"""


def breakdown(model: str, source: str, epochs: int, xla: bool = False) -> dict:
    proc = subprocess.run([sys.executable, "-c", BREAKDOWN, model, source, str(epochs), "xla" if xla else "-"],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_edge", *args], capture_output=True, text=True, cwd=ROOT)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", default="resnet20", show_default=True)
@click.option("--data", "source", default="digits", show_default=True)
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--kill-after", type=int, default=7, show_default=True, help="SIGKILL the second run once this epoch's checkpoint exists.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench_train", show_default=True)
@click.option("--breakdown/--no-breakdown", "with_breakdown", default=True, show_default=True,
              help="First, where each epoch's time goes, and XLA against not (--xla-epochs each).")
@click.option("--xla-epochs", type=int, default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(model, source, epochs, kill_after, out, with_breakdown, xla_epochs, as_json):
    import numpy as np

    from resnet_edge.harness import machine
    from resnet_edge.ui import table

    m = machine()
    cpu = f"{m['cpu']} ({', '.join(m['isa'])}), {m.get('cores')} cores"
    report = {}
    if with_breakdown:
        print(f"breakdown: {model} on {source}, {epochs} epochs", file=sys.stderr)
        b = breakdown(model, source, epochs)
        p = b["parts"]
        fit_rest = [f - s - v for f, s, v in zip(p["fit"], p["training steps"], p["validation pass"])]
        rows = [(k, p.get(k, [])) for k in ("training steps", "validation pass")] + [("rest of fit()", fit_rest)] + [
            (k, p.get(k, [])) for k in ("keep the best weights", "build the model to ship", "write best.keras / model.keras",
                                        "write the checkpoint", "write history.csv/json")]
        outside = p["total"][0] - sum(p["fit"])
        report["breakdown"] = {"cpu": cpu, "parts": p, "val_acc": b["val_acc"], "outside_fit_total_s": outside}
        print(f"{cpu}; {model} on {source}, {epochs} epochs in {p['total'][0]:.1f} s (model built, every file "
              f"written); per epoch, seconds:")
        print(table([{"part": k, "median": f"{np.median(v):.3f}" if v else "-", "first": f"{v[0]:.3f}" if v else "-",
                      "sum": f"{sum(v):.2f}", "n": str(len(v))} for k, v in rows],
                    [("part", "part"), ("median", "median"), ("first", "epoch 1"), ("sum", "sum over the run"),
                     ("n", "times")], right={"median", "first", "sum", "n"}))
        xla_rows = []
        for mode in ("plain", "xla", "plain", "xla"):
            print(f"xla comparison: {mode}", file=sys.stderr)
            r = breakdown(model, source, xla_epochs, xla=mode == "xla")
            xla_rows.append({"mode": mode, "fit_s": r["parts"]["fit"], "val_acc": r["val_acc"]})
        report["xla"] = xla_rows
        print("\nthe step compiled by XLA (jit_compile=True) against not, in turn; seconds per fit() (one epoch):")
        print(table([{"mode": r["mode"], "first": f"{r['fit_s'][0]:.2f}", "rest": f"{np.median(r['fit_s'][1:]):.2f}",
                      "acc": f"{r['val_acc']:.3f}"} for r in xla_rows],
                    [("mode", "step"), ("first", "epoch 1 (tracing/compiling)"), ("rest", "median of the others"),
                     ("acc", f"val acc after {xla_epochs}")], right={"first", "rest", "acc"}))

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
    result.update(report)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(key_values([
        ("run", f"{model} on {source}, {epochs} epochs, {cpu}"),
        ("test top-1 (final model)", f"{acc_full:.2%}  (goal >= 97%)"),
        ("test top-1 (best.keras)", f"{acc_best:.2%}"),
        ("seconds per epoch", f"{result['seconds_per_epoch_median']:.2f} median (first epoch {per_epoch[0]:.2f}, with tracing)"),
        ("wall time", f"{wall_full:.1f} s uninterrupted; {wall_killed:.1f} s killed at epoch {kill_after} + resumed"),
        ("resumed run", f"test top-1 {acc_resumed:.2%}; same steps: {result['resumed_steps_equal']}; "
                        f"max weight difference {max_diff:.2e}"),
    ]))


if __name__ == "__main__":
    main()
