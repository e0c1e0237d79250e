"""Accuracy of a ``.tflite`` classifier on real data, on any target (edge side: numpy, a runtime, Pillow for
image folders).

:func:`evaluate_tflite` is the one evaluation: the model is checked once; the images come from an image
source, a data set read here (sent with the model to a device) or a :class:`DeviceFolder` that the runner on
an ssh:// device reads; the figures are :mod:`resnet_edge.metrics`'s, as ``evaluate`` reports them for a
Keras model. A comparison with the Keras source (``--compare``) is a ``reference`` the caller hands in: this
side knows nothing of Keras.

:func:`model_inputs` turns a data source's images into the model's form, as its resnet-edge metadata
says (raw 0..255 pixels when normalization is inside the model, else normalized with the data's own
mean and std, as ``convert`` did), or as options say for a model from another tool (``mean``/``std`` in
0..255 units; without them, raw pixels). Images of a fixed-size source (digits, CIFAR-10) must have the
model's size unless ``resize``; image-folder files are decoded and resized as evaluation does in
training (shorter side to size/0.875 and a centered crop at 96 pixels and more, else a plain resize).

"""

from __future__ import annotations

import numpy as np

import dataclasses
from typing import Callable

from resnet_edge.errors import ConfigError, MissingDependencyError
from resnet_edge.harness import BadImage, load_image
from resnet_edge.measure.bench import predict, predict_folder
from resnet_edge.metrics import agreement, scores_report, top1
from resnet_edge.runtime.runner import check_model
from resnet_edge.runtime.setting import Setting
from resnet_edge.targets import LOCAL
from resnet_edge.ui import safe_text



def _input_shape(inputs: list[dict]) -> tuple[int, int, int]:
    if len(inputs) != 1:
        raise ConfigError(f"the model has {len(inputs)} inputs; eval measures image classifiers with one input")
    shape = inputs[0]["shape"]
    if len(shape) != 4 or shape[3] != 3:
        raise ConfigError(f"the model takes {shape}, not RGB images (N x H x W x 3): it is not an image classifier "
                          "this data can feed")
    return int(shape[1]), int(shape[2]), int(shape[3])


def preprocessing(info: dict | None, data, mean=None, std=None) -> dict:
    """How images become model inputs: ``{"raw": bool, "mean", "std", "from": where it was decided}``."""
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise ConfigError("give both --mean and --std (0..255 units, R,G,B)")
        if any(s <= 0 for s in std):
            raise ConfigError("--std must be positive")
        return {"raw": False, "mean": list(mean), "std": list(std), "from": "options"}
    if info is None:
        return {"raw": True, "mean": None, "std": None,
                "from": "assumed: the model has no resnet-edge metadata, so it gets raw 0..255 pixels "
                        "(give --mean/--std if it expects normalized input)"}
    pixels = str((info.get("input") or {}).get("pixels", ""))
    if pixels.startswith("normalized"):
        return {"raw": False, "mean": list(data.mean), "std": list(data.std),
                "from": f"model metadata: normalized input, with {safe_text(data.name, 80)}'s mean and std"}
    return {"raw": True, "mean": None, "std": None, "from": "model metadata: raw 0..255 pixels, normalized inside"}


def model_inputs(data, split: str, inputs: list[dict], outputs: list[dict] | None, pre: dict, *,
                 limit: int | None = None, resize: bool = False, skipped: list | None = None,
                 strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``limit`` images of ``split`` as float32 N x H x W x 3 in the model's form, and their labels.
    Raises :class:`ConfigError` when the model cannot take this data (input, size, classes). An image file
    that cannot be decoded (cut off, say) is left out and named in ``skipped``; ``strict`` fails instead."""
    h, w, _ = _input_shape(inputs)
    if outputs is not None:
        classes = int(outputs[0]["shape"][-1]) if outputs[0]["shape"] else 0
        if len(outputs) != 1 or classes != data.num_classes:
            raise ConfigError(f"the model outputs {outputs[0]['shape'] if outputs else []} ({len(outputs)} output(s)); "
                              f"{safe_text(data.name, 80)} has {data.num_classes} classes: give data with the classes "
                              "it was trained on")
    part = data.split(split).take(limit)
    if len(part) == 0:
        raise ConfigError(f"the {split} split of {safe_text(data.name, 80)} is empty")
    if part.x is not None:
        x = part.x.astype(np.float32)
        if x.shape[1:3] != (h, w):
            if not resize:
                raise ConfigError(f"{safe_text(data.name, 80)} images are {x.shape[1]}x{x.shape[2]}, the model takes "
                                  f"{h}x{w}: add --resize to resize them (bilinear), or use data of its size")
            from PIL import Image

            x = np.stack([np.asarray(Image.fromarray(img.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
                          for img in part.x])
    else:
        try:
            import PIL  # noqa: F401
        except ImportError:
            raise MissingDependencyError("decoding an image folder needs Pillow: pip install pillow") from None
        images, keep = [], []
        for i, f in enumerate(part.files):
            try:
                images.append(load_image(f, (h, w)))
                keep.append(i)
            except BadImage as exc:
                if strict:
                    raise ConfigError(exc.refusal(safe_text(f, 200))) from None
                if skipped is not None:
                    skipped.append(f"{f} ({exc})")
        if not images:
            raise ConfigError(f"none of the {len(part.files)} images of the {split} split of {safe_text(data.name, 80)} "
                              "could be decoded")
        x = np.stack(images)
        part = type(part)(np.asarray(part.y)[keep])
    if not pre["raw"]:
        x = (x - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return x.astype(np.float32), np.asarray(part.y, np.int64)


def _manifest_reference(path, data, split: str, n: int) -> dict | None:
    """The Keras accuracy that ``convert`` recorded beside the model, when it was measured on the same data,
    split and number of images (else None: not comparable)."""
    from resnet_edge.io import read_manifest

    manifest = read_manifest(path)
    parity = manifest.get("parity") or {}
    calibration = manifest.get("calibration") or {}
    if (parity.get("keras_accuracy") is None or parity.get("split") != split or parity.get("n") != n
            or calibration.get("data") not in (None, data.name)):
        return None
    return {"from": f"the manifest beside the model (Keras accuracy measured by convert on {parity['n']} {split} images)",
            "top1": float(parity["keras_accuracy"]), "tflite_top1": parity.get("tflite_accuracy")}


DEVICE_FOLDER = "device-folder:"


@dataclasses.dataclass(frozen=True)
class DeviceFolder:
    """Images that live on the device: ``folder`` there holds one sub-folder per class, read and decoded by
    the runner on an ssh:// target (Pillow needed there). ``max_pixels``: its bound on an image before it
    decodes it."""

    folder: str
    max_pixels: int | None = None

    @property
    def name(self) -> str:
        return f"{DEVICE_FOLDER}{self.folder}"


#: What ``reference`` gives: the scores of another model for the same inputs, and its name.
Reference = Callable[["np.ndarray"], "tuple[np.ndarray, str]"]




def _device_preprocessing(info: dict, mean=None, std=None) -> dict:
    """How the runner on the device prepares its images: raw pixels, the mean/std our metadata recorded, or
    --mean/--std (the data's own mean and std are not here)."""
    norm = info.get("normalization") or {}
    if mean is not None or std is not None or info.get("input") is None:
        return preprocessing(None if mean is None and std is None else info, None, mean, std)
    if str(info["input"].get("pixels", "")).startswith("normalized"):
        if norm.get("inside_model") is False and norm.get("mean") and norm.get("std"):
            return {"raw": False, "mean": list(norm["mean"]), "std": list(norm["std"]),
                    "from": "model metadata: normalized input, with the mean and std convert recorded"}
        raise ConfigError("the model takes normalized input and its metadata does not record the mean and std: "
                          "give --mean and --std (0..255 units, R,G,B)")
    return {"raw": True, "mean": None, "std": None, "from": "model metadata: raw 0..255 pixels, normalized inside"}


def _from_device_folder(checked: dict, source: DeviceFolder, todo: list, pre: dict, target, *, limit, timeout,
                        progress, strict) -> tuple[list, np.ndarray, list[str], int, list[str]]:
    """Scores of the images of a folder on the device with each setting, their labels in the model's class
    order, the class names, and what was skipped: how many, and the first named."""
    folder = source.folder
    results, y, found, skipped, named = predict_folder(checked, todo, folder, pre, target=target, limit=limit,
                                                       timeout=timeout, progress=progress, max_pixels=source.max_pixels)
    if strict and skipped:
        raise ConfigError(f"{skipped} image(s) on the device could not be read, e.g. {named[0] if named else '?'}; "
                          "remove them, or drop --strict to skip and count such files")
    labels = [str(c) for c in (checked["info"] or {}).get("labels") or []]
    outputs = int(results[0][0].shape[1])
    if labels:
        if sorted(labels) != sorted(found):
            raise ConfigError(f"the class folders in {folder} ({', '.join(safe_text(c, 30) for c in found[:8])}"
                              f"{', ...' if len(found) > 8 else ''}) are not the model's classes "
                              f"({', '.join(safe_text(c, 30) for c in labels[:8])}{', ...' if len(labels) > 8 else ''})")
        return results, np.asarray([labels.index(found[i]) for i in y], np.int64), labels, skipped, named
    if len(found) != outputs:
        raise ConfigError(f"{folder} has {len(found)} class folders; the model has {outputs} outputs")
    return results, y, found, skipped, named


def evaluate_tflite(path, source, *, split: str = "test", limit: int | None = None, resize: bool = False,
                    mean=None, std=None, setting=None, diff=None, reference: Reference | None = None,
                    verify: bool = True, max_drop: float | None = None, min_accuracy: float | None = None,
                    progress=None, target=None, timeout: float | None = None, strict: bool = False) -> dict:
    """Accuracy of the ``.tflite`` at ``path`` on ``source`` with ``setting`` (a
    :class:`~resnet_edge.runtime.setting.Setting`), on ``target`` (None: this machine; or an ssh:// device).

    ``source``: a data set (:class:`~resnet_edge.data.sources.Dataset`), whose ``split`` is prepared here and sent
    with the model; or a :class:`DeviceFolder`, read by the runner on the device (every image; ``limit``: that
    many, taken across classes; a model of ours names its classes, and the folder's must be the same names).
    ``diff`` (two settings) adds their comparison on the same inputs. ``reference`` (another model's scores for
    the same inputs, and its name: the CLI's ``--compare`` hands in the Keras source's) adds its accuracy and
    agreement. ``max_drop`` (points below the reference, or below the Keras accuracy convert recorded) and
    ``min_accuracy`` (percent) fill ``report["gate"]``; the caller decides what a failed gate means (the CLI
    exits 1 after printing)."""
    setting = setting or Setting()
    target = target or LOCAL
    checked = check_model(path, verify)  # once: every run below gets this checked model
    info = checked["info"] or {}
    sides = list(diff or [])  # both sides run, even when they are the same setting (run-to-run differences)
    todo = sides if setting in sides else [setting, *sides]
    if isinstance(source, DeviceFolder):
        if reference is not None or max_drop is not None or resize:
            raise ConfigError("--compare, --max-drop and --resize need the images here; with data on the device use "
                              "--min-accuracy")
        pre = _device_preprocessing(info, mean, std)
        x = None
        results, y, classes, skipped, named = _from_device_folder(checked, source, todo, pre, target, limit=limit,
                                                                  timeout=timeout, progress=progress, strict=strict)
        split = "all"
    else:
        if checked["inputs"] is None:
            raise ConfigError("reading the model's inputs needs the flatbuffer schema (pip install ai-edge-litert)")
        pre = preprocessing(checked["info"], source, mean, std)
        why = source.skipped_why  # what the folder's scan left out, then what failed to decode
        failed = [f"{f} ({why[f]})" if f in why else f for f in source.skipped]
        x, y = model_inputs(source, split, checked["inputs"], checked["outputs"], pre, limit=limit, resize=resize,
                            skipped=failed, strict=strict)
        results = predict(checked, todo, x, progress=progress, target=target, timeout=timeout)
        classes, skipped, named = source.classes, len(failed), [safe_text(f, 300) for f in failed[:20]]
    scores, described = results[todo.index(setting)]
    report = {"model": str(path), "target": target.name, "integrity": checked["integrity"]["status"],
              "model_name": f"{info.get('name')} {info.get('mode')}" if info.get("name") else None,
              "data": source.name, "split": split, "preprocessing": pre, "setting": described,
              "skipped": skipped, "skipped_files": named, **scores_report(scores, y, classes)}
    if diff:
        (a, da), (b, db) = results[-2:]
        outs = checked["outputs"] or []
        step = outs[0].get("integer_step") if len(outs) == 1 else None  # integer scores: compared in steps too
        report["diff"] = {**agreement(a, b, step), "sides": [{**d, "top1": top1(s, y)} for s, d in ((a, da), (b, db))]}
    ref = None
    if reference is not None:
        other, name = reference(x)
        other_top1 = top1(other, y)
        report["compare"] = {"model": name, "keras_top1": other_top1,
                             "drop_points": 100 * (other_top1 - report["top1"]), **agreement(other, scores)}
        ref = {"from": f"--compare {name}", "top1": other_top1}
    elif max_drop is not None:
        ref = _manifest_reference(path, source, split, len(y))
        if ref is None:
            raise ConfigError("--max-drop needs a reference accuracy: give --compare MODEL.keras, or keep the manifest "
                              "convert wrote beside the model and evaluate on the same data and split")
        report["reference"] = ref
    report["gate"] = _gate(report["top1"], ref, max_drop, min_accuracy)
    return report


def _gate(top: float, ref: dict | None, max_drop: float | None, min_accuracy: float | None) -> dict:
    """Whether the accuracy passes ``max_drop`` (points below ``ref``) and ``min_accuracy`` (percent), and why."""
    reasons, passed = [], []
    if max_drop is not None:
        drop = 100 * (ref["top1"] - top)
        (reasons if drop > max_drop else passed).append(
            f"top-1 {100 * top:.2f}% is {drop:.2f} points below the reference's {100 * ref['top1']:.2f}% "
            f"(--max-drop {max_drop:g})")
    if min_accuracy is not None:
        (reasons if 100 * top < min_accuracy else passed).append(
            f"top-1 {100 * top:.2f}% against --min-accuracy {min_accuracy:g}%")
    return {"checked": max_drop is not None or min_accuracy is not None, "failed": bool(reasons),
            "why": "; ".join(reasons or passed)}
