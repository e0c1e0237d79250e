"""The ``resnet-edge`` command line: a thin layer that parses options, calls the library and prints.

Every user error is a :class:`~resnet_edge.errors.ResnetEdgeError` raised by the library; the group
below turns it into one line on stderr and exit code 1, without a traceback. Host-side modules
(TensorFlow) are imported inside the commands that need them, so ``--help``, ``models`` and the
edge-side commands start fast and run without TensorFlow.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from resnet_edge import __version__
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.ui import safe_text

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Finite(click.FloatRange):
    """A float in a range that is also finite: ``nan`` and ``inf`` pass a plain range check."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# Every count is bounded by what makes sense, so that a typo fails in a second with one line instead
# of starting "Epoch 17/99999999999999999999" (the checks run before TensorFlow is imported).
DEPTH = click.IntRange(1, 10_000)
SIZE = click.IntRange(1, 8192)
CLASSES = click.IntRange(1, 1_000_000)
EPOCHS = click.IntRange(1, 100_000)
EPOCHS0 = click.IntRange(0, 100_000)  # fine-tuning may be skipped
BATCH = click.IntRange(1, 65_536)
LIMIT = click.IntRange(1, 1_000_000_000)
SAMPLES = click.IntRange(1, 1_000_000)


class Group(click.Group):
    """A click group that reports library errors as one clean line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ResnetEdgeError as exc:  # messages may quote a file or a device: escaped, bounded, one line
            raise click.ClickException(safe_text(exc, 2000)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise click.ClickException(safe_text(f"{exc.strerror or exc}{where}", 2000)) from None


def _numbers(counts: tuple[int, ...] | None = (3,)):
    """Click callback: 'a,b,c' -> a tuple of finite floats, as many as one of ``counts`` (None: any)."""
    words = {1: "one number", 3: "three numbers (R,G,B)"}

    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            parts = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None
        if not all(math.isfinite(v) for v in parts):
            raise click.BadParameter(f"{value!r} holds a number that is not finite")
        if counts and len(parts) not in counts:
            raise click.BadParameter(f"expected {' or '.join(words.get(c, f'{c} numbers') for c in counts)}, got {len(parts)}")
        return parts

    return parse


def _triple(name: str):
    """Click callback: 'a,b,c' -> (a, b, c) floats."""
    return _numbers((3,))


TRUST_OPTION = click.option("--trust", is_flag=True,
                            help="Load MODEL even if its config carries code (a Lambda layer, ...): only for a file you trust.")
DATA_OPTION = click.option("--data", "source", default="digits", show_default=True, envvar="RESNET_EDGE_DATA",
                           help="digits | cifar10:DIR | folder:DIR (env RESNET_EDGE_DATA).")


def _check_model_file(model_path, trust: bool) -> None:
    """Refuse a Keras model file that carries code before TensorFlow and the data load (seconds sooner)."""
    if model_path is not None:
        from resnet_edge.keras_files import check_model_file

        check_model_file(model_path, trust=trust)


def _echo_json_or(obj, as_json: bool, human) -> None:
    from resnet_edge.ui import emit

    emit(obj, as_json, human, click.echo)


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="resnet-edge")
def cli():
    """resnet-edge: the ResNets of He et al. (2015), from the paper to Raspberry Pis and phones.

    \b
    Start with:
      resnet-edge models                                  the family, with parameters and MACs
      resnet-edge build --depth 18                        a ResNet-18 as a Keras model
      resnet-edge train --model resnet20 --out runs/r20   the paper's recipe on the bundled digits
      resnet-edge convert runs/r20/model.keras --int8     a checked, self-describing .tflite
      resnet-edge inspect runs/r20/model_int8.tflite      what the .tflite holds and which accelerator runs it
      resnet-edge metadata other.tflite --labels l.txt    standard metadata, for MediaPipe and the Task Library
      resnet-edge bench runs/r20/model_int8.tflite        latency and memory (benchmark_model's figures)
      resnet-edge eval runs/r20/model_int8.tflite         accuracy on the data, per class, against Keras
      resnet-edge bench m.tflite --target ssh://pi@pi5    the same on a Raspberry Pi (adb://SERIAL: a phone)
      resnet-edge sweep a.tflite b.tflite --target pi5    many models, many devices, into the results store
    """


@cli.command()
@click.option("--family", type=click.Choice(["imagenet", "cifar"]), help="Only this family.")
@click.option("--plain/--residual", "plain", default=None, help="Only plain nets / only ResNets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(family, plain, as_json):
    """List every network in the registry with parameters, MACs and default input size.

    MACs are multiply-accumulates of the convolutions and the classifier at the default input size
    (Table 1 calls them FLOPs). The "paper" column quotes the paper's own figure where it gives one.
    """
    from resnet_edge.arch import spec as S
    from resnet_edge.ui import si, table

    rows = []
    for name in S.list_models(family=family, plain=plain):
        spec = S.default_spec(name)
        counts = S.count(spec)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "depth": spec.depth,
                "block": spec.block,
                "stages": "-".join(map(str, spec.stage_blocks)),
                "shortcut": "none" if spec.plain else spec.shortcut,
                "input_size": spec.input_size,
                "classes": spec.classes,
                "params": counts.trainable_params,
                "macs": counts.macs,
                "paper": S.paper_reference(spec),
            }
        )

    def human(rows):
        shown = [{**r, "params": si(r["params"]), "macs": si(r["macs"]), "input_size": f"{r['input_size']}x{r['input_size']}"} for r in rows]
        cols = [("name", "name"), ("family", "family"), ("block", "block"), ("stages", "blocks"),
                ("shortcut", "shortcut"), ("params", "params"), ("macs", "MACs"), ("input_size", "input"),
                ("paper", "paper")]
        return table(shown, cols, right={"params", "macs"})

    _echo_json_or(rows, as_json, human)


@cli.command()
@click.option("--depth", "-d", type=DEPTH, help="Network depth: 18/34/50/101/152 (ImageNet) or 6n+2 (CIFAR).")
@click.option("--model", "-m", "model_name", help="A registry name instead of --depth (see `resnet-edge models`).")
@click.option("--family", type=click.Choice(["imagenet", "cifar"]), help="Default: ImageNet for Table 1 depths, else CIFAR.")
@click.option("--plain", is_flag=True, help="The plain counterpart: same layers, no shortcuts.")
@click.option("--shortcut", type=click.Choice(["A", "B", "C"], case_sensitive=False), metavar="[A|B|C]",
              help="A: zero-padded identity (CIFAR default); B: projection where the shape changes (ImageNet default); C: all projections.")
@click.option("--variant", type=click.Choice(["v1", "v1.5"]),
              help="Bottleneck stride on the first 1x1 (v1, the paper; the default) or on the 3x3 (v1.5; "
                   "torchvision's). --weights decides it.")
@click.option("--input-size", type=SIZE, help="Square input side in pixels. Default: 224 (ImageNet), 32 (CIFAR).")
@click.option("--classes", type=CLASSES, help="Number of classes. Default: 1000 (ImageNet), 10 (CIFAR).")
@click.option("--raw-input", type=click.Choice(["float32", "uint8"]),
              help="Build normalization into the model: it then takes raw 0..255 pixels of this dtype.")
@click.option("--mean", callback=_triple("mean"), help="Per-channel mean for --raw-input, in 0..255 units (R,G,B). Default: ImageNet's.")
@click.option("--std", callback=_triple("std"), help="Per-channel std for --raw-input, in 0..255 units (R,G,B). Default: ImageNet's.")
@click.option("--logits", is_flag=True, help="End with logits instead of softmax probabilities.")
@click.option("--force", is_flag=True, help="Allow an input so small that the last stage sees a 1x1 map.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Start from ImageNet weights: a Keras Applications ResNet50/101/152 .h5 file or a torchvision/timm "
                   ".safetensors state dict (their normalization is built in; --classes N gives a new classifier); "
                   "'imagenet' finds the published file in $RESNET_EDGE_WEIGHTS or ~/.keras/models.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Output file (.keras or .h5). Default: NAME.keras.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(depth, model_name, family, plain, shortcut, variant, input_size, classes, raw_input, mean, std, logits,
          force, weights, out, as_json):
    """Build a ResNet (or plain net) of the paper as a Keras model and write it atomically.

    Writes OUT and its manifest OUT.json (recipe, parameters, MACs, sha256). The weights are freshly
    initialized (train the model before trusting any accuracy figure), or loaded from --weights.
    """
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve

    if (mean or std) and not raw_input:
        raise click.UsageError("--mean/--std describe built-in normalization: add --raw-input float32 or uint8")
    preprocess = Preprocess(mean or IMAGENET_MEAN, std or IMAGENET_STD, raw_input) if raw_input else None
    wf = new_classifier = None
    if weights:
        wf, depth, variant, classes, preprocess, new_classifier = _weights_options(
            weights, depth, model_name, family, plain, variant, classes, raw_input, mean or std)
        family = "imagenet"
    spec = resolve(
        depth,
        model=model_name,
        family=family,
        plain=plain or None,
        shortcut=shortcut,
        variant=variant or "v1",
        input_size=input_size,
        classes=classes,
        preprocess=preprocess,
        classifier_activation=None if logits else "softmax",
        force=force,
    )
    out = out or f"{spec.name}.keras"
    if not as_json:
        click.echo(f"Building {spec.name} ...", err=True)
    from resnet_edge.build import build as build_model

    summary = build_model(spec, out, weights=wf, new_classifier=bool(new_classifier))
    _echo_json_or(summary, as_json, _build_human)


def _weights_options(path, depth, model_name, family, plain, variant, classes, raw_input, normalization_given):
    """Check the options that --weights decides (before TensorFlow is imported); return the weights file's
    description and the depth, variant, classes, normalization and whether the classifier is new."""
    from resnet_edge.arch.spec import Preprocess
    from resnet_edge.arch.weights import describe, imagenet_file

    if model_name or plain or family == "cifar":
        raise click.UsageError("--weights loads an ImageNet ResNet: give --depth (or nothing: the file says), not "
                               "--model, --plain or --family cifar")
    if path == "imagenet":
        if depth is None:
            raise click.UsageError("--weights imagenet needs --depth (18, 34, 50, 101 or 152)")
        path, warning = imagenet_file(depth, variant)
        if warning:
            click.echo(f"warning: {warning}", err=True)
    wf = describe(path)
    if depth is not None and depth != wf.depth:
        raise ConfigError(f"{Path(path).name} holds ResNet-{wf.depth} weights, not ResNet-{depth}: "
                          f"drop --depth or give --depth {wf.depth}")
    if variant is not None and variant != wf.variant:
        raise ConfigError(f"{Path(path).name} is a {wf.variant} network ({wf.format}), not {variant}")
    if normalization_given:
        raise click.UsageError(f"--mean/--std: the weights decide the normalization ({wf.format}: mean "
                               f"{', '.join(f'{v:g}' for v in wf.mean)}, std {', '.join(f'{v:g}' for v in wf.std)})")
    new_classifier = wf.classes is None or (classes is not None and classes != wf.classes)
    from resnet_edge.arch.weights import check_file

    check_file(wf)  # every tensor against the plan, before TensorFlow loads and before anything is written
    return (wf, wf.depth, wf.variant, classes or wf.classes or 1000, Preprocess(wf.mean, wf.std, raw_input or "float32"),
            new_classifier)


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None


@cli.command()
@click.option("--model", "-m", "model_name", help="Registry name, e.g. resnet20 or plain56 (see `resnet-edge models`).")
@click.option("--depth", "-d", type=DEPTH, help="Depth instead of --model (18..152 ImageNet, 6n+2 CIFAR).")
@click.option("--family", type=click.Choice(["imagenet", "cifar"]), help="Family for --depth.")
@click.option("--plain", is_flag=True, default=None, help="Train the plain counterpart (no shortcuts).")
@click.option("--shortcut", type=click.Choice(["A", "B", "C"], case_sensitive=False), metavar="[A|B|C]", help="Shortcut option (default: the family's).")
@click.option("--input-size", type=SIZE, help="Model input side (image folders only; other sources fix it).")
@DATA_OPTION
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run directory (checkpoints, models, history).")
@click.option("--epochs", type=EPOCHS, default=15, show_default=True,
              help="Passes over the training split (with --weights: enough for 500 steps, at least 15).")
@click.option("--batch-size", type=BATCH, default=128, show_default=True, help="Images per step (the paper: 128).")
@click.option("--lr", type=Finite(0, 100, min_open=True), default=0.1, show_default=True,
              help="Initial learning rate (with --weights: 0.003, the new classifier's).")
@click.option("--momentum", type=Finite(0, 1, max_open=True), default=0.9, show_default=True, help="SGD momentum (the paper: 0.9).")
@click.option("--weight-decay", type=Finite(0, 1), default=1e-4, show_default=True,
              help="L2 weight decay on the kernels (the paper: 1e-4).")
@click.option("--lr-boundaries", callback=_floats, help="Learning-rate drops as fractions of the run (default: 0.5,0.75 CIFAR; 0.333,0.667 ImageNet).")
@click.option("--warmup", default="auto", show_default=True,
              help="lr/10 first: auto = until training error < 80% (the paper's rule for ResNet-110), 0 = off, N = N steps "
                   "(with --weights: 0).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seeds initialization, data order and augmentation (same seed, same run).")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Transfer learning: start from ImageNet weights (a Keras Applications .h5, a torchvision/timm "
                   ".safetensors, or 'imagenet'); the file decides the network and its normalization, the classifier "
                   "is new. Then --freeze, --head-epochs and --fine-tune-lr apply.")
@click.option("--freeze", metavar="backbone|none|stages:N", help="With --weights: what stays frozen while fine-tuning: backbone (only the classifier "
                               "ever trains), stages:N (the stem and the first N of the 4 stages), none. Default from "
                               "the data: under 20 training images a class backbone, under 100 stages:2, else none.")
@click.option("--head-epochs", type=click.IntRange(0), help="With --weights: epochs that train only the new classifier "
              "(frozen backbone, BatchNorm in inference mode) before fine-tuning. Default: a quarter of --epochs.")
@click.option("--fine-tune-lr", type=Finite(0, 100, min_open=True),
              help="With --weights: the fine-tune phase's learning rate, dropped like --lr. Default: --lr / 10.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Write the checkpoint (and best.keras) after every N-th epoch and the last; a resume trains the "
                   "epochs after the newest checkpoint again, to the same result.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default", show_default=True,
              help="tf.distribute strategy (mirrored: all GPUs, or all logical CPUs; multiworker: cluster from TF_CONFIG).")
@click.option("--cpu-devices", type=click.IntRange(1, 256), help="Split the CPU into N logical devices (try mirrored training without GPUs).")
@click.option("--limit", type=LIMIT, help="Use at most N examples of each split (quick runs).")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping and counting it.")
@click.option("--force", is_flag=True, help="Allow an input so small that the last stage sees a 1x1 map.")
@click.option("--json", "as_json", is_flag=True, help="Print the final manifest as JSON.")
def train(model_name, depth, family, plain, shortcut, input_size, source, out, epochs, batch_size, lr, momentum,
          weight_decay, lr_boundaries, warmup, seed, weights, freeze, head_epochs, fine_tune_lr, resume, checkpoint_every,
          strategy, cpu_devices, limit, strict, force, as_json):
    """Train a ResNet with the paper's recipe on real data, with a checkpoint every epoch (--checkpoint-every).

    \b
    Example: resnet-edge train --model resnet20 --data digits --epochs 15 --out runs/r20
    After an interruption (even kill -9), the same command with --resume continues from the last
    checkpoint and ends where an uninterrupted run would have ended.

    \b
    Transfer learning from ImageNet weights, on a folder with a sub-folder of images per class:
      resnet-edge train --weights resnet18.tv_in1k.safetensors --data folder:photos --out runs/mine
    trains the new classifier on the frozen backbone first (--head-epochs), then fine-tunes what
    --freeze leaves free at --fine-tune-lr.
    """
    from resnet_edge.arch.spec import spec_from_dict
    from resnet_edge.data import load
    from resnet_edge.io import check_run_folder
    from resnet_edge.train import Recipe, saved_run, spec_for_data, train as run_training

    check_run_folder(out)
    ctx = click.get_current_context()
    given = {name for name in ctx.params if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    recipe_args = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                   "lr_boundaries": lr_boundaries, "warmup": _warmup(warmup), "seed": seed}
    saved = saved_run(out) if resume else None
    if resume and not saved:
        raise click.ClickException(f"nothing to resume in {out}: no checkpoint there; drop --resume to start a run")
    if saved:  # --resume: what was not given again comes from the checkpoint
        recipe_args = {**saved["recipe"], **{k: v for k, v in recipe_args.items() if k in given}}
        recipe_args["lr_boundaries"] = tuple(recipe_args["lr_boundaries"]) if recipe_args["lr_boundaries"] else None
        source = source if "source" in given else saved["data"]
        limit = limit if "limit" in given else saved["limit"]
    transfer = {"freeze": freeze, "head_epochs": head_epochs, "fine_tune_lr": fine_tune_lr}
    asked = any(v is not None for v in transfer.values())
    if saved:
        transfer = {k: transfer[k] if k in given else saved["recipe"].get(k) for k in transfer}
        recipe_args = {k: v for k, v in recipe_args.items() if k not in transfer}
    wf = _train_weights(weights, asked, saved, depth, model_name, family, plain, source)
    depth = wf.depth if wf else depth
    tuning = bool(wf or (saved and saved.get("weights")))
    early = dict(recipe_args)  # checked before the data loads; the defaults that depend on it come after
    if tuning and not saved and "epochs" not in given:
        early["epochs"] = max(early["epochs"], transfer["head_epochs"] or 0)
    recipe = _transfer_recipe(early, transfer, tuning)
    model_given = given & {"model_name", "depth", "family", "plain", "shortcut", "input_size"}
    if not saved or model_given:
        _check_model_choice(model_name, depth, family, plain, input_size, source)
    data = load(source, strict=strict)
    if data.skipped and not as_json:
        click.echo(f"skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]} (--strict fails instead)", err=True)
    if saved and not model_given:
        spec = spec_from_dict(saved["spec"])
    else:
        spec = spec_for_data(data, model=model_name, depth=depth, family=family, plain=plain, shortcut=shortcut,
                             input_size=input_size, force=force, weights=wf)
    if wf and not saved:
        from resnet_edge.train import TRANSFER_LR, default_transfer_epochs

        images = min(len(data.train), limit or len(data.train))
        if "lr" not in given:
            recipe_args["lr"] = TRANSFER_LR
        if "warmup" not in given:
            recipe_args["warmup"] = 0
        if "epochs" not in given:
            recipe_args["epochs"] = default_transfer_epochs(images, recipe_args["batch_size"])
        recipe = _transfer_recipe(recipe_args, transfer, tuning, images, data.num_classes)
    if not as_json:
        sizes = f"{min(len(data.train), limit or len(data.train))} train / {min(len(data.val), limit or len(data.val))} val images"
        click.echo(f"{'Resuming' if saved else 'Training'} {spec.name} on {data.name} ({sizes}) in {out}", err=True)
    manifest = run_training(spec, data, out, recipe, weights=wf, resume=resume, strategy=strategy,
                            cpu_devices=cpu_devices, limit=limit, verbose=0 if as_json else None,
                            checkpoint_every=checkpoint_every)
    _echo_json_or(manifest, as_json, _train_human)


def _train_weights(weights, asked, saved, depth, model_name, family, plain, source):
    """The weights file of a transfer run (None for a run from scratch, and for a resumed one not given it
    again), its options checked before TensorFlow loads. ``asked``: a transfer option was given."""
    if not weights:
        if asked and not (saved and saved.get("weights")):
            raise click.UsageError("--freeze, --head-epochs and --fine-tune-lr are for transfer learning: "
                                   "add --weights FILE (or --weights imagenet)")
        return None
    size = FIXED_SIZE_SOURCES.get(source.partition(":")[0])
    if size:
        raise click.UsageError(f"ImageNet weights need an ImageNet network (images of 64 px and more) and the images of "
                               f"{source} are {size}x{size}: use --data folder:DIR, one sub-folder of images per class")
    if saved and not saved.get("weights"):
        raise click.UsageError("the run in the --out folder started from scratch: drop --weights to resume it")
    return _weights_options(weights, depth, model_name, family, plain, None, None, None, False)[0]


def _transfer_recipe(recipe_args: dict, transfer: dict, tuning: bool, train_images: int | None = None,
                     classes: int | None = None):
    """The run's Recipe (``tuning``: a transfer run). Without the data's size (before it loads) the transfer
    options are only checked; with it, what was not given gets its default (``train.default_freeze``,
    ``train.default_head_epochs``)."""
    from resnet_edge.train import Recipe, default_freeze, default_head_epochs, frozen_stages

    if not tuning:
        return Recipe(**recipe_args)
    freeze = transfer["freeze"] or (default_freeze(train_images, classes) if train_images is not None else "none")
    frozen_stages(freeze)  # a bad value is named before the head default is worked out from it
    head = transfer["head_epochs"]
    head = default_head_epochs(freeze, recipe_args["epochs"]) if head is None else head
    return Recipe(**recipe_args, freeze=freeze, head_epochs=head, fine_tune_lr=transfer["fine_tune_lr"])


#: Sources whose images always have one size: a model for them can be advised before they load.
FIXED_SIZE_SOURCES = {"digits": 32, "cifar10": 32}


def _check_model_choice(model_name, depth, family, plain, input_size, source) -> None:
    """A missing, unknown or unfitting model, said before the data and TensorFlow load; for the 32x32
    sources the advice names a CIFAR ResNet that fits, so one more try is enough."""
    from resnet_edge.arch.spec import resolve

    size = FIXED_SIZE_SOURCES.get(source.partition(":")[0])
    fits = f"{'plain' if plain else 'resnet'}20 (or {'plain' if plain else 'resnet'}32, 44, 56, 110)"
    if model_name is None and depth is None:
        hint = f"; for the {size}x{size} images of {source}: --model {fits}" if size else " (see `resnet-edge models`)"
        raise click.UsageError(f"give --model or --depth{hint}")
    probe = resolve(depth, model=model_name, family=family, plain=plain or None, force=True)  # unknown names fail here
    if size and probe.family == "imagenet" and input_size is None:
        raise click.UsageError(f"{probe.name} is an ImageNet network (for images of 64 px and more) and the images of "
                               f"{source} are {size}x{size}: use a CIFAR-family net, --model {fits}")


def _warmup(value: str):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"expected auto, 0 or a number of steps, got {value!r}", param_hint="--warmup") from None


def _warmup_text(m: dict) -> str:
    ended = m["warmup_ended_at_step"]
    if ended is not None:
        return f"lr/10 for the first {ended} steps"
    if m["recipe"]["warmup"] == 0:
        return "none"
    return "lr/10 for the whole run (training error stayed above 80%)" if m["recipe"]["warmup"] == "auto" else \
        "lr/10 for the whole run (shorter than --warmup)"


def _start_text(m: dict) -> str:
    from resnet_edge.train import FINE_TUNE_FACTOR, describe_freeze

    r = m["recipe"]
    text = f"{m['weights']['file']} ({m['weights']['format']}), new classifier"
    if r["freeze"] == "backbone":
        return f"{text}; only the classifier trained (--freeze backbone)"
    tune = r["fine_tune_lr"] if r["fine_tune_lr"] is not None else r["lr"] * FINE_TUNE_FACTOR
    return (f"{text}; {r['head_epochs']} head epoch(s) at lr {r['lr']:g}, then fine-tuned at {tune:g} "
            f"({describe_freeze(r['freeze'])})")


def _train_human(m: dict) -> str:
    from resnet_edge.ui import key_values

    f, b = m["final"], m["best"]
    return key_values([
        ("model", f"{m['name']} on {m['data']['source']}"),
        ("epochs", f"{m['epochs_done']} ({f['step']} steps, strategy {m['strategy']['name']} x{m['strategy']['replicas']})"),
        ("final", f"train acc {f['train_acc']:.2%}, val acc {f['val_acc']:.2%}, loss {f['loss']:.4f}"),
        ("best", f"val acc {b['val_acc']:.2%} at epoch {b['epoch']} (best.keras)"),
        *([("start", _start_text(m))] if m.get("weights") else []),
        ("warm-up", _warmup_text(m)),
        ("time", f"{m['seconds_total']:.1f} s training, {m['seconds_total'] / max(1, m['epochs_done']):.2f} s per epoch"),
        ("written", "model.keras, best.keras, history.csv/json, curves.png, checkpoints/"),
    ])


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@DATA_OPTION
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--batch-size", type=BATCH, default=256, show_default=True)
@click.option("--limit", type=LIMIT, help="Evaluate at most N examples.")
@click.option("--strict", is_flag=True, help="Fail on an unreadable image instead of skipping it.")
@TRUST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the full confusion matrix).")
def evaluate(model_path, source, split, batch_size, limit, strict, trust, as_json):
    """Accuracy of a Keras MODEL on a data split: top-1, top-5, per class, most confused pairs."""
    _check_model_file(model_path, trust)
    from resnet_edge.data import load
    from resnet_edge.evaluate import evaluate as run_evaluation

    result = run_evaluation(model_path, load(source, strict=strict), split, batch_size, limit, trust=trust)
    _echo_json_or(result, as_json, _evaluate_human)


def _evaluate_human(r: dict) -> str:
    from resnet_edge.ui import key_values, table

    k = r["top_k"]
    head = key_values([
        ("model", safe_text(r["model"], 300)),
        ("data", f"{r['data']} ({r['split']}, {r['n']} images)"),
        ("top-1", f"{r['top1']:.2%}"),
        (f"top-{k}", f"{r[f'top{k}']:.2%}"),
    ])
    per_class = table(
        [{**c, "accuracy": "-" if c["accuracy"] is None else f"{c['accuracy']:.1%}"} for c in r["per_class"]],
        [("class", "class"), ("n", "n"), ("accuracy", "accuracy")], right={"n", "accuracy"},
    )
    confused = ", ".join(f"{c['true']}->{c['predicted']} x{c['count']}" for c in r["most_confused"][:5]) or "none"
    return f"{head}\n\n{per_class}\n\nmost confused (true->predicted): {confused}"


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@DATA_OPTION
@click.option("--epochs", type=EPOCHS0, default=2, show_default=True, help="Fine-tuning epochs with fake quantization.")
@click.option("--lr", type=Finite(0, 100, min_open=True), default=1e-4, show_default=True,
              help="Fine-tuning learning rate (SGD, momentum 0.9). 1e-3 let the digits ResNet-20 drift to 69% in 3 epochs.")
@click.option("--batch-size", type=BATCH, default=128, show_default=True)
@click.option("--limit", type=LIMIT, help="Use at most N examples of each split (quick runs).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="QAT model (.h5: tfmot's QAT layers reload only from HDF5).")
@TRUST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def qat(model_path, source, epochs, lr, batch_size, limit, out, trust, as_json):
    """Quantization-aware training (tfmot, default 8-bit scheme) of a trained float MODEL.

    Writes OUT and OUT.json: validation accuracy of the float model, the QAT model and its full-int8
    TFLite conversion (no calibration data needed), and every layer's fate (quantized, folded,
    pass-through, or left in float and why).
    """
    _check_model_file(model_path, trust)
    from resnet_edge.data import load
    from resnet_edge.optimize.qat import qat as run_qat

    manifest = run_qat(model_path, load(source), out, epochs=epochs, lr=lr, batch_size=batch_size, limit=limit,
                       verbose=0 if as_json else 2, trust=trust)
    _echo_json_or(manifest, as_json, _qat_human)


def _qat_human(m: dict) -> str:
    from resnet_edge.ui import key_values

    a = m["accuracy"]
    counts = {}
    for row in m["layers"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    left = ", ".join(f"{r['layer']} ({r['why']})" for r in m["left_in_float"]) or "none"
    return key_values([
        ("written", m["file"]["path"]),
        ("val accuracy", f"float {a['float']:.2%} -> QAT Keras {a['qat_keras']:.2%} -> int8 TFLite {a['int8_tflite']:.2%}"),
        ("int8 TFLite", f"{m['int8_tflite']['bytes']:,} bytes, top-1 agreement with QAT Keras {m['int8_tflite']['top1_agreement']:.2%}"),
        ("layers", ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))),
        ("left in float", left),
    ])


def _ratio(ctx, param, value):
    if value is not None and not 0 < value <= 1:
        raise click.BadParameter(f"must be in (0, 1], got {value}")
    return value


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@DATA_OPTION
@click.option("--sparsity", type=Finite(0, 1, min_open=True, max_open=True), default=0.5, show_default=True, help="Target share of zero weights (magnitude pruning).")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial", show_default=True)
@click.option("--structure", help="M:N structured sparsity, e.g. 2:4 (overrides --sparsity).")
@click.option("--skip", default="", help="Layers left dense: first, last and/or layer names, comma-separated.")
@click.option("--pqat", is_flag=True, help="Then prune-preserving QAT: the int8 model keeps the zeros.")
@click.option("--clusters", type=click.IntRange(2, 65_536), help="Weight clustering into N shared values instead of pruning.")
@click.option("--channels", type=Finite(), callback=_ratio, help="Channel pruning instead: keep this share of each block's inner channels.")
@click.option("--criterion", type=click.Choice(["l1", "bn"]), default="l1", show_default=True,
              help="Channel ranking: L1 norm of the filters, or |BatchNorm scale|.")
@click.option("--epochs", type=EPOCHS0, default=2, show_default=True, help="Fine-tuning epochs.")
@click.option("--lr", type=Finite(0, 100, min_open=True), default=0.01, show_default=True,
              help="Fine-tuning learning rate (PQAT's QAT phase uses 1e-4).")
@click.option("--batch-size", type=BATCH, default=128, show_default=True)
@click.option("--limit", type=LIMIT, help="Use at most N examples of each split (quick runs).")
@click.option("--max-drop", type=Finite(0, 100),
              help="--channels: fail (exit 1, model kept) if val accuracy ends more than P points below the source.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Pruned model (.keras or .h5; .h5 with --pqat).")
@TRUST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def prune(model_path, source, sparsity, schedule, structure, skip, pqat, clusters, channels, criterion, epochs, lr,
          batch_size, limit, max_drop, out, trust, as_json):
    """Prune a trained MODEL: magnitude (unstructured or M:N), clustering, or whole channels.

    \b
    Magnitude pruning and clustering shrink the compressed file (gzip sizes are reported); they do not
    make dense kernels faster. --channels removes filters inside every residual block and rebuilds a
    thinner dense ResNet: fewer MACs, lower latency on every runtime.
    """
    _check_model_file(model_path, trust)
    from resnet_edge.data import load

    data = load(source)
    verbose = 0 if as_json else 2
    if max_drop is not None and channels is None:
        raise click.UsageError("--max-drop applies to --channels (channel pruning)")
    if channels is not None:
        if pqat or clusters or structure:
            raise click.UsageError("--channels does not combine with --pqat, --clusters or --structure")
        from resnet_edge.optimize.channels import channel_prune

        manifest = channel_prune(model_path, data, out, keep=channels, criterion=criterion, epochs=epochs,
                                 lr=lr, batch_size=batch_size, limit=limit, verbose=verbose, trust=trust,
                                 max_drop=max_drop)
        return _echo_json_or(manifest, as_json, _channels_human)
    from resnet_edge.optimize.prune import prune as run_prune

    manifest = run_prune(model_path, data, out, sparsity=sparsity, schedule=schedule, structure=structure,
                         skip=tuple(s for s in skip.split(",") if s), epochs=epochs, lr=lr,
                         batch_size=batch_size, limit=limit, pqat=pqat, clusters=clusters, verbose=verbose,
                         trust=trust)
    _echo_json_or(manifest, as_json, _prune_human)


def _prune_human(m: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, table

    a, g = m["accuracy"], m["gzip_bytes"]
    pairs = [
        ("written", m["file"]["path"]),
        ("method", _method_text(m["settings"])),
        ("sparsity", f"{m['sparsity']:.2%} of the pruned kernels' weights are zero"),
        ("val accuracy", f"{a['before']:.2%} -> {a['after']:.2%}"),
        ("gzip float32", f"{human_bytes(g['float32_tflite_before'])} -> {human_bytes(g['float32_tflite_after'])} (raw {human_bytes(g['float32_tflite_raw'])})"),
    ]
    if "int8_tflite" in m:
        t = m["int8_tflite"]
        pairs.append(("PQAT int8", f"val accuracy {a['int8_tflite']:.2%}; zeros in int8 weights {t['weight_sparsity']['sparsity']:.2%}; gzip {human_bytes(t['gzip_bytes'])}"))
    rows = [{**r, "sparsity": f"{r['sparsity']:.1%}"} for r in m["layers"]]
    cols = [("layer", "layer"), ("weights", "weights"), ("sparsity", "sparsity")]
    if rows and "unique_values" in rows[0]:
        cols.append(("unique_values", "values"))
    if rows and "m_by_n_ok" in rows[0]:
        cols.append(("m_by_n_ok", "M:N ok"))
    return key_values(pairs) + "\n\n" + table(rows, cols, right={"weights", "sparsity", "unique_values"})


def _method_text(settings: dict) -> str:
    """'magnitude: sparsity 0.5, schedule polynomial, epochs 2' (the method named once, then its settings)."""
    rest = [f"{k.replace('_', ' ')} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in settings.items()
            if k != "method" and v not in (None, [], "") and k not in ("lr", "batch_size", "limit")]
    return f"{settings.get('method', '?')}: {', '.join(rest)}" if rest else str(settings.get("method", "?"))


def _channels_human(m: dict) -> str:
    from resnet_edge.ui import key_values, si

    a, c = m["accuracy"], m["counts"]
    return key_values([
        ("written", f"{m['file']['path']} ({m['name']})"),
        ("kept", f"{m['settings']['keep']:.0%} of inner channels by {m['settings']['criterion']}"),
        ("MACs", f"{si(c['before']['macs'])} -> {si(c['after']['macs'])} ({c['mac_ratio']:.2f}x)"),
        ("parameters", f"{c['before']['trainable_params']:,} -> {c['after']['trainable_params']:,}"),
        ("val accuracy", f"{a['before']:.2%} -> {a['thinned_before_fine_tune']:.2%} thinned -> "
                         f"{a['batchnorm_recalibrated']:.2%} BatchNorm re-estimated -> {a['after']:.2%} fine-tuned"),
        *([("WARNING", f"accuracy is {a['drop_points']:.2f} points below the source: fine-tune longer (--epochs)")]
          if m.get("status") == "dropped" else []),
    ])


@cli.command()
@click.argument("model_path", metavar="[MODEL]", required=False, type=click.Path(dir_okay=False))
@click.option("--depth", "-d", type=DEPTH, help="Build a fresh model of this depth instead of reading MODEL.")
@click.option("--model", "-m", "model_name", help="Build this registry model instead of reading MODEL.")
@click.option("--family", type=click.Choice(["imagenet", "cifar"]), help="Family for --depth.")
@click.option("--classes", type=CLASSES, help="Classes of a model built here (default: the data's when it fits, else the family's).")
@click.option("--float32", "want_float32", is_flag=True, help="Float32 (the default when no mode is given).")
@click.option("--float16", "want_float16", is_flag=True, help="Float16 weights (half size; GPU-friendly).")
@click.option("--dynamic", "want_dynamic", is_flag=True, help="Dynamic range: int8 weights, float activations.")
@click.option("--int8", "want_int8", is_flag=True, help="Full integer: int8 weights and activations.")
@click.option("--int16x8", "want_int16x8", is_flag=True, help="16-bit activations, 8-bit weights.")
@click.option("--io", type=click.Choice(["float32", "int8", "uint8"]), default="float32", show_default=True,
              help="Input/output type of the --int8 model.")
@DATA_OPTION
@click.option("--calibration", type=SAMPLES, default=100, show_default=True, help="Representative samples for --int8/--int16x8.")
@click.option("--calibrator", type=click.Choice(["resnet-edge", "tensorflow"]), default="resnet-edge", show_default=True,
              help="Who measures --int8's activation ranges: resnet-edge (XNNPACK on every core) or tensorflow "
                   "(TensorFlow's calibrator, one image at a time on one core; --int16x8 always uses it).")
@click.option("--samples", type=SAMPLES, help="Held-out test samples for the parity check (default 500; 100 when resized).")
@click.option("--target", "targets", multiple=True, type=click.Choice(["cpu", "gpu", "nnapi"]),
              help="Readiness report for this accelerator (repeatable).")
@click.option("--max-drop", type=Finite(0, 100), help="Fail (exit 1, model kept, manifest marked failed) if accuracy drops more than P points.")
@click.option("--out", "-o", help="Output .tflite (one mode) or directory (several). Default: NAME_MODE.tflite beside MODEL (here for --depth/--model).")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="With --depth (or alone): start from these ImageNet weights (.h5 of Keras Applications, "
                   ".safetensors of torchvision/timm, or 'imagenet': see `resnet-edge build --help`).")
@click.option("--author", default="", help="Author, in the standard metadata that app frameworks read.")
@click.option("--license", "license_", default="", help="License, in the standard metadata.")
@TRUST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
def convert(model_path, depth, model_name, family, classes, want_float32, want_float16, want_dynamic, want_int8,
            want_int16x8, io, source, calibration, calibrator, samples, targets, max_drop, out, weights, author, license_,
            trust, as_json):
    """Convert a Keras MODEL (plain, QAT or pruned) or a fresh --depth/--model to TFLite.

    \b
    Examples:
      resnet-edge convert --depth 18 --int8
      resnet-edge convert runs/r20/model.keras --int8 --float16 --target gpu --out out/
    Each mode writes NAME_MODE.tflite (labels, normalization, recipe and a checksum of its content
    inside, and the standard TFLite Metadata with labels.txt that MediaPipe, the Task Library and
    Android Studio read; use --io uint8 for an integer model in an app) and NAME_MODE.json (ops,
    quantization, parity with the Keras model on held-out data, converter settings, readiness, minimum
    runtime version, tflite-runtime 2.14 check), the two replaced together. MODEL is checked for code
    (a Lambda layer, ...) before it is loaded: --trust. --weights starts the fresh network from
    published ImageNet weights (see `resnet-edge build --help`).
    """
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve
    from resnet_edge.data import load
    from resnet_edge.export import convert as run_convert
    from resnet_edge.tflite.standard import check_text

    _check_model_file(model_path, trust)
    check_text("--author", author)
    check_text("--license", license_)
    modes = [m for m, on in (("float32", want_float32), ("float16", want_float16), ("dynamic", want_dynamic),
                             ("int8", want_int8), ("int16x8", want_int16x8)) if on] or ["float32"]
    wf = new_classifier = None
    if weights:
        if model_path:
            raise click.UsageError("--weights builds a fresh network: give --depth (or nothing), not a MODEL file")
        wf, depth, variant, wclasses, wpre, new_classifier = _weights_options(
            weights, depth, model_name, family, None, None, classes, None, False)
    data = load(source)
    spec = None
    if wf is not None:
        spec = resolve(depth, family="imagenet", variant=variant, classes=wclasses, preprocess=wpre)
        if not as_json:
            click.echo(f"Building {spec.name} from {wf.path.name} ({wf.format})"
                       + ("; its classifier is new and untrained" if new_classifier else "") + ".", err=True)
    elif depth is not None or model_name is not None:
        if model_path:
            raise click.UsageError("give a MODEL file or --depth/--model, not both")
        probe = resolve(depth, model=model_name, family=family)
        fits = probe.family == "cifar" and data.image_size == probe.input_size
        # normalization inside, so the model takes raw pixels as an app feeds them: the data's mean and std
        # when the model is for that data, else ImageNet's
        pre = Preprocess(tuple(data.mean), tuple(data.std), "float32") if fits else \
            Preprocess(IMAGENET_MEAN, IMAGENET_STD, "float32")
        spec = resolve(depth, model=model_name, family=family,
                       classes=classes or (data.num_classes if fits else None), preprocess=pre)
        if not as_json:
            click.echo(f"Building {spec.name} on the spot (normalization inside: it takes raw 0..255 pixels); its weights "
                       "are untrained, so its accuracy means nothing.", err=True)
    elif not model_path:
        raise click.UsageError("give a MODEL file, or --depth/--model to build one")
    if not as_json:
        click.echo(f"Converting to {', '.join(modes)} ...", err=True)
    from resnet_edge.export import MaxDropError
    from resnet_edge.ui import end_progress, progress_line

    show = progress_line(as_json)
    try:
        manifests = run_convert(model_path=model_path, spec=spec, modes=modes, out=out, data=data, calibration=calibration,
                                io=io, targets=tuple(targets), max_drop=max_drop, parity_samples=samples, trust=trust,
                                author=author, license=license_, weights=wf, new_classifier=bool(new_classifier),
                                calibrator=calibrator, progress=show)
    except MaxDropError as exc:  # the results first, then the failure line
        end_progress(show)
        _echo_json_or(exc.manifests, as_json, _convert_human)
        raise
    finally:
        end_progress(show)
    _echo_json_or(manifests, as_json, _convert_human)


def _convert_human(manifests: list) -> str:
    from resnet_edge.ui import human_bytes, table

    rows = []
    for m in manifests:
        p = m["parity"] or {}
        acc = "-" if p.get("tflite_accuracy") is None else f"{p['keras_accuracy']:.2%} -> {p['tflite_accuracy']:.2%}"
        io = m["quantization"]["inputs"][0]["dtype"] + "/" + m["quantization"]["outputs"][0]["dtype"]
        rows.append({"file": m["file"]["path"], "mode": m["mode"], "size": human_bytes(m["file"]["bytes"]), "io": io,
                     "agree": "-" if not p else (f"{p['top1_agreement']:.1%}" if _agreement_means_something(m)
                                                 else "n/a"),
                     "maxdiff": "-" if not p else f"{p['max_abs_diff']:.2e}", "acc": acc, "status": m["status"]})
    text = table(rows, [("file", "file"), ("mode", "mode"), ("size", "size"), ("io", "in/out"), ("agree", "top-1 agree"),
                        ("maxdiff", "max |diff|"), ("acc", "accuracy keras -> tflite"), ("status", "status")],
                 right={"size", "agree", "maxdiff"})
    lines = [text]
    for m in manifests:
        for target, r in m["readiness"].items():
            lines.append(_readiness_line(m["file"]["path"], target, r))
        c = m["compatibility"]
        old = c["tflite_runtime_2_14"]
        old_text = "not checked" if old is None else ("loads and runs" if old["ok"] else
                                                      (f"not checked: {old['error']}" if old["ok"] is None else f"FAILS: {old['error']}"))
        lines.append(f"{m['file']['path']}: needs TFLite runtime >= {c['min_runtime_version']}; tflite-runtime 2.14: {old_text}")
        for problem in (m.get("app_metadata") or {}).get("problems") or []:
            lines.append(f"{m['file']['path']} in apps: {problem}")
    if any(m["parity"] and not _agreement_means_something(m) for m in manifests):
        lines.append("top-1 agree n/a: the source model is untrained (or predicts one class for every test input), so "
                     "agreement says nothing; max |diff| of the outputs is the measure")
    for m in manifests:
        if m.get("written"):
            lines.append(f"wrote {safe_text(m['written']['model'], 300)} and its manifest {safe_text(m['written']['manifest'], 300)}")
    if manifests and manifests[0].get("untrained_warning"):
        lines.append("note: " + manifests[0]["untrained_warning"])
    return "\n".join(lines)


def _agreement_means_something(manifest: dict) -> bool:
    """Top-1 agreement means something for a trained model whose predictions spread over classes; an
    untrained net predicts one class, or a few, for every input, and agrees with itself by chance."""
    return bool(manifest["source"].get("trained")) and manifest["parity"].get("keras_distinct_predictions", 2) > 1


def _readiness_line(name: str, target: str, r: dict) -> str:
    if "error" in r:
        return f"{name} on {target}: {r['error']}"
    if r["ready"]:
        extra = f" ({_plural(r['partitions'], 'XNNPACK partition')} in {r.get('runtime', 'LiteRT')})" if target == "cpu" else ""
        line = f"{name} on {target}: ready, all {r['ops']} ops{extra}"
    else:
        what = ", ".join(f"{b['op']}#{b['index']}" for b in r["blockers"][:6])
        why = "; ".join(sorted({b["why"] for b in r["blockers"]}))
        parts = f", {_plural(r['partitions'], 'partition')} in {r.get('runtime', 'LiteRT')}" if target == "cpu" else ""
        line = f"{name} on {target}: {r['blocked']} of {r['ops']} ops blocked{parts}: {what} ({why})"
    if r.get("advice"):
        line += f"; {r['advice']}"
    return line


@cli.command()
@click.argument("model_path", metavar="MODEL.tflite", type=click.Path(dir_okay=False))
@click.option("--target", "targets", multiple=True, type=click.Choice(["cpu", "gpu", "nnapi"]),
              help="Readiness for these accelerators only (default: all three).")
@click.option("--no-verify", "no_verify", is_flag=True,
              help="Do not refuse a model of ours whose checksum does not match (look at a damaged file anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(model_path, targets, no_verify, as_json):
    """Ops, tensors, quantization, size, sparsity, metadata, signatures and accelerator readiness of a
    .tflite, read without TensorFlow.

    \b
    Metadata: resnet-edge's own entry (labels, normalization, recipe) and the standard TFLite Metadata
    that MediaPipe, the Task Library and Android Studio read, with every place where it disagrees with
    the model's tensors (PROBLEM lines). A damaged appended zip of associated files is an error.

    \b
    The checksum that resnet-edge writes into every model is verified first: a damaged model of ours
    is refused (--no-verify looks anyway); a model from another tool is shown as not verified. The
    flatbuffer is checked before it is read, and LiteRT loads and runs it in a child process with
    memory and time limits: a model the runtime cannot load is an error (exit 1).
    """
    from resnet_edge.tflite.inspect import inspect as run_inspect

    report = run_inspect(model_path, targets=tuple(targets) or ("cpu", "gpu", "nnapi"), verify=not no_verify)
    _echo_json_or(report, as_json, lambda r: _inspect_human(model_path, r))


def _inspect_human(path: str, r: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, safe_text, table

    shown = safe_text(path, 120)

    def io_text(t):
        q = t["quantization"]
        qt = "" if not q else (f" scale {q['scale']:.6g} zero {q['zero_point']}" if q["kind"] == "per-tensor" else " per-channel")
        return f"{t['name']} {t['shape']} {t['dtype']}{qt}"

    meta = r["metadata"] or {}
    check = r["integrity"]
    integrity_text = {"verified": "verified (the checksum resnet-edge wrote inside matches)",
                      "unverified": f"not verified: {check.get('why', '')}"}.get(check["status"], check["status"])
    pairs = [
        ("file", f"{shown} ({human_bytes(r['bytes'])}, sha256 {r['sha256'][:12]}...)"),
        ("integrity", integrity_text),
    ]
    if r.get("manifest"):
        mf = r["manifest"]
        pairs.append(("manifest", f"{mf['path']} matches" if mf["matches"] else f"{mf['path']} is STALE: {mf['why']}"))
    pairs += [
        ("size", f"weights {human_bytes(r['size']['weights'])}, graph and other {human_bytes(r['size']['graph_and_other'])}"),
        ("input", "; ".join(io_text(t) for t in r["inputs"])),
        ("output", "; ".join(io_text(t) for t in r["outputs"])),
        ("tensors", f"{r['tensors']}: " + ", ".join(f"{n} {k}" for k, n in sorted(r["tensor_dtypes"].items()))),
        ("quantization", f"{r['quantization']['per_channel_tensors']} per-channel, {r['quantization']['per_tensor_tensors']} per-tensor tensors"),
        ("weight sparsity", f"{r['weight_sparsity']['sparsity']:.1%} zeros in conv/FC weights ({', '.join(r['weight_sparsity']['dtypes']) or '-'})"),
        ("min runtime", r["min_runtime_version"] or "not recorded"),
        ("signatures", safe_text("; ".join(f"{s['key']}({', '.join(s['inputs'])}) -> {', '.join(s['outputs'])}"
                                           for s in r["signatures"]), 400) or "none"),
        ("metadata", ", ".join(r["metadata_entries"]) or "none"),
    ]
    if meta.get("error"):
        pairs.append(("model", meta["error"]))
    elif meta:
        labels = meta.get("labels") if isinstance(meta.get("labels"), list) else None
        pairs.append(("model", f"{meta.get('name')} ({meta.get('mode')}), {'trained' if meta.get('trained') else 'UNTRAINED'}"))
        pairs.append(("labels", "none" if not labels else f"{len(labels)}: {', '.join(map(str, labels[:10]))}{' ...' if len(labels) > 10 else ''}"))
        norm = meta.get("normalization")
        pairs.append(("normalization", "none (feed normalized input)" if not isinstance(norm, dict) else
                      f"inside the model: mean {_short(norm.get('mean'))}, std {_short(norm.get('std'))} (feed raw 0..255 pixels)"))
    pairs += app_metadata_pairs(r.get("app_metadata"))
    ops = table([{"op": k, "n": v, "version": r["op_versions"][k]} for k, v in r["ops"].items()],
                [("op", "op"), ("n", "count"), ("version", "version")], right={"n", "version"})
    ready = "\n".join(_readiness_line(shown, t, rep) for t, rep in r["readiness"].items())
    return f"{key_values(pairs)}\n\n{ops}\n\n{ready}"


def app_metadata_pairs(app: dict | None) -> list[tuple[str, str]]:
    """The lines of ``inspect`` (and ``metadata``) about the standard metadata that app frameworks read."""
    if app is None:
        return [("app metadata", "none: MediaPipe and the Task Library cannot use this model as it is "
                                 "(add it: resnet-edge metadata MODEL --labels FILE)")]
    if app.get("error"):
        return [("app metadata", f"DAMAGED: {app['error']}")]
    norm, rng = app.get("normalization"), app.get("input_range")
    labels = app.get("labels")
    pairs = [
        ("app metadata", f"TFLITE_METADATA: {app.get('name') or '(no name)'}"
                         + (f", version {app['version']}" if app.get("version") else "")
                         + (f", by {app['author']}" if app.get("author") else "")
                         + (f", license {app['license']}" if app.get("license") else "")),
        ("  labels", "none (apps show class indices)" if labels is None else
         f"{labels} in {app.get('labels_file')}: {', '.join(map(str, app.get('first_labels') or []))}"
         + (" ..." if labels > len(app.get("first_labels") or []) else "")),
        ("  normalization", "none" if not norm else
         f"(pixel - {_short(norm.get('mean'))}) / {_short(norm.get('std'))}, {app.get('color_space') or 'UNKNOWN'}"),
        ("  input range", "not stated" if not rng else f"{_short(rng.get('min'))} .. {_short(rng.get('max'))}"),
    ]
    for problem in app.get("problems") or []:
        pairs.append(("  PROBLEM", problem))
    return pairs


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _short(values) -> str:
    """Per-channel statistics with a sensible number of digits: [77.996, 78.0] -> [78.0, 78.0]."""
    if not isinstance(values, list):
        return str(values)
    return "[" + ", ".join(f"{v:.4g}" if isinstance(v, (int, float)) else str(v) for v in values[:8]) + "]"


def _build_human(s: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, si

    spec, c = s["spec"], s["counts"]
    shortcut = "none (plain)" if spec["plain"] else spec["shortcut"]
    stages = "-".join(str(n) for n in s["stages"])
    size = spec["input_size"]
    pre = spec.get("preprocess")
    pairs = [
        ("model", s["name"]),
        ("family", f"{spec['family']}, {s['block']} blocks {stages}, shortcut {shortcut}"
                   + (f", {spec['variant']}" if s["block"] == "bottleneck" else "")),
        ("input", f"{size}x{size}x3 {s['input']['dtype']}" + (f" raw pixels, normalized inside (mean {pre['mean']}, std {pre['std']})" if pre else "")),
        ("classes", f"{spec['classes']} ({spec['classifier_activation'] or 'logits'})"),
        ("parameters", f"{c['trainable_params']:,} trainable, {c['total_params']:,} total"),
        ("MACs", f"{si(c['macs'])}" + (f"  (paper: {s['paper']})" if s.get("paper") else "")),
        ("layers", f"{c['conv_layers']} conv + 1 dense; {s['layers']} Keras layers"),
    ]
    if "file" in s:
        f = s["file"]
        pairs.append(("written", f"{f['path']} ({human_bytes(f['bytes'])}, sha256 {f['sha256'][:12]}...) + manifest"))
    w = s.get("weights")
    if w:
        pairs.append(("weights", f"{w['file']} ({w['format']}): {w['layers']} layers, {w['tensors']} tensors; "
                                 + ("a new classifier: fine-tune it" if w["classifier"] == "new" else "classifier loaded")))
    else:
        pairs.append(("note", "weights are untrained: accuracy means nothing until you train it"))
    return key_values(pairs)


# The edge-side commands live in their own module (they import no TensorFlow).
from resnet_edge.cli_edge import bench, eval_  # noqa: E402
from resnet_edge.cli_targets import devices, results, sweep  # noqa: E402
from resnet_edge.cli_metadata import metadata  # noqa: E402

cli.add_command(bench)
cli.add_command(eval_)
cli.add_command(devices)
cli.add_command(sweep)
cli.add_command(results)


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="resnet-edge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
