"""``resnet-edge metadata``: add or replace the standard metadata (:mod:`resnet_edge.tflite.standard`) of
any image classifier ``.tflite``, ours or one someone else converted, so that MediaPipe and the Task
Library can use it.

Everything but the metadata stays as it was: every tensor, operator, weight and other metadata entry
(the flatbuffer is repacked, as the schema's own writer does, so byte offsets move). A model of ours keeps
its ``resnet_edge`` entry, its checksum is verified before and sealed again after, and its manifest,
when one beside it matched the old file, is replaced together with the model. The file is replaced
atomically: a failure leaves the old one whole. No TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.tflite import integrity
from resnet_edge.tflite import metadata as md
from resnet_edge.tflite import standard as std
from resnet_edge.tflite.model import elements, load_bytes, read
from resnet_edge.ui import safe_text

TEXT_FIELDS = ("name", "description", "version", "author", "license")


class NotAnImageClassifierError(ResnetEdgeError):
    """A model that the standard image-classifier metadata cannot describe."""


def image_classifier_tensors(data: bytes, label: str) -> tuple[dict, dict]:
    """The input image and output scores of a checked model, or :class:`NotAnImageClassifierError`."""
    from resnet_edge.tflite.inspect import io_tensors

    inputs, outputs = io_tensors(data)
    t = inputs[0] if len(inputs) == 1 else None
    if t is None or len(t["shape"]) != 4 or t["shape"][0] != 1 or t["shape"][-1] not in (1, 3):
        shapes = "; ".join(f"{i['shape']} {i['dtype']}" for i in inputs[:4])
        raise NotAnImageClassifierError(f"{label} is not an image classifier: its input is {shapes or 'missing'}, and "
                                        "image metadata describes one input of shape [1, height, width, 3] (or 1 channel)")
    if t["dtype"] not in ("float32", "uint8", "int8"):
        raise NotAnImageClassifierError(f"{label}'s input is {t['dtype']}: image frameworks feed float32 or uint8")
    o = outputs[0] if len(outputs) == 1 else None
    if o is None or not o["shape"] or elements(o["shape"]) != o["shape"][-1]:
        shapes = "; ".join(f"{i['shape']} {i['dtype']}" for i in outputs[:4])
        raise NotAnImageClassifierError(f"{label} is not an image classifier: its output is {shapes or 'missing'}, not "
                                        "one vector of class scores")
    return t, o


def read_labels_file(path: str | os.PathLike) -> list[str]:
    data = load_bytes(path, limit=std.MAX_FILE_BYTES, what="labels file",  # a regular file, bounded
                      give="a text file with one class name per line")
    labels = std.parse_labels(data, safe_text(path, 200))
    std.check_labels(labels, safe_text(path, 200))
    return labels


def _normalization(given_mean, given_std, earlier: dict | None, ours: dict | None, t: dict, label: str):
    """(mean, std, where they came from) for the input ``t``."""
    channels = t["shape"][-1]
    implied = std.quantized_normalization(t["dtype"], t["quantization"])
    if (given_mean is None) != (given_std is None):
        raise ConfigError("give --mean and --std together")
    if given_mean is not None:
        mean, sd, source = list(given_mean), list(given_std), "given"
        if len(mean) != len(sd) or len(mean) not in (1, channels):
            raise ConfigError(f"--mean and --std need 1 or {channels} values each (one per channel), got {len(mean)} and "
                              f"{len(sd)}")
        if any(s <= 0 for s in sd):
            raise ConfigError(f"--std must be positive, got {', '.join(f'{s:g}' for s in sd)}")
        std.check_normalization(mean, sd)
    elif earlier and earlier.get("normalization") and earlier["normalization"].get("mean"):
        mean, sd, source = earlier["normalization"]["mean"], earlier["normalization"]["std"], "kept from the model"
    elif ours is not None and isinstance(ours.get("normalization"), dict):
        mean, sd, source = [0.0], [1.0], "the model normalizes inside: feed raw pixels"
    elif implied is not None:
        mean, sd, source = [implied[0]], [implied[1]], f"from the {t['dtype']} input's quantization"
    else:
        raise ConfigError(f"{label} takes float32 input and says nothing of its normalization: give --mean and --std, "
                          "what a pixel p (0..255) becomes, (p - mean) / std (e.g. --mean 127.5 --std 127.5 for "
                          "[-1, 1], --mean 0 --std 255 for [0, 1], --mean 0 --std 1 for raw pixels)")
    if implied is not None and not std.fits_quantization(mean, sd, implied):
        raise ConfigError(f"--mean/--std ({', '.join(f'{v:g}' for v in mean)} / {', '.join(f'{v:g}' for v in sd)}) do "
                          f"not fit the {t['dtype']} input: frameworks feed its pixels as they are, and its quantization "
                          f"(scale {t['quantization']['scale']:.6g}, zero point {t['quantization']['zero_point']}) means "
                          f"mean {implied[0]:g}, std {implied[1]:.6g}; leave --mean/--std out")
    return mean, sd, source


def set_app_metadata(path: str | os.PathLike, *, out: str | os.PathLike | None = None, labels_path=None, mean=None,
                     std_=None, texts: dict | None = None) -> dict:
    """Write ``path`` (or ``out``) with new standard metadata; return what was written (see module doc).
    ``texts``: name, description, version, author, license (None: keep the model's, or ours). The file
    written is locked from reading to writing (:func:`resnet_edge.io.exclusive`): two edits of one model at
    once are applied one after the other, or the second is refused after a bounded wait."""
    from resnet_edge.io import ensure_writable, exclusive

    target = ensure_writable(out if out is not None else path)
    with exclusive(target):
        return _set_app_metadata(path, out, labels_path, mean, std_, texts)


def _set_app_metadata(path, out, labels_path, mean, std_, texts) -> dict:
    from resnet_edge.io import atomic_write_bytes, manifest_path, read_manifest, replace_together
    from resnet_edge.tflite.inspect import app_metadata, read_standard

    texts = {k: v for k, v in (texts or {}).items() if v is not None}
    for key, value in texts.items():
        std.check_text("--model-version" if key == "version" else f"--{key}", value)
    labels = read_labels_file(labels_path) if labels_path is not None else None
    label = safe_text(path, 200)
    target = Path(out if out is not None else path)  # checked by set_app_metadata
    data = load_bytes(path)
    checked = integrity.verify(data, label)
    read(data, label)
    t, o = image_classifier_tensors(data, label)
    ours = md.read_info(data) if checked["status"] == "verified" else None
    found = read_standard(data, label)  # raises when the standard metadata or its zip is damaged
    earlier = app_metadata(data, [t], [o], label, found=found)
    earlier_labels = found[3] if found else None
    classes = o["shape"][-1]
    source_labels = "given"
    if labels is None:
        labels, source_labels = earlier_labels, "kept from the model"
        if labels is None and ours is not None and isinstance(ours.get("labels"), list):
            labels, source_labels = [str(x) for x in ours["labels"]], "resnet-edge's own entry"
    if labels is not None and len(labels) != classes:
        where = safe_text(labels_path, 200) if source_labels == "given" else f"the labels {source_labels}"
        raise ConfigError(f"{where} has {len(labels)} names but {label}'s output has {classes} scores: one class name "
                          "per line, in the order of the scores")
    if labels is None:
        source_labels = "none (apps show class indices)"
    mean, sd, source_norm = _normalization(mean, std_, earlier, ours, t, label)
    lo, hi = std.input_range(t["dtype"], mean, sd)
    if len(lo) == 1 and len(mean) > 1:
        lo, hi = lo * len(mean), hi * len(mean)

    def text(key: str, default: str) -> str:
        return texts.get(key, (earlier or {}).get(key) or default)

    name = ours and f"{ours.get('name')} ({ours.get('mode')})"
    meta = std.ImageClassifierMetadata(
        name=text("name", name or Path(path).stem), description=text("description", ""), version=text("version", ""),
        author=text("author", ""), license=text("license", ""),
        input_description=f"An image of {t['shape'][1]}x{t['shape'][2]} pixels.",
        color_space="RGB" if t["shape"][-1] == 3 else "GRAYSCALE", mean=mean, std=sd, input_min=lo, input_max=hi,
        output_name="probability", output_description=f"The scores of the {classes} classes.", labels=labels)
    info = {**ours, "labels": labels} if ours is not None and labels is not None and labels != ours.get("labels") else None
    new = md.rewrite(data, info=info, standard=std.encode(meta),
                     files={std.LABELS_FILE: std.labels_file(labels)} if labels is not None else {})
    try:
        integrity.verify(new, label)
    except integrity.DamagedModelError:
        raise ConfigError("the labels or texts hold 'resnet_edge' or 'content_sha256', the marks of resnet-edge's own "
                          "checksum; reword them") from None
    app = app_metadata(new, [t], [o], label)
    manifest = None
    if manifest_path(path).is_file():
        try:
            manifest = read_manifest(path, sha256=hashlib.sha256(data).hexdigest())
        except ResnetEdgeError:
            manifest = None  # stale already: left as it is
    if manifest and manifest.get("kind") == "tflite-model":
        manifest["file"] = {**manifest.get("file", {}), "path": target.name, "bytes": len(new),
                            "sha256": hashlib.sha256(new).hexdigest(),
                            "content_sha256": integrity.verify(new).get("sha256")}
        manifest["metadata"] = md.read_info(new)
        manifest["app_metadata"] = app
        with replace_together(target, manifest_path(target)) as (tmp_model, tmp_manifest):
            tmp_model.write_bytes(new)
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        written = [str(target), str(manifest_path(target))]
    else:
        atomic_write_bytes(target, new)
        written = [str(target)]
    return {"written": written, "bytes": len(new), "ours": ours is not None, "labels_from": source_labels,
            "normalization_from": source_norm, "app_metadata": app,
            "warnings": ["MediaPipe (1.2.3) refuses per-channel normalization whose values differ; the Task Library "
                         "takes it"] if len(set(mean)) > 1 or len(set(sd)) > 1 else []}
