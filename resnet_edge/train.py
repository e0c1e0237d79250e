"""The paper's training recipe, with atomic checkpoints, exact resume and tf.distribute (host side).

Recipe (Section 3.4 and 4.2), every value overridable: SGD with momentum 0.9, weight decay 1e-4 (an L2
term on every convolution and classifier kernel, gradient ``1e-4 * w`` as in Caffe), batch 128, learning
rate 0.1 divided by 10 at fixed fractions of the run: CIFAR 32k and 48k of 64k iterations (0.5 and 0.75);
ImageNet, whose paper schedule divides "when the error plateaus", at 1/3 and 2/3.

Warm-up, the paper's rule for ResNet-110: train at lr/10 "until the training error is below 80%", then
go back to the full rate. ``warmup="auto"`` (the default) applies that rule to every net, checked after
each batch on the epoch's running training accuracy: a net that converges at once leaves warm-up within a
few steps, while a deep net that would diverge at 0.1 gets the start the paper gave ResNet-110 (on the
bundled digits ResNet-56 and plain-56 diverge at 0.1 without it). ``warmup=0`` turns it off; an integer
N > 0 warms up for exactly N steps.

Transfer learning (``weights=``, a published ImageNet weights file; ``recipe.freeze`` says what stays
frozen): the classifier is new (the data's classes). The run has two phases. First the *head* phase,
``recipe.head_epochs`` epochs: only the new classifier trains, on top of a frozen backbone whose
BatchNorm layers run in inference mode (ImageNet's statistics). Then the *fine-tune* phase: everything
but what ``freeze`` keeps frozen trains at ``recipe.fine_tune_lr`` (lr / 10 by default), with the
family's learning-rate drops as fractions of that phase. ``freeze``: ``backbone`` (only the classifier
ever trains: there is no fine-tune phase), ``stages:N`` (the stem and the first N of the 4 stages stay
frozen, BatchNorm included), ``none`` (all of it fine-tunes, BatchNorm statistics too). The fine-tune
phase starts with a new optimizer (momentum is per trainable variable) that continues the step count.
The new classifier starts at zero (as in BiT), so the first steps start from uniform predictions.

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
from typing import Callable

from resnet_edge.arch.spec import Preprocess, ResNetSpec, resolve
from resnet_edge.data.sources import Dataset
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.io import current_umask, atomic_write_bytes, atomic_write_json
from resnet_edge.ui import safe_text

STRATEGIES = ("default", "mirrored", "multiworker")


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
    #: "auto": lr * 0.1 until the training error is below 80% (the paper's rule); 0: none; N: N steps.
    warmup: str | int = "auto"
    seed: int = 0
    #: Transfer learning only (None otherwise): backbone | none | stages:N (see the module docstring).
    freeze: str | None = None
    #: Epochs of the head phase (the new classifier alone, on a frozen backbone).
    head_epochs: int = 0
    #: The fine-tune phase's learning rate (None: lr / 10).
    fine_tune_lr: float | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError("need --lr > 0, 0 <= --momentum < 1 and --weight-decay >= 0")
        if self.warmup != "auto" and not (isinstance(self.warmup, int) and self.warmup >= 0):
            raise ConfigError(f"--warmup is auto, 0 (off) or a number of steps, got {self.warmup!r}")
        if self.lr_boundaries is not None and not all(0 < b < 1 for b in self.lr_boundaries):
            raise ConfigError(f"--lr-boundaries are fractions of the run between 0 and 1, got {self.lr_boundaries}")
        if self.freeze is not None:
            frozen_stages(self.freeze)
        elif self.head_epochs or self.fine_tune_lr is not None:
            raise ConfigError("--head-epochs and --fine-tune-lr are for transfer learning: add --weights")
        if not 0 <= self.head_epochs <= self.epochs:
            raise ConfigError(f"--head-epochs must be between 0 and --epochs ({self.epochs}), got {self.head_epochs}")
        if self.freeze == "backbone" and self.head_epochs != self.epochs:
            raise ConfigError("--freeze backbone trains only the classifier: every epoch is a head epoch, "
                              f"so drop --head-epochs (or give {self.epochs})")
        if self.fine_tune_lr is not None and self.fine_tune_lr <= 0:
            raise ConfigError(f"--fine-tune-lr must be > 0, got {self.fine_tune_lr}")

    @property
    def transfer(self) -> bool:
        return self.freeze is not None

    @property
    def tune_lr(self) -> float:
        """The fine-tune phase's learning rate."""
        return self.fine_tune_lr if self.fine_tune_lr is not None else self.lr * FINE_TUNE_FACTOR

    def phase(self, epoch: int) -> str | None:
        """'head' or 'fine-tune' for a transfer run's 0-based ``epoch``; None for a run from scratch."""
        if not self.transfer:
            return None
        return "head" if epoch < self.head_epochs else "fine-tune"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_boundaries"] = None if self.lr_boundaries is None else list(self.lr_boundaries)
        return d


FINE_TUNE_FACTOR = 0.1
#: The 4 stages of an ImageNet ResNet (conv2_x .. conv5_x); the stem is conv1 and pool1.
STAGES = 4


def schedule_points(recipe: Recipe, spec: ResNetSpec, steps_per_epoch: int) -> tuple[list[int], list[float]]:
    """Step boundaries and learning rates of the piecewise-constant schedule (warm-up not included).

    A run from scratch (or a transfer run that only trains its classifier) starts at ``lr`` and drops at
    fractions of the run. A transfer run with a fine-tune phase trains its head at ``lr``, then starts the
    fine-tune phase at ``tune_lr`` and drops at fractions of that phase."""
    total = recipe.epochs * steps_per_epoch
    fractions = recipe.lr_boundaries or ((0.5, 0.75) if spec.family == "cifar" else (1 / 3, 2 / 3))
    tuning = recipe.transfer and recipe.freeze != "backbone"
    start = recipe.head_epochs * steps_per_epoch if tuning else 0
    base = recipe.tune_lr if tuning else recipe.lr
    boundaries, values = ([start], [recipe.lr, base]) if start else ([], [base])
    for i, f in enumerate(sorted(fractions)):
        step = start + max(1, round(f * (total - start)))
        if boundaries and step <= boundaries[-1]:  # tiny runs: drops that round to the same step merge
            values[-1] = base * recipe.lr_decay ** (i + 1)
            continue
        boundaries.append(step)
        values.append(base * recipe.lr_decay ** (i + 1))
    return boundaries, values


def frozen_stages(freeze: str) -> int | None:
    """How many stages ``freeze`` keeps frozen in the fine-tune phase (the stem with them): backbone -> None
    (all, and there is no fine-tune phase), none -> -1 (nothing, not even the stem), stages:N -> N."""
    if freeze == "backbone":
        return None
    if freeze == "none":
        return -1
    kind, _, n = freeze.partition(":")
    if kind == "stages" and n.isdigit() and 0 <= int(n) <= STAGES:
        return int(n)
    raise ConfigError(f"--freeze is backbone, none or stages:N with N from 0 to {STAGES} (the stem and the first N "
                      f"stages stay frozen), got {freeze!r}")


def describe_freeze(freeze: str) -> str:
    """What ``freeze`` keeps frozen while fine-tuning, in words."""
    n = frozen_stages(freeze)
    if n is None:
        return "the whole backbone stays frozen (only the classifier trains)"
    if n < 0:
        return "nothing stays frozen"
    if n == 0:
        return "conv1 stays frozen"
    return f"conv1, conv2_x{'' if n == 1 else f'-conv{n + 1}_x'} stay frozen"


#: Transfer runs' defaults, after BiT (Kolesnikov et al., "Big Transfer", 2020): SGD at 0.003 for a new
#: classifier on pretrained features (pooled ResNet-50 features have norms near 40, and the paper's 0.1 diverges
#: on them), no warm-up, and at least 500 steps on a small data set.
TRANSFER_LR = 0.003
TRANSFER_MIN_STEPS = 500


def default_transfer_epochs(train_images: int, batch_size: int) -> int:
    """Epochs for at least TRANSFER_MIN_STEPS steps, and at least 15 (the usual default)."""
    steps_per_epoch = math.ceil(train_images / batch_size)
    return max(15, math.ceil(TRANSFER_MIN_STEPS / max(steps_per_epoch, 1)))


def default_freeze(train_images: int, classes: int) -> str:
    """``--freeze`` from the data's size: with under 20 training images a class only the classifier trains (a
    backbone moved by so few images overfits them); under 100 a class the last two stages fine-tune; with
    more, all of it."""
    per_class = train_images / max(classes, 1)
    return "backbone" if per_class < 20 else "stages:2" if per_class < 100 else "none"


def default_head_epochs(freeze: str, epochs: int) -> int:
    """The head phase's share of the run: all of it for ``backbone``, else a quarter (at least 1) before
    fine-tuning starts, and none for a 1-epoch run."""
    return epochs if freeze == "backbone" else min(max(1, round(epochs / 4)), epochs - 1)


def resumed_settings(saved: dict, recipe_args: dict, transfer: dict, given: set[str]) -> tuple[dict, dict]:
    """``--resume``: the recipe and transfer options of the run saved in its folder, except those ``given`` again
    (the names of the options the user typed)."""
    recipe_args = {**saved["recipe"], **{k: v for k, v in recipe_args.items() if k in given}}
    recipe_args["lr_boundaries"] = tuple(recipe_args["lr_boundaries"]) if recipe_args["lr_boundaries"] else None
    transfer = {k: transfer[k] if k in given else saved["recipe"].get(k) for k in transfer}
    return {k: v for k, v in recipe_args.items() if k not in transfer}, transfer


def transfer_defaults(recipe_args: dict, given: set[str], train_images: int) -> dict:
    """A transfer run's recipe where the user did not set it (``given``: the options typed): TRANSFER_LR, no
    warm-up, and enough epochs for the train set's size (:func:`default_transfer_epochs`)."""
    out = dict(recipe_args)
    if "lr" not in given:
        out["lr"] = TRANSFER_LR
    if "warmup" not in given:
        out["warmup"] = 0
    if "epochs" not in given:
        out["epochs"] = default_transfer_epochs(train_images, out["batch_size"])
    return out


def transfer_recipe(recipe_args: dict, transfer: dict, tuning: bool, train_images: int | None = None,
                    classes: int | None = None) -> Recipe:
    """The run's :class:`Recipe` (``tuning``: a transfer run, with ``transfer``'s freeze, head epochs and
    fine-tuning rate). Without the data's size (before it loads) the transfer options are only checked; with
    it, what was not given gets its default (:func:`default_freeze`, :func:`default_head_epochs`)."""
    if not tuning:
        return Recipe(**recipe_args)
    freeze = transfer["freeze"] or (default_freeze(train_images, classes) if train_images is not None else "none")
    frozen_stages(freeze)  # a bad value is named before the head default is worked out from it
    head = transfer["head_epochs"]
    head = default_head_epochs(freeze, recipe_args["epochs"]) if head is None else head
    return Recipe(**recipe_args, freeze=freeze, head_epochs=head, fine_tune_lr=transfer["fine_tune_lr"])


def _stage_of(layer_name: str) -> int | None:
    """0 for the stem (conv1_*, pool1_*), 1..4 for conv2_x..conv5_x, None for the rest (classifier, pooling,
    normalization)."""
    head, _, _ = layer_name.partition("_")
    if head in ("conv1", "pool1"):
        return 0
    if head.startswith("conv") and head[4:].isdigit():
        return int(head[4:]) - 1
    return None


def set_phase(model, recipe: Recipe, phase: str, trainable: dict[str, bool]) -> None:
    """Freeze what ``phase`` keeps frozen; the rest gets back its own flag (``trainable``: a fresh model's).
    A frozen BatchNorm layer runs in inference mode (tf_keras)."""
    keep = frozen_stages(recipe.freeze)
    for layer in model.layers:
        if layer.name == "predictions":
            frozen = False
        elif phase == "head" or keep is None:
            frozen = True
        else:
            stage = _stage_of(layer.name)
            frozen = stage is not None and stage <= keep
        layer.trainable = trainable[layer.name] and not frozen


WARMUP_FACTOR = 0.1
WARMUP_UNTIL_ERROR = 0.8


def lr_at(step: int, boundaries: list[int], values: list[float]) -> float:
    """The learning rate of the piecewise-constant schedule at ``step`` (0-based)."""
    return values[sum(step >= b for b in boundaries)]


def cluster_task(strategy: str, env: dict | None = None) -> dict | None:
    """This process's place in a multi-worker cluster, from ``$TF_CONFIG`` (checked before TensorFlow starts):
    ``{"type", "index", "workers", "chief"}``; None for every other strategy. Without ``TF_CONFIG`` a multiworker
    run is one worker, the chief. The chief is the task of type ``chief``, or worker 0 when the cluster has none
    (TensorFlow's rule); it alone writes the run's folder."""
    if strategy != "multiworker":
        return None
    text = (os.environ if env is None else env).get("TF_CONFIG", "").strip()
    if not text:
        return {"type": "worker", "index": 0, "workers": 1, "chief": True}
    how = ('TF_CONFIG must be JSON like {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": '
           '"worker", "index": 0}}')
    try:
        config = json.loads(text)
    except ValueError:
        raise ConfigError(f"TF_CONFIG is not JSON: {how}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(v, list) and v and all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in v)
            for v in cluster.values()):
        raise ConfigError(f"TF_CONFIG has no cluster of host:port addresses: {how}")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int) or \
            not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG's task must name a type of its cluster ({', '.join(map(str, cluster))}) and an "
                          f"index in it: {how}")
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    chief = task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0 and "chief" not in cluster)
    return {"type": task["type"], "index": task["index"], "workers": workers, "chief": chief}


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

    layers = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]

    def decay():  # read when the train step is traced: a frozen layer's kernel is not decayed
        kernels = [layer.kernel for layer in layers if layer.trainable]
        return weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in kernels]) if kernels else tf.constant(0.0)

    model.add_loss(decay)


def compile_model(model, recipe: Recipe, spec: ResNetSpec) -> None:
    """SGD with momentum and the cross-entropy loss; the learning rate is set per batch by
    :func:`_lr_callback`."""
    from resnet_edge._tf import keras

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=recipe.lr, momentum=recipe.momentum),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=spec.classifier_activation is None),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )


def _lr_callback(recipe: Recipe, boundaries: list[int], values: list[float], warm: dict, steps_per_epoch: int):
    """Set the learning rate before every batch: the schedule at the optimizer's step, times 0.1 while
    warming up. ``warm`` ({"active": bool, "ended_at": step or None}) is the warm-up state; it is saved in
    every checkpoint so that a resumed run continues exactly."""
    from resnet_edge._tf import keras

    class PaperLR(keras.callbacks.Callback):
        #: The rate of the last batch trained (what the epoch's row reports).
        trained_at = None

        def on_train_batch_begin(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            if isinstance(recipe.warmup, int) and warm["active"] and step >= recipe.warmup:
                warm.update(active=False, ended_at=step)
            factor = WARMUP_FACTOR if warm["active"] else 1.0
            self.rate = lr_at(step, boundaries, values) * factor
            self.model.optimizer.learning_rate.assign(self.rate)

        def on_train_batch_end(self, batch, logs=None):
            self.trained_at = self.rate
            # The epoch's running accuracy: judge it once it covers 10 batches (or the epoch). Read from the metric,
            # not from ``logs``: on a multi-worker cluster a batch's logs hold this worker's share only, and workers
            # that judged their own shares would leave the warm-up at different steps and train apart. The metric's
            # result is reduced over every replica of the cluster (a collective: every worker reaches this line at
            # the same batch, since they all hold the same warm-up state).
            if batch + 1 < min(10, steps_per_epoch) or recipe.warmup != "auto" or not warm["active"]:
                return
            acc = next(m for m in self.model.metrics if m.name == "acc")
            if 1.0 - float(acc.result()) < WARMUP_UNTIL_ERROR:
                warm.update(active=False, ended_at=int(self.model.optimizer.iterations.numpy()))

    return PaperLR()


# ---------------------------------------------------------------------------------------------------
# checkpoints


def _checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("epoch-") and (p / "state.json").exists())


def _write_checkpoint(run_dir: Path, model, state: dict) -> Path:
    from resnet_edge.io import recover

    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder)  # a checkpoint half-written by a killed run goes
    final = folder / f"epoch-{state['epoch']:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.pid{os.getpid()}.", suffix=".tmp", dir=folder))
    try:
        model.save(tmp / "model.keras")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; give the checkpoint the usual permissions
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in _checkpoints(run_dir)[:-1]:  # keep only the newest complete checkpoint
        shutil.rmtree(old, ignore_errors=True)
    return final


def _config(spec: ResNetSpec, data: Dataset, recipe: Recipe, limit: int | None, weights: dict | None) -> dict:
    """What identifies a run, in the form it takes after a trip through JSON (tuples become lists)."""
    return json.loads(json.dumps({"spec": spec.to_dict(), "data": data.name, "recipe": recipe.to_dict(), "limit": limit,
                                  "weights": weights}))


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
    ours, theirs = saved.get("weights"), wanted.get("weights")
    if (ours or {}).get("sha256") != (theirs or {}).get("sha256"):
        started = lambda w: f"from {w['file']}" if w else "from scratch"  # noqa: E731
        return f"it started {started(ours)}, not {started(theirs)}"
    if saved["data"] != wanted["data"]:
        return f"it was trained on {saved['data']}, not {wanted['data']}"
    defaults = Recipe().to_dict()  # a checkpoint older than a recipe field has its default
    for key, value in wanted["recipe"].items():
        if saved["recipe"].get(key, defaults[key]) != value:
            return f"its {key} is {saved['recipe'].get(key, defaults[key])}, not {value}"
    if saved.get("limit") != wanted.get("limit"):
        return f"it used --limit {saved.get('limit')}, not {wanted.get('limit')}"
    return ""


# ---------------------------------------------------------------------------------------------------
# the run


def spec_for_data(
    data: Dataset, *, model: str | None = None, depth: int | None = None, family: str | None = None,
    plain: bool | None = None, shortcut: str | None = None, input_size: int | None = None, force: bool = False,
    weights=None,
) -> ResNetSpec:
    """The network to train on ``data``: its classes, its image size, and the data's normalization built in
    (with ``weights``, a :class:`~resnet_edge.arch.weights.WeightsFile`: its network and its normalization)."""
    size = input_size or data.image_size
    if weights is not None:
        depth, family, variant, mean, std = weights.depth, "imagenet", weights.variant, weights.mean, weights.std
    else:
        variant, mean, std = "v1", tuple(data.mean), tuple(data.std)
    spec = resolve(
        depth, model=model, family=family, plain=plain, shortcut=shortcut, variant=variant, input_size=size,
        classes=data.num_classes, preprocess=Preprocess(mean, std, "float32"), force=force,
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
    weights=None,
    resume: bool = False,
    strategy: str = "default",
    cpu_devices: int | None = None,
    limit: int | None = None,
    verbose: int | None = None,
    stop_after: int | None = None,
    checkpoint_every: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Train ``spec`` on ``data`` into ``run_dir``; return the final manifest.

    ``limit`` caps every split at that many examples (quick runs). ``stop_after`` ends the process's
    work after that many epochs as if it had been interrupted (the checkpoint stays; resume goes on).
    ``checkpoint_every`` writes the checkpoint (and ``best.keras``) after every N-th epoch and the last;
    a resumed run goes on from the newest one and trains the epochs after it again, to the same result.
    ``weights`` (a :class:`~resnet_edge.arch.weights.WeightsFile`, with ``recipe.freeze`` set) starts a
    transfer run from it with a new classifier; a resumed transfer run needs it only to check it.
    ``progress`` gets the run's own lines (weights loaded, head and fine-tuning phases; default: stderr when
    ``verbose``); ``verbose`` is Keras's, for its epoch lines.
    Side effects: writes the run directory described in the module docstring; with ``resume`` it
    continues the newest checkpoint there and refuses one made for another model, data, recipe or weights.
    With ``strategy="multiworker"`` only the chief (:func:`cluster_task`) writes into ``run_dir``; every worker
    resumes from it, so on several machines it must be a folder they all reach (a shared file system).
    """
    run_dir = Path(run_dir)
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be a whole number of epochs >= 1, got {checkpoint_every!r}")
    if run_dir.exists() and not run_dir.is_dir():
        raise ResnetEdgeError(f"--out {run_dir} is a file; give a directory for the run")
    data = data.subset(limit)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    say = progress if progress is not None else (lambda text: _say(verbose, text))
    if weights is not None and not recipe.transfer:
        raise ConfigError("a run from weights needs a transfer recipe (Recipe.freeze: backbone, none or stages:N)")
    if recipe.transfer and weights is None and not resume:
        raise ConfigError("--freeze is for transfer learning: add --weights FILE (or --weights imagenet)")
    identity = weights.identity() if weights is not None else None
    config = _config(spec, data, recipe, limit, identity)
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
        if weights is None and recipe.transfer:  # the checkpoint holds the weights; it says which file they came from
            config["weights"] = state["config"].get("weights")
        why = _mismatch(state["config"], config)
        if why:
            raise ResnetEdgeError(f"the checkpoint in {run_dir} is from another run: {why}; use the same options, or another --out")
    role = cluster_task(strategy)
    # A non-chief worker never writes into the run's folder, but it saves all the same, into a private folder removed
    # at the end: saving a compiled model reads its metrics' variables, an all-reduce every worker must join
    # (TensorFlow's rule for multi-worker saving: every worker saves, the non-chief ones somewhere else).
    writer = role is None or role["chief"]
    out_dir = run_dir if writer else Path(tempfile.mkdtemp(prefix=f"worker{role['index']}-"))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResnetEdgeError(f"cannot create the run directory {run_dir}: {exc.strerror}") from None
    try:
        return _train(spec, data, run_dir, out_dir, recipe, weights, identity, config, found, state, strategy, cpu_devices,
                      role, verbose, say, stop_after, checkpoint_every)
    except Exception as exc:  # a peer lost in a collective of fit(), or of a save every worker joins
        lost = _lost_peer(role, exc, run_dir)
        if lost is None:
            raise
        raise lost from None
    finally:
        if not writer:
            shutil.rmtree(out_dir, ignore_errors=True)


def _train(spec, data, run_dir: Path, out_dir: Path, recipe, weights, identity, config, found, state, strategy,
           cpu_devices, role, verbose, say, stop_after, checkpoint_every) -> dict:
    """The training loop of :func:`train`: reads a resumed run from ``run_dir`` and writes into ``out_dir`` (the same
    folder, except on a non-chief worker)."""
    from resnet_edge._tf import keras
    from resnet_edge.arch.keras_model import build_model, count_keras, load_model
    from resnet_edge.build import save_keras, versions
    from resnet_edge.data.pipeline import make_dataset

    keras.utils.set_random_seed(recipe.seed)
    dist = make_strategy(strategy, cpu_devices)
    steps_per_epoch = math.ceil(len(data.train) / recipe.batch_size)
    flags = {layer.name: layer.trainable for layer in build_model(spec).layers} if recipe.transfer else {}
    phase = recipe.phase(0)
    with dist.scope():
        if state:  # the checkpoint carries the compiled optimizer (momentum, iteration count, schedule) and the
            model = load_model(found[-1] / "model.keras", compile=True)  # trainable flags of its phase
            phase = state.get("phase")
        else:
            if weights is not None:
                from resnet_edge.arch.weights import load_into

                whole = spec.replace(inner_widths=None, stream_widths=None)  # the network the file holds
                model = build_model(whole)
                identity.update(load_into(model, weights, new_classifier=True))
                if whole != spec:  # a thinner child starts from its parent's weights (NetAdapt), not from scratch
                    from resnet_edge.optimize.channels import thin_to

                    model = thin_to(model, whole, spec)
                head = model.get_layer("predictions")  # zero-initialized (BiT): uniform predictions at the start
                head.set_weights([w * 0 for w in head.get_weights()])
                say(f"loaded {identity['layers']} layers of {identity['file']} ({identity['format']})"
                    + (", kept the channels of the thinner network that rank highest" if whole != spec else "")
                    + f"; new classifier for {spec.classes} classes")
            else:
                model = build_model(spec)
            if phase:
                set_phase(model, recipe, phase, flags)
            compile_model(model, recipe, spec)
        _add_weight_decay(model, recipe.weight_decay)  # not serialized: added again on every start
    if phase == "head" and not state:
        say(f"head: {recipe.head_epochs} epoch(s) training the classifier at lr {recipe.lr:g} on a frozen "
                      "backbone (BatchNorm in inference mode)")
    start = state["epoch"] if state else 0
    history: list[dict] = state["history"] if state else []
    best = state.get("best") if state else None
    warm = dict(state["warmup"]) if state else {"active": recipe.warmup != 0, "ended_at": None}
    boundaries, values = schedule_points(recipe, spec, steps_per_epoch)
    if start >= recipe.epochs and _complete(run_dir, state):
        raise ResnetEdgeError(f"the run in {run_dir} is already complete ({start}/{recipe.epochs} epochs); nothing to resume")
    val_ds = make_dataset(data, "val", input_size=spec.input_size, batch_size=recipe.batch_size)
    best_weights = best_manifest = shipped = None  # shipped: the model files are written from (built once)
    for epoch in range(start, recipe.epochs):
        if recipe.phase(epoch) != phase:  # the fine-tune phase: a new optimizer continues the step count
            step = int(model.optimizer.iterations.numpy())
            phase = recipe.phase(epoch)
            with dist.scope():
                set_phase(model, recipe, phase, flags)
                compile_model(model, recipe, spec)
                model.optimizer.iterations.assign(step)
            say(f"fine-tune from epoch {epoch + 1}: {describe_freeze(recipe.freeze)}; lr {recipe.tune_lr:g}")
        train_ds = make_dataset(
            data, "train", input_size=spec.input_size, batch_size=recipe.batch_size, training=True,
            seed=recipe.seed, epoch=epoch,
        )
        t0 = time.perf_counter()
        first_step, one_epoch = int(model.optimizer.iterations.numpy()), _one_epoch_callback()
        rate = _lr_callback(recipe, boundaries, values, warm, steps_per_epoch)
        fit = model.fit(train_ds, validation_data=val_ds, initial_epoch=epoch, epochs=recipe.epochs, verbose=verbose,
                        callbacks=[rate, one_epoch])
        seconds = time.perf_counter() - t0
        # tf_keras counts one step too many on a dataset of unknown length (an image folder: a file may fail to
        # decode): the attempt that finds the data exhausted. Only the counter moves; it is set right here.
        step = first_step + one_epoch.batches
        model.optimizer.iterations.assign(step)
        row = {
            "epoch": epoch + 1,
            "step": step,
            "lr": float(rate.trained_at),
            "loss": float(fit.history["loss"][-1]),
            "train_acc": float(fit.history["acc"][-1]),
            "train_error": 1.0 - float(fit.history["acc"][-1]),
            "val_loss": float(fit.history["val_loss"][-1]),
            "val_acc": float(fit.history["val_acc"][-1]),
            "seconds": round(seconds, 3),
        }
        if phase:
            row["phase"] = phase
        history.append(row)
        if best is None or row["val_acc"] > best["val_acc"]:
            best = {"epoch": row["epoch"], "val_acc": row["val_acc"]}
            # kept in memory (a copy of the weights: milliseconds) and written with the next checkpoint, so that
            # best.keras always goes with the newest checkpoint's "best"
            best_weights = _snapshot(model)
            best_manifest = _manifest(spec, data, recipe, history, best, "best", warm, config)
        if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == recipe.epochs:
            if best_weights is not None:
                shipped = _clean(model, spec, best_weights, shipped)
                save_keras(shipped, out_dir / "best.keras", best_manifest)
                best_weights = None
            state = {"epoch": epoch + 1, "history": history, "best": best, "warmup": warm, "config": config,
                     "phase": phase}
            _write_checkpoint(out_dir, model, state)
        _write_history(out_dir, history)
        if stop_after is not None and epoch + 1 - start >= stop_after and epoch + 1 < recipe.epochs:
            # as if killed here: the epochs since the newest checkpoint are lost, and trained again on resume
            return {"stopped_at_epoch": epoch + 1, "run_dir": str(run_dir)}
    # The last stages. A run killed after its last checkpoint resumes here directly (start == epochs),
    # so every file below is written again from the checkpoint, whatever point the kill came at.
    _write_history(out_dir, history)
    manifest = _manifest(spec, data, recipe, history, best, "final", warm, config)
    manifest["counts"] = count_keras(model).to_dict()
    manifest["strategy"] = {"name": strategy, "replicas": dist.num_replicas_in_sync,
                            **({"workers": role["workers"]} if role else {})}
    manifest["versions"] = versions()
    manifest = save_keras(_clean(model, spec, into=shipped), out_dir / "model.keras", manifest)
    if out_dir != run_dir:  # a non-chief worker: what it saved goes with its private folder
        return {"index": role["index"], "type": role["type"], "chief": False, "epochs_done": len(history),
                "strategy": manifest["strategy"], "run_dir": str(run_dir)}
    _plot(run_dir, history, spec.name)
    return manifest


#: What TensorFlow raises in a collective when a peer of a multi-worker cluster is gone or cut off.
LOST_PEER = ("UnavailableError", "CancelledError", "DeadlineExceededError", "AbortedError", "InternalError")


def _lost_peer(role: dict | None, exc: BaseException, run_dir: Path) -> ResnetEdgeError | None:
    """One line for a collective that failed because a peer of the cluster is gone (no hang: the collectives fail as
    soon as the connection to the peer resets, or when TensorFlow's health check misses it); None otherwise."""
    if role is None or role["workers"] < 2 or type(exc).__name__ not in LOST_PEER:
        return None
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    found = _checkpoints(run_dir)
    last = f"epoch {int(found[-1].name.split('-')[1])}" if found else "the start: no checkpoint yet"
    return ResnetEdgeError(
        f"{role['type']} {role['index']}: another worker of the cluster is gone or unreachable, so training stopped "
        f"({type(exc).__name__}: {safe_text(first, 160)}); start every worker again with --resume and the same "
        f"TF_CONFIG: the run goes on from the chief's last checkpoint ({last}) in its --out folder, which every worker "
        "must reach")


def _complete(run_dir: Path, state: dict) -> bool:
    """Whether every stage of a finished run was written: the final model with an intact manifest of
    all its epochs, and the curves (a run killed after its last checkpoint is not complete)."""
    from resnet_edge.io import read_manifest

    final = run_dir / "model.keras"
    try:
        manifest = read_manifest(final)
    except ResnetEdgeError:
        return False
    return (final.is_file() and manifest.get("epochs_done") == state["epoch"] and (run_dir / "curves.png").is_file()
            and (run_dir / "history.json").is_file())


def _one_epoch_callback():
    from resnet_edge._tf import keras

    class OneEpoch(keras.callbacks.Callback):
        """Stop fit() after one epoch: each epoch gets its own seeded dataset, while the progress bar
        still reads "Epoch 8/15". Counts the batches trained."""

        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    return OneEpoch()


def _snapshot(model) -> dict:
    """Every layer's weights, copied (numpy arrays, by layer name)."""
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}


def _clean(model, spec: ResNetSpec, weights: dict | None = None, into=None):
    """The model to ship: the same weights (or those of a :func:`_snapshot`) without the training-only loss
    and optimizer, and nothing frozen (a model's weight list puts frozen layers' weights last, so they are
    copied layer by layer). ``into``: a model this made before, given the weights instead of building
    another (0.27 s for ResNet-20, each time best.keras was written)."""
    from resnet_edge.arch.keras_model import build_model

    clean = into if into is not None else build_model(spec)
    for layer in clean.layers:
        layer.set_weights(weights[layer.name] if weights is not None else model.get_layer(layer.name).get_weights())
    return clean


def _say(verbose: int, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)


def _normalization(spec: ResNetSpec, data: Dataset) -> dict:
    """The model's built-in normalization (the data's, or the weights' of a transfer run); without one, the
    data's, which the inputs then need."""
    inside = spec.preprocess is not None
    mean, std = (spec.preprocess.mean, spec.preprocess.std) if inside else (data.mean, data.std)
    return {"mean": list(mean), "std": list(std), "inside_model": inside}


def _manifest(spec, data, recipe, history, best, which, warm, config) -> dict:
    return {
        "kind": "keras-model",
        "name": spec.name,
        "which": which,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "trained": True,
        "data": data.info(),
        "normalization": _normalization(spec, data),
        "recipe": recipe.to_dict(),
        "weights": config["weights"],  # the published file a transfer run started from (None: from scratch)
        "epochs_done": len(history),
        "warmup_ended_at_step": warm["ended_at"],
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
