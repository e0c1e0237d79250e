"""The host-side commands: ``models``, ``build``, ``train``, ``evaluate``, ``qat``, ``prune``, ``convert``.

Each parses its options, calls one library function and prints through :mod:`resnet_edge.cli.render`.
TensorFlow is imported inside the commands that need it, after every option is checked.
"""

from __future__ import annotations


import click
from click.core import ParameterSource

from resnet_edge.cli.options import (BATCH, CLASSES, DATA_OPTION, DEPTH, EPOCHS, EPOCHS0, LIMIT, SAMPLES, SIZE,
                                     TRUST_OPTION, Finite, _check_model_file, _floats, _ratio, _triple, _warmup)
from resnet_edge.cli.render import (_build_human, _channels_human, _convert_human, _echo_json_or, _evaluate_human,
                                    _prune_human, _qat_human, _train_human)


@click.command()
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


@click.command()
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
    description and the depth, variant, classes, normalization and whether the classifier is new
    (:func:`resnet_edge.arch.weights.choose`)."""
    from resnet_edge.arch.weights import choose

    if model_name or plain or family == "cifar":
        raise click.UsageError("--weights loads an ImageNet ResNet: give --depth (or nothing: the file says), not "
                               "--model, --plain or --family cifar")
    if path == "imagenet" and depth is None:
        raise click.UsageError("--weights imagenet needs --depth (18, 34, 50, 101 or 152)")
    c = choose(path, depth, variant, classes, raw_input)
    if normalization_given:
        wf = c.file
        raise click.UsageError(f"--mean/--std: the weights decide the normalization ({wf.format}: mean "
                               f"{', '.join(f'{v:g}' for v in wf.mean)}, std {', '.join(f'{v:g}' for v in wf.std)})")
    if c.warning:
        click.echo(f"warning: {c.warning}", err=True)
    return c.file, c.depth, c.variant, c.classes, c.preprocess, c.new_classifier


@click.command()
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
              help="tf.distribute strategy (mirrored: all GPUs, or all logical CPUs; multiworker: cluster from TF_CONFIG, the "
                   "chief alone writes --out, which every worker must reach to --resume).")
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
    from resnet_edge.train import cluster_task, resumed_settings, saved_run, spec_for_data, transfer_defaults, transfer_recipe
    from resnet_edge.train import train as run_training

    check_run_folder(out)
    role = cluster_task(strategy)  # a bad TF_CONFIG is one line before TensorFlow loads
    ctx = click.get_current_context()
    given = {name for name in ctx.params if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}
    recipe_args = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                   "lr_boundaries": lr_boundaries, "warmup": _warmup(warmup), "seed": seed}
    saved = saved_run(out) if resume else None
    if resume and not saved:
        raise click.ClickException(f"nothing to resume in {out}: no checkpoint there; drop --resume to start a run")
    transfer = {"freeze": freeze, "head_epochs": head_epochs, "fine_tune_lr": fine_tune_lr}
    asked = any(v is not None for v in transfer.values())
    if saved:  # --resume: what was not given again comes from the checkpoint
        recipe_args, transfer = resumed_settings(saved, recipe_args, transfer, given)
        source = source if "source" in given else saved["data"]
        limit = limit if "limit" in given else saved["limit"]
    wf = _train_weights(weights, asked, saved, depth, model_name, family, plain, source)
    depth = wf.depth if wf else depth
    tuning = bool(wf or (saved and saved.get("weights")))
    early = dict(recipe_args)  # checked before the data loads; the defaults that depend on it come after
    if tuning and not saved and "epochs" not in given:
        early["epochs"] = max(early["epochs"], transfer["head_epochs"] or 0)
    recipe = transfer_recipe(early, transfer, tuning)
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
        images = min(len(data.train), limit or len(data.train))
        recipe_args = transfer_defaults(recipe_args, given, images)
        recipe = transfer_recipe(recipe_args, transfer, tuning, images, data.num_classes)
    if not as_json:
        sizes = f"{min(len(data.train), limit or len(data.train))} train / {min(len(data.val), limit or len(data.val))} val images"
        click.echo(f"{'Resuming' if saved else 'Training'} {spec.name} on {data.name} ({sizes}) in {out}", err=True)
    manifest = run_training(spec, data, out, recipe, weights=wf, resume=resume, strategy=strategy,
                            cpu_devices=cpu_devices, limit=limit, verbose=0 if as_json else None,
                            checkpoint_every=checkpoint_every)
    if role and not role["chief"]:  # a non-chief worker: the chief wrote the run and prints it
        _echo_json_or(manifest, as_json, lambda m: f"{m['type']} {m['index']} of {m['strategy']['workers']}: "
                      f"{m['epochs_done']} epochs done ({m['strategy']['replicas']} replicas); the chief wrote {out}")
        return
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


@click.command()
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


@click.command()
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


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@DATA_OPTION
@click.option("--sparsity", type=Finite(0, 1, min_open=True, max_open=True), default=0.5, show_default=True, help="Target share of zero weights (magnitude pruning).")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial", show_default=True)
@click.option("--structure", help="M:N structured sparsity, e.g. 2:4 (overrides --sparsity).")
@click.option("--skip", default="", help="Layers left dense: first, last and/or layer names, comma-separated.")
@click.option("--pqat", is_flag=True, help="Then prune-preserving QAT: the int8 model keeps the zeros.")
@click.option("--clusters", type=click.IntRange(2, 65_536), help="Weight clustering into N shared values instead of pruning.")
@click.option("--channels", type=Finite(), callback=_ratio, help="Channel pruning instead: keep this share of each block's inner channels.")
@click.option("--stream", type=Finite(), callback=_ratio,
              help="Channel pruning: keep this share of each stage's residual stream too (its blocks' outputs and "
                   "projection; with shortcut A a stage keeps what it pads from the one before).")
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
def prune(model_path, source, sparsity, schedule, structure, skip, pqat, clusters, channels, stream, criterion, epochs,
          lr, batch_size, limit, max_drop, out, trust, as_json):
    """Prune a trained MODEL: magnitude (unstructured or M:N), clustering, or whole channels.

    \b
    Magnitude pruning and clustering shrink the compressed file (gzip sizes are reported); they do not
    make dense kernels faster. --channels removes filters inside every residual block (--stream: from the
    residual stream too) and rebuilds a thinner dense ResNet: fewer MACs, lower latency on every runtime.
    """
    _check_model_file(model_path, trust)
    from resnet_edge.data import load

    data = load(source)
    verbose = 0 if as_json else 2
    if stream is not None and channels is None:
        channels = 1.0  # the stream alone
    if max_drop is not None and channels is None:
        raise click.UsageError("--max-drop applies to --channels (channel pruning)")
    if channels is not None:
        if pqat or clusters or structure:
            raise click.UsageError("--channels and --stream do not combine with --pqat, --clusters or --structure")
        from resnet_edge.optimize.channels import channel_prune

        manifest = channel_prune(model_path, data, out, keep=channels, stream=1.0 if stream is None else stream,
                                 criterion=criterion, epochs=epochs,
                                 lr=lr, batch_size=batch_size, limit=limit, verbose=verbose, trust=trust,
                                 max_drop=max_drop)
        return _echo_json_or(manifest, as_json, _channels_human)
    from resnet_edge.optimize.prune import prune as run_prune

    manifest = run_prune(model_path, data, out, sparsity=sparsity, schedule=schedule, structure=structure,
                         skip=tuple(s for s in skip.split(",") if s), epochs=epochs, lr=lr,
                         batch_size=batch_size, limit=limit, pqat=pqat, clusters=clusters, verbose=verbose,
                         trust=trust)
    _echo_json_or(manifest, as_json, _prune_human)


@click.command()
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
    from resnet_edge.arch.spec import resolve
    from resnet_edge.build import fresh_spec
    from resnet_edge.convert import convert as run_convert
    from resnet_edge.data import load
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
        spec = fresh_spec(depth, model_name, family, classes, data)
        if not as_json:
            click.echo(f"Building {spec.name} on the spot (normalization inside: it takes raw 0..255 pixels); its weights "
                       "are untrained, so its accuracy means nothing.", err=True)
    elif not model_path:
        raise click.UsageError("give a MODEL file, or --depth/--model to build one")
    if not as_json:
        click.echo(f"Converting to {', '.join(modes)} ...", err=True)
    from resnet_edge.convert import MaxDropError
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



COMMANDS = (models, build, train, evaluate, qat, prune, convert)
