"""The paper's training recipe, with atomic checkpoints, exact resume and tf.distribute (host side).

Recipe (Section 3.4 and 4.2), every value overridable: SGD with momentum 0.9, weight decay 1e-4 (an L2
term on every convolution and classifier kernel, gradient ``1e-4 * w`` as in Caffe), batch 128, learning
rate 0.1 divided by 10 at fixed fractions of the run: CIFAR 32k and 48k of 64k iterations (0.5 and 0.75);
ImageNet, whose paper schedule divides "when the error plateaus", at 1/3 and 2/3. Nets of 110 layers or
more warm up at 0.01 for the first 400/64000 of the run, as the paper does for ResNet-110.

A run directory holds::

    checkpoints/epoch-0007/{model.keras,state.json}   the last complete epoch (written as a whole)
    model.keras + model.json                          the final model and its manifest
    best.keras + best.json                            the best model by validation accuracy
    history.csv, history.json, curves.png             per-epoch figures

Each epoch's checkpoint is written to a temporary directory and renamed into place, so a run killed
at any moment (even ``kill -9``) leaves the previous checkpoint whole. ``resume=True`` continues from
it and ends exactly where an uninterrupted run ends: the same epochs and steps, the optimizer state
(momentum, iteration count, learning-rate position) restored, and the same data order and
augmentation, which are derived from (seed, epoch) rather than from a random state.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from resnet_edge.arch.spec import Preprocess, ResNetSpec, resolve
from resnet_edge.data.sources import Dataset
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.io import atomic_write_bytes, atomic_write_json

STRATEGIES = ("default", "mirrored", "multiworker")
PAPER_CIFAR_ITERATIONS = 64_000
PAPER_WARMUP_ITERATIONS = 400


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a run (the paper's by default)."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    #: Learning-rate drops as fractions of the run (None: the family's paper schedule).
    lr_boundaries: tuple[float, ...] | None = None
    lr_decay: float = 0.1
    #: Steps at lr * 0.1 before the schedule starts (None: the paper's warm-up for nets of 110+ layers).
    warmup_steps: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("need --lr > 0, 0 <= --momentum < 1 and --weight-decay >= 0")
        if self.lr_boundaries is not None and not all(0 < b < 1 for b in self.lr_boundaries):
            raise ConfigError(f"--lr-boundaries are fractions of the run between 0 and 1, got {self.lr_boundaries}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_boundaries"] = None if self.lr_boundaries is None else list(self.lr_boundaries)
        return d


def schedule_points(recipe: Recipe, spec: ResNetSpec, steps_per_epoch: int) -> tuple[list[int], list[float]]:
    """Step boundaries and learning rates of the piecewise-constant schedule, warm-up included."""
    total = recipe.epochs * steps_per_epoch
    fractions = recipe.lr_boundaries or ((0.5, 0.75) if spec.family == "cifar" else (1 / 3, 2 / 3))
    warmup = recipe.warmup_steps
    if warmup is None:
        warmup = math.ceil(total * PAPER_WARMUP_ITERATIONS / PAPER_CIFAR_ITERATIONS) if spec.depth >= 110 else 0
    boundaries = [max(1, round(f * total)) for f in sorted(fractions)]
    values = [recipe.lr * recipe.lr_decay**i for i in range(len(boundaries) + 1)]
    if warmup > 0:
        boundaries = [warmup] + [b for b in boundaries if b > warmup]
        values = [recipe.lr * 0.1] + values[len(values) - len(boundaries):]
    # Keep strictly increasing boundaries for tiny runs (several fractions can round to the same step).
    cleaned_b, cleaned_v = [], [values[0]]
    for b, v in zip(boundaries, values[1:]):
        if cleaned_b and b <= cleaned_b[-1]:
            cleaned_v[-1] = v
            continue
        cleaned_b.append(b)
        cleaned_v.append(v)
    return cleaned_b, cleaned_v


def lr_at(step: int, boundaries: list[int], values: list[float]) -> float:
    """The learning rate of the piecewise-constant schedule at ``step`` (0-based)."""
    return values[sum(step >= b for b in boundaries)]


def make_strategy(name: str, cpu_devices: int | None = None):
    """A tf.distribute strategy. ``cpu_devices`` splits the CPU into that many logical devices (to run
    mirrored training without GPUs); it must be set before TensorFlow starts its runtime."""
    from resnet_edge._tf import tf

    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    if cpu_devices and cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError:
            raise ConfigError("--cpu-devices must be set before TensorFlow starts; run it in a fresh process") from None
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # reads the cluster from TF_CONFIG; one worker without it
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def _add_weight_decay(model, weight_decay: float) -> None:
    """L2 on every conv/dense kernel: loss += wd * sum(w^2) / 2, so the gradient gains wd * w."""
    if weight_decay <= 0:
        return
    from resnet_edge._tf import keras, tf

    kernels = [layer.kernel for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    model.add_loss(lambda: weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels]))


def compile_model(model, recipe: Recipe, spec: ResNetSpec, steps_per_epoch: int) -> None:
    from resnet_edge._tf import keras

    boundaries, values = schedule_points(recipe, spec, steps_per_epoch)
    lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) if boundaries else values[0]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=recipe.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=spec.classifier_activation is None),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )


# ---------------------------------------------------------------------------------------------------
# checkpoints


def _checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("epoch-") and (p / "state.json").exists())


def _write_checkpoint(run_dir: Path, model, state: dict) -> Path:
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"epoch-{state['epoch']:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=folder))
    try:
        model.save(tmp / "model.keras")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _checkpoints(run_dir)[:-1]:  # keep only the newest complete checkpoint
        shutil.rmtree(old, ignore_errors=True)
    return final


def _config(spec: ResNetSpec, data: Dataset, recipe: Recipe, limit: int | None) -> dict:
    """What identifies a run, in the form it takes after a trip through JSON (tuples become lists)."""
    return json.loads(json.dumps({"spec": spec.to_dict(), "data": data.name, "recipe": recipe.to_dict(), "limit": limit}))


def saved_run(run_dir: str | Path) -> dict | None:
    """The config of the newest checkpoint in ``run_dir`` (spec, data, recipe, limit), or None."""
    found = _checkpoints(Path(run_dir))
    return json.loads((found[-1] / "state.json").read_text())["config"] if found else None


def _mismatch(saved: dict, wanted: dict) -> str:
    """The first difference between a checkpoint's config and this run's, as text ('' if equal)."""
    if saved["spec"]["name"] != wanted["spec"]["name"]:
        return f"it holds {saved['spec']['name']}, not {wanted['spec']['name']}"
    for key, value in wanted["spec"].items():
        if saved["spec"].get(key) != value:
            return f"its model has {key} {saved['spec'].get(key)}, not {value}"
    if saved["data"] != wanted["data"]:
        return f"it was trained on {saved['data']}, not {wanted['data']}"
    for key, value in wanted["recipe"].items():
        if saved["recipe"].get(key) != value:
            return f"its {key} is {saved['recipe'].get(key)}, not {value}"
    if saved.get("limit") != wanted.get("limit"):
        return f"it used --limit {saved.get('limit')}, not {wanted.get('limit')}"
    return ""


# ---------------------------------------------------------------------------------------------------
# the run


def spec_for_data(
    data: Dataset, *, model: str | None = None, depth: int | None = None, family: str | None = None,
    plain: bool | None = None, shortcut: str | None = None, input_size: int | None = None, force: bool = False,
) -> ResNetSpec:
    """The network to train on ``data``: its classes, its image size, and the data's normalization built in."""
    size = input_size or data.image_size
    spec = resolve(
        depth, model=model, family=family, plain=plain, shortcut=shortcut, input_size=size,
        classes=data.num_classes, preprocess=Preprocess(tuple(data.mean), tuple(data.std), "float32"), force=force,
    )
    from resnet_edge.data.pipeline import check_fits

    check_fits(data, spec.input_size)
    return spec


def train(
    spec: ResNetSpec,
    data: Dataset,
    run_dir: str | Path,
    recipe: Recipe = Recipe(),
    *,
    resume: bool = False,
    strategy: str = "default",
    cpu_devices: int | None = None,
    limit: int | None = None,
    verbose: int | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train ``spec`` on ``data`` into ``run_dir``; return the final manifest.

    ``limit`` caps every split at that many examples (quick runs). ``stop_after`` ends the process's
    work after that many epochs as if it had been interrupted (the checkpoint stays; resume goes on).
    Side effects: writes the run directory described in the module docstring; with ``resume`` it
    continues the newest checkpoint there and refuses one made for another model, data or recipe.
    """
    from resnet_edge._tf import keras
    from resnet_edge.arch.keras_model import build_model, count_keras, load_model
    from resnet_edge.build import save_keras, versions
    from resnet_edge.data.pipeline import make_dataset

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ResnetEdgeError(f"--out {run_dir} is a file; give a directory for the run")
    data = data.subset(limit)
    config = _config(spec, data, recipe, limit)
    found = _checkpoints(run_dir)
    state = None
    if found and not resume:
        last = json.loads((found[-1] / "state.json").read_text())
        raise ResnetEdgeError(
            f"{run_dir} already holds a run ({last['config']['spec']['name']}, epoch {last['epoch']}/{last['config']['recipe']['epochs']}); "
            "pass --resume to continue it, or choose another --out"
        )
    if resume:
        if not found:
            raise ResnetEdgeError(f"nothing to resume in {run_dir}: no checkpoint there; drop --resume to start a run")
        state = json.loads((found[-1] / "state.json").read_text())
        why = _mismatch(state["config"], config)
        if why:
            raise ResnetEdgeError(f"the checkpoint in {run_dir} is from another run: {why}; use the same options, or another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResnetEdgeError(f"cannot create the run directory {run_dir}: {exc.strerror}") from None

    keras.utils.set_random_seed(recipe.seed)
    dist = make_strategy(strategy, cpu_devices)
    steps_per_epoch = math.ceil(len(data.train) / recipe.batch_size)
    with dist.scope():
        if state:  # the checkpoint carries the compiled optimizer: momentum, iteration count, schedule
            model = load_model(found[-1] / "model.keras", compile=True)
        else:
            model = build_model(spec)
            compile_model(model, recipe, spec, steps_per_epoch)
        _add_weight_decay(model, recipe.weight_decay)  # not serialized: added again on every start
    start = state["epoch"] if state else 0
    history: list[dict] = state["history"] if state else []
    best = state.get("best") if state else None
    if start >= recipe.epochs:
        raise ResnetEdgeError(f"the run in {run_dir} is already complete ({start}/{recipe.epochs} epochs); nothing to resume")
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    val_ds = make_dataset(data, "val", input_size=spec.input_size, batch_size=recipe.batch_size)
    for epoch in range(start, recipe.epochs):
        train_ds = make_dataset(
            data, "train", input_size=spec.input_size, batch_size=recipe.batch_size, training=True,
            seed=recipe.seed, epoch=epoch,
        )
        t0 = time.perf_counter()
        fit = model.fit(train_ds, validation_data=val_ds, initial_epoch=epoch, epochs=epoch + 1, verbose=verbose)
        seconds = time.perf_counter() - t0
        step = int(model.optimizer.iterations.numpy())
        row = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lr_at(step - 1, *schedule_points(recipe, spec, steps_per_epoch)),
            "loss": float(fit.history["loss"][-1]),
            "train_acc": float(fit.history["acc"][-1]),
            "train_error": 1.0 - float(fit.history["acc"][-1]),
            "val_loss": float(fit.history["val_loss"][-1]),
            "val_acc": float(fit.history["val_acc"][-1]),
            "seconds": round(seconds, 3),
        }
        history.append(row)
        if best is None or row["val_acc"] > best["val_acc"]:
            best = {"epoch": row["epoch"], "val_acc": row["val_acc"]}
            save_keras(_clean(model, spec), run_dir / "best.keras", _manifest(spec, data, recipe, history, best, "best", model))
        state = {"epoch": epoch + 1, "history": history, "best": best, "config": config}
        _write_checkpoint(run_dir, model, state)
        _write_history(run_dir, history)
        if stop_after is not None and epoch + 1 - start >= stop_after and epoch + 1 < recipe.epochs:
            return {"stopped_at_epoch": epoch + 1, "run_dir": str(run_dir)}
    manifest = _manifest(spec, data, recipe, history, best, "final", model)
    manifest["counts"] = count_keras(model).to_dict()
    manifest["strategy"] = {"name": strategy, "replicas": dist.num_replicas_in_sync}
    manifest["versions"] = versions()
    manifest = save_keras(_clean(model, spec), run_dir / "model.keras", manifest)
    _plot(run_dir, history, spec.name)
    return manifest


def _clean(model, spec: ResNetSpec):
    """The model to ship: the same weights without the training-only loss and optimizer."""
    from resnet_edge.arch.keras_model import build_model

    clean = build_model(spec)
    clean.set_weights(model.get_weights())
    return clean


def _manifest(spec, data, recipe, history, best, which, model) -> dict:
    return {
        "kind": "keras-model",
        "name": spec.name,
        "which": which,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "trained": True,
        "data": data.info(),
        "normalization": {"mean": list(data.mean), "std": list(data.std), "inside_model": True},
        "recipe": recipe.to_dict(),
        "epochs_done": len(history),
        "seconds_total": round(sum(row["seconds"] for row in history), 2),
        "best": best,
        "final": history[-1] if history else None,
    }


HISTORY_FIELDS = ("epoch", "step", "lr", "loss", "train_acc", "train_error", "val_loss", "val_acc", "seconds")


def _write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_json(run_dir / "history.json", history)
    lines = [",".join(HISTORY_FIELDS)] + [",".join(str(row[k]) for k in HISTORY_FIELDS) for row in history]
    atomic_write_bytes(run_dir / "history.csv", ("\n".join(lines) + "\n").encode())


def _plot(run_dir: Path, history: list[dict], title: str) -> None:
    from resnet_edge.report.plots import training_curves

    training_curves({title: history}, run_dir / "curves.png", title=f"{title}: training curves")
