"""Channel pruning: remove whole filters from the inside of every residual block, and optionally from each
stage's residual stream (host side).

Inside the blocks (``keep``): the first convolution of a basic block, the 1x1 and 3x3 of a bottleneck; the
block's output width, the shortcuts and the Add stay as they are. The residual stream (``stream``): the same
channels go from every block of a stage at once (its last convolutions, its projection, the stem where it writes
the first stage's stream) and from the inputs that read them (the next convolutions, the classifier). With
shortcut A a stage keeps the channels of the stage before it that it pads (zero padding maps channel i to channel
i), so a stage's stream may not end narrower than the one before it. Either way the thinner model is an ordinary
dense ResNet (``ResNetSpec.inner_widths``, ``ResNetSpec.stream_widths``) that runs faster on every runtime, unlike
unstructured sparsity.

Ranking criterion, per convolution: ``l1`` (default), the L1 norm of each filter's kernel; or ``bn``, the
absolute BatchNorm scale that follows it (Liu et al., "network slimming"). The top ``keep`` share of
filters survives (at least one); their weights, BatchNorm statistics and the matching input slices of
the next convolution are copied over, so with ``keep=1.0`` the outputs are identical.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from resnet_edge.arch.spec import ResNetSpec, keep_per_stage, kept_channels, plan, spec_from_dict
from resnet_edge.errors import ConfigError, ResnetEdgeError

CRITERIA = ("l1", "bn")


def _rank(model, conv_name: str, bn_name: str, criterion: str) -> np.ndarray:
    if criterion == "l1":
        kernel = model.get_layer(conv_name).kernel.numpy()
        return np.abs(kernel).sum(axis=(0, 1, 2))
    return np.abs(model.get_layer(bn_name).gamma.numpy())


def select_stream(model, spec: ResNetSpec, stream, criterion: str = "l1") -> list[np.ndarray] | None:
    """For every stage, the indices of its residual-stream channels to keep, in the order the thin network holds them
    (None when ``stream`` keeps them all). A channel's score is the sum, over every layer that writes it, of that layer's score relative to its own
    mean; with shortcut A a stage keeps the channels the stage before it kept (and pads)."""
    p = plan(spec)
    stages = len(spec.stage_blocks)
    ratios = keep_per_stage(stream, stages, "stream")
    if all(r == 1 for r in ratios):
        return None
    by_stage: list[list] = [[] for _ in range(stages)]
    for block in p.blocks:
        by_stage[block.stage].append(block)
    kept: list[np.ndarray] = []
    for si, blocks in enumerate(by_stage):
        writers = [b.convs[-1].name for b in blocks] + [b.projection.name for b in blocks if b.projection is not None]
        if si == 0 and p.stem_writes_stream:
            writers.append(p.stem.name)
        scores = sum(r / (r.mean() + 1e-12) for r in (_rank(model, f"{w}_conv", f"{w}_bn", criterion) for w in writers))
        width = blocks[0].out_channels
        k = kept_channels(width, ratios[si])
        if blocks[0].shortcut == "pad":  # zero padding carries channel i of the stage before into channel i here:
            # the thin stage starts with the channels the stage before kept, in its order, so that its own padding
            # carries them there; then the best of the others (their shortcut is zero, or a channel thinning dropped)
            before = kept[-1]
            if k < len(before):
                raise ConfigError(f"stream: stage {si + 1} would keep {k} channels, fewer than the {len(before)} of the "
                                  "stage before, which shortcut A pads into it; give it a larger ratio")
            rest = np.setdiff1d(np.arange(width), before)
            new = np.sort(rest[np.argsort(-scores[rest], kind="stable")[:k - len(before)]])
            kept.append(np.concatenate([before, new]))
        else:
            kept.append(np.sort(np.argsort(-scores, kind="stable")[:k]))
    return kept


def select_channels(model, spec: ResNetSpec, keep, criterion: str = "l1") -> dict[str, np.ndarray]:
    """For every inner convolution (by name prefix, e.g. ``conv2_block1_1``), the sorted indices of the
    filters to keep; ``keep``: one ratio, or one per stage (the first stage's first)."""
    ratios = keep_per_stage(keep, len(spec.stage_blocks))
    if criterion not in CRITERIA:
        raise ConfigError(f"--criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    chosen = {}
    for block in plan(spec).blocks:
        for conv in block.convs[:-1]:  # the last conv of a block writes to the residual stream: kept whole
            scores = _rank(model, f"{conv.name}_conv", f"{conv.name}_bn", criterion)
            k = kept_channels(len(scores), ratios[block.stage])
            chosen[conv.name] = np.sort(np.argsort(-scores, kind="stable")[:k])
    return chosen


def thin(model, spec: ResNetSpec, keep, criterion: str = "l1", stream=1.0):
    """Return ``(thin_model, thin_spec)``: the same network with fewer inner channels (``keep``) and fewer channels
    in each stage's residual stream (``stream``; one ratio or one per stage), and the surviving weights."""
    from resnet_edge.arch.keras_model import build_model

    p = plan(spec)
    chosen = select_channels(model, spec, keep, criterion)
    streams = select_stream(model, spec, stream, criterion)
    widths = tuple(tuple(len(chosen[c.name]) for c in block.convs[:-1]) for block in p.blocks)
    thin_spec = spec.replace(inner_widths=widths,
                             **({"stream_widths": tuple(len(k) for k in streams)} if streams is not None else {}))
    thin_model = build_model(thin_spec)
    # Where a layer's output channels were cut, and where its input channels were.
    out_cut, in_cut = {}, {}
    for block in p.blocks:
        for i, conv in enumerate(block.convs[:-1]):
            idx = chosen[conv.name]
            out_cut[f"{conv.name}_conv"] = idx
            out_cut[f"{conv.name}_bn"] = idx
            in_cut[f"{block.convs[i + 1].name}_conv"] = idx
    if streams is not None:
        incoming = streams[0] if p.stem_writes_stream else None  # what the first block reads
        if incoming is not None:
            out_cut[f"{p.stem.name}_conv"] = out_cut[f"{p.stem.name}_bn"] = incoming
        for block in p.blocks:
            idx = streams[block.stage]
            writers = [block.convs[-1]] + ([block.projection] if block.projection is not None else [])
            for w in writers:
                out_cut[f"{w.name}_conv"] = out_cut[f"{w.name}_bn"] = idx
            if incoming is not None:
                in_cut[f"{block.convs[0].name}_conv"] = incoming
                in_cut[f"{block.name}_0_conv"] = incoming  # the projection, if any
                in_cut[f"{block.name}_0_subsample"] = incoming  # shortcut A's frozen 1 x 1 depthwise
            incoming = idx
        in_cut["predictions"] = incoming
    source_names = {layer.name for layer in model.layers}
    for layer in thin_model.layers:
        if layer.name not in source_names and not layer.trainable:
            continue  # a frozen constant layer (shortcut A's subsampling) keeps the value it was built with
        weights = model.get_layer(layer.name).get_weights()
        if layer.name in in_cut:  # kernel H x W x Cin x Cout (a Dense's Cin x Cout): keep the surviving inputs
            w = weights[0]
            weights[0] = w[in_cut[layer.name], :] if w.ndim == 2 else w[:, :, in_cut[layer.name], :]
        if layer.name in out_cut:  # the last axis of a kernel, every vector of a BatchNorm
            idx = out_cut[layer.name]
            weights = [w[..., idx] for w in weights]
        layer.set_weights(weights)
    return thin_model, thin_spec


def thin_to(model, spec: ResNetSpec, target: ResNetSpec):
    """``model`` (of ``spec``) thinned to the shape of ``target`` (the same network with the inner and stream widths
    of a search candidate, :func:`resnet_edge.search.space.spec_of`): the channels that rank highest are kept, as
    :func:`thin` keeps them. Returns the thin model; ConfigError when ``target`` is not a thinning of ``spec``."""
    if spec.replace(inner_widths=None, stream_widths=None) != target.replace(inner_widths=None, stream_widths=None):
        raise ConfigError(f"{target.name} is not a thinning of {spec.name}")
    whole, want = plan(spec), plan(target)
    keep, stream = [], []
    for si in range(len(spec.stage_blocks)):
        a = next(b for b in whole.blocks if b.stage == si)
        b = next(b for b in want.blocks if b.stage == si)
        keep.append(b.convs[0].filters / a.convs[0].filters)
        stream.append(b.out_channels / a.out_channels)
    thin_model, thin_spec = thin(model, spec, tuple(keep), "l1", tuple(stream))
    if thin_spec != target:
        raise ConfigError(f"{target.name}: its widths are not one ratio per stage of {spec.name}'s")
    return thin_model


def recalibrate_batchnorm(model, data, *, batches: int = 30, batch_size: int = 128, seed: int = 0,
                          limit: int | None = None) -> None:
    """Re-estimate every BatchNorm's moving mean and variance from ``batches`` training batches.

    Removing filters changes what the next convolution sees, so the next BatchNorm's statistics no
    longer describe its input: measured on the digits ResNet-20 at ``--channels 0.5``, accuracy fell
    from 96% to 9.4% (chance) and came back to 79% after this, before any fine-tuning (one epoch of
    fine-tuning then gave 83%, against 19% without it). The weights are not changed; each batch's
    statistics enter a cumulative mean (momentum i/(i+1)).
    """
    from resnet_edge._tf import keras
    from resnet_edge.data.pipeline import make_dataset

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    ds = make_dataset(data, "train", input_size=int(model.input_shape[1]), batch_size=batch_size, training=True,
                      seed=seed, epoch=0, limit=limit)
    try:
        for i, (x, _) in enumerate(ds.repeat().take(batches)):
            for layer in norms:
                layer.momentum = i / (i + 1)
            model(x, training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def channel_prune(
    model_path: str | Path,
    data,
    out: str | Path,
    *,
    keep: float | tuple[float, ...] = 0.5,
    stream: float | tuple[float, ...] = 1.0,
    criterion: str = "l1",
    epochs: int = 2,
    lr: float = 0.01,
    batch_size: int = 128,
    limit: int | None = None,
    verbose: int = 2,
    trust: bool = False,
    max_drop: float | None = None,
) -> dict:
    """Thin ``model_path`` to ``keep`` of its inner channels and ``stream`` of each stage's residual stream (each one
    ratio, or one per stage), fine-tune, and write ``out`` + manifest.

    Needs the model's manifest (``NAME.json``, written by ``build``/``train``) for its recipe. The thinned
    model's BatchNorm statistics are re-estimated before fine-tuning (:func:`recalibrate_batchnorm`).
    Side effects: writes ``out`` and its ``.json``; the source model is untouched. The manifest's
    ``status`` is ``"dropped"`` when validation accuracy ends more than a point (or ``max_drop``) below
    the source's; with ``max_drop`` that also raises :class:`ResnetEdgeError`, after writing.
    """
    from resnet_edge.arch.keras_model import count_keras
    from resnet_edge.build import check_keras_path, save_keras, versions
    from resnet_edge.evaluate import check_classes
    from resnet_edge.optimize.common import accuracy, fine_tune, load_for_tfmot, now, outputs_logits, read_manifest

    if not isinstance(keep, (list, tuple)) and not 0 < keep <= 1:
        raise ConfigError(f"--channels must be in (0, 1], got {keep}")
    if epochs < 0:
        raise ConfigError(f"--epochs must be 0 or more, got {epochs}")
    check_keras_path(out)
    source = read_manifest(model_path)
    if not source.get("spec"):
        raise ResnetEdgeError(f"channel pruning needs {Path(model_path).with_suffix('.json')} (the manifest `resnet-edge build`/`train` write beside the model) to know its architecture")
    spec = spec_from_dict(source["spec"])
    model = load_for_tfmot(model_path, trust=trust)
    check_classes(model, data, model_path)
    t0 = time.perf_counter()
    before = accuracy(model, data, "val", limit)
    thin_model, thin_spec = thin(model, spec, keep, criterion, stream)
    right_after = accuracy(thin_model, data, "val", limit)
    thinned = min(keep_per_stage(keep, len(spec.stage_blocks)) + keep_per_stage(stream, len(spec.stage_blocks),
                                                                                  "stream")) < 1
    if thinned:  # with every filter kept the statistics still hold (and the model stays identical)
        recalibrate_batchnorm(thin_model, data, batch_size=batch_size, limit=limit)
    recalibrated = accuracy(thin_model, data, "val", limit) if thinned else right_after
    history = fine_tune(thin_model, data, epochs=epochs, lr=lr, batch_size=batch_size, limit=limit, verbose=verbose,
                        from_logits=outputs_logits(model)) if epochs else []
    after = accuracy(thin_model, data, "val", limit)
    c0, c1 = count_keras(model), count_keras(thin_model)
    manifest = {
        "kind": "keras-model",
        "name": thin_spec.name,
        "optimization": "channel-pruning",
        "created": now(),
        "source": {"path": str(model_path), "manifest": source.get("file")},
        "spec": thin_spec.to_dict(),
        "data": data.info(),
        "settings": {"keep": list(keep) if isinstance(keep, (list, tuple)) else keep,
                     "stream": list(stream) if isinstance(stream, (list, tuple)) else stream, "criterion": criterion,
                     "epochs": epochs, "lr": lr, "batch_size": batch_size, "limit": limit},
        "accuracy": {"split": "val", "before": before, "thinned_before_fine_tune": right_after,
                     "batchnorm_recalibrated": recalibrated, "after": after, "drop_points": 100 * (before - after)},
        "status": "ok" if 100 * (before - after) <= (1.0 if max_drop is None else max_drop) else "dropped",
        "counts": {"before": c0.to_dict(), "after": c1.to_dict(), "mac_ratio": c1.macs / c0.macs,
                   "param_ratio": c1.trainable_params / c0.trainable_params},
        "inner_widths": [list(w) for w in thin_spec.inner_widths],
        "stream_widths": list(thin_spec.stream_widths) if thin_spec.stream_widths is not None else None,
        "history": history,
        "seconds": round(time.perf_counter() - t0, 1),
        "versions": versions(),
        "trained": bool(source.get("trained")),
    }
    manifest = save_keras(thin_model, out, manifest)
    if max_drop is not None and manifest["accuracy"]["drop_points"] > max_drop:
        raise ResnetEdgeError(f"{Path(out).name}: val accuracy fell {manifest['accuracy']['drop_points']:.2f} points "
                              f"(> --max-drop {max_drop}); the model is kept, its manifest says so; fine-tune longer (--epochs)")
    return manifest
