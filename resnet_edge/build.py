"""Build a network from its spec and write it, with its manifest, atomically (host side)."""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from pathlib import Path

from resnet_edge import __version__
from resnet_edge.arch.spec import ResNetSpec, count, paper_reference
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.io import ensure_writable, manifest_path, replace_together, sha256_file

KERAS_SUFFIXES = (".keras", ".h5")


def check_keras_path(out: str | Path, h5_only: bool = False) -> Path:
    """A writable path ending in .keras or .h5 (the formats tf_keras and tfmot read back).

    ``h5_only`` for quantization-aware models: tfmot's QuantizeLayer saves to .keras in tf_keras 2.21 but
    cannot be loaded from it again (its variables come back under other names), while .h5 round-trips.
    """
    out = Path(out)
    if h5_only and out.suffix != ".h5":
        raise ResnetEdgeError(
            f"--out {out}: a quantization-aware model is saved as HDF5: use {out.with_suffix('.h5').name} "
            "(tfmot's QAT layers do not reload from the .keras format)"
        )
    if out.suffix not in KERAS_SUFFIXES:
        raise ResnetEdgeError(f"--out {out}: use a .keras or .h5 file name (e.g. {out.with_suffix('.keras').name})")
    return ensure_writable(out, manifest=True)


def save_keras(model, out: str | Path, manifest: dict, h5_only: bool = False) -> dict:
    """Save ``model`` to ``out`` and ``manifest`` (plus file size and sha256) beside it, both atomically.

    Returns the manifest as written. If anything fails, neither file is left half-written and an
    existing file of the same name is kept as it was.
    """
    out = check_keras_path(out, h5_only)
    with replace_together(out, manifest_path(out)) as (tmp, tmp_manifest), warnings.catch_warnings():
        # tf_keras calls HDF5 "legacy" on every save; the toolkit picks .h5 on purpose (QAT models reload only from it)
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save(tmp)
        manifest = {**manifest, "file": {"path": out.name, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp)}}
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def versions() -> dict:
    from resnet_edge._tf import keras, tf

    return {"resnet_edge": __version__, "tensorflow": tf.__version__, "tf_keras": keras.__version__}


def build(spec: ResNetSpec, out: str | Path | None = None, weights=None, new_classifier: bool = False) -> dict:
    """Build ``spec``; save it to ``out`` when given. Returns a summary (the manifest). ``weights``: a
    :class:`~resnet_edge.arch.weights.WeightsFile` to load (all or nothing; ``new_classifier`` keeps a fresh
    classifier for another number of classes)."""
    if out is not None:
        check_keras_path(out)  # fail on a bad path before spending time on the build
    from resnet_edge.arch.keras_model import build_model, count_keras

    model = build_model(spec)
    loaded = None
    if weights is not None:
        from resnet_edge.arch.weights import load_into
        loaded = {**weights.identity(), **load_into(model, weights, new_classifier=new_classifier)}
    counts = count_keras(model)
    expected = count(spec)
    if counts != expected:  # the plan and the built model must agree; a mismatch is a bug, not user error
        raise AssertionError(f"built model counts {counts} differ from the plan {expected}")
    summary = {
        "kind": "keras-model",
        "name": spec.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "block": spec.block,
        "stages": list(spec.stage_blocks),
        "counts": counts.to_dict(),
        "paper": paper_reference(spec),
        "layers": len(model.layers),
        "input": {"shape": [1, spec.input_size, spec.input_size, 3], "dtype": model.inputs[0].dtype.name},
        "output": {"shape": [1, spec.classes], "activation": spec.classifier_activation},
        # pretrained weights with their own classifier make a model whose predictions mean something
        "trained": bool(loaded) and not new_classifier,
        "weights": loaded,
        "versions": versions(),
    }
    if out is not None:
        summary = save_keras(model, out, summary)
    return summary


def fresh_spec(depth: int | None = None, model: str | None = None, family: str | None = None,
               classes: int | None = None, data=None) -> ResNetSpec:
    """The network ``convert --depth/--model`` builds on the spot: normalization inside, so it takes raw 0..255
    pixels as an app feeds them, with ``data``'s mean and std when the model is for that data (a CIFAR net of
    its image size; then its classes too, unless ``classes``), else ImageNet's."""
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve

    probe = resolve(depth, model=model, family=family)
    fits = data is not None and probe.family == "cifar" and data.image_size == probe.input_size
    pre = Preprocess(tuple(data.mean), tuple(data.std), "float32") if fits else \
        Preprocess(IMAGENET_MEAN, IMAGENET_STD, "float32")
    return resolve(depth, model=model, family=family, classes=classes or (data.num_classes if fits else None),
                   preprocess=pre)
