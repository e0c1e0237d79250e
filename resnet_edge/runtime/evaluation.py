"""Accuracy of a ``.tflite`` classifier on real data (edge side: numpy, a runtime, Pillow for image folders).

:func:`model_inputs` turns a data source's images into the model's form, as its resnet-edge metadata
says (raw 0..255 pixels when normalization is inside the model, else normalized with the data's own
mean and std, as ``convert`` did), or as options say for a model from another tool (``mean``/``std`` in
0..255 units; without them, raw pixels). Images of a fixed-size source (digits, CIFAR-10) must have the
model's size unless ``resize``; image-folder files are decoded and resized as evaluation does in
training (shorter side to size/0.875 and a centered crop at 96 pixels and more, else a plain resize).

:func:`scores_report`: top-1 and top-5 accuracy, per-class accuracy and the most frequent confusions.
:func:`agreement`: how two sets of scores for the same inputs differ (LiteRT's inference_diff idea).
"""

from __future__ import annotations

import numpy as np

from resnet_edge.runtime.harness import BadImage, load_image
from resnet_edge.errors import ConfigError, MissingDependencyError
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


def scores_report(scores: np.ndarray, y: np.ndarray, classes: list[str], top_confusions: int = 5) -> dict:
    """Top-1/top-5 accuracy, per-class accuracy and the most frequent (true, predicted) confusions."""
    k = min(5, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties go to the first class, as argmax
    pred = top[:, 0]
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = []
    for c in range(n):
        total = int(confusion[c].sum())
        per_class.append({"class": safe_text(classes[c], 60), "n": total,
                          "accuracy": float(confusion[c, c] / total) if total else None})
    off = [(int(confusion[t, p]), t, p) for t in range(n) for p in range(n) if t != p and confusion[t, p]]
    off.sort(key=lambda item: (-item[0], item[1], item[2]))
    return {"n": int(len(y)), "top1": float((pred == y).mean()), "top5": float((top == y[:, None]).any(1).mean()),
            "top_k": k, "per_class": per_class,
            "confusions": [{"true": safe_text(classes[t], 60), "predicted": safe_text(classes[p], 60), "count": c}
                           for c, t, p in off[:top_confusions]],
            "confusion_matrix": confusion.tolist()}


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Top-1 agreement and the max/mean absolute difference of two score arrays for the same inputs."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"n": int(len(a)), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_abs_diff": float(diff.max()) if diff.size else 0.0, "mean_abs_diff": float(diff.mean()) if diff.size else 0.0}


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


def _keras_scores(path, x: np.ndarray, trust: bool) -> np.ndarray:
    from resnet_edge.arch.keras_model import load_model

    model = load_model(path, trust=trust)
    if len(model.inputs) != 1 or tuple(model.input_shape[1:]) != tuple(x.shape[1:]):
        raise ConfigError(f"{path} takes {list(model.input_shape)}, the .tflite's inputs are {list(x.shape)}: "
                          "compare a .tflite with the Keras model it was converted from")
    dtype = model.inputs[0].dtype
    feed = np.clip(np.round(x), 0, 255).astype(np.uint8) if str(getattr(dtype, "name", dtype)) == "uint8" else x
    return np.concatenate([np.asarray(model(feed[i:i + 64], training=False), np.float32) for i in range(0, len(x), 64)])


DEVICE_FOLDER = "device-folder:"


def evaluate_on_device_folder(path, folder: str, target, *, limit: int | None = None, mean=None, std=None,
                              setting=None, diff=None, verify: bool = True, min_accuracy: float | None = None,
                              timeout: float | None = None, progress=None, strict: bool = False,
                              max_pixels: int | None = None) -> dict:
    """:func:`evaluate_tflite` for images that live on the device: ``folder`` there holds one sub-folder
    per class, read and decoded by the runner on the ssh ``target`` (Pillow needed there); every image is
    evaluated (``limit``: that many, taken across classes). A model of ours names its classes: the folder's
    must be the same names. Preprocessing: raw pixels, the mean/std our metadata recorded, or --mean/--std."""
    from resnet_edge.runtime.bench import Setting, check_model, predict_folder_on

    setting = setting or Setting()
    checked = check_model(path, verify)
    info = checked["info"] or {}
    norm = info.get("normalization") or {}
    if mean is not None or std is not None or info.get("input") is None:
        pre = preprocessing(None if mean is None and std is None else info, None, mean, std)
    elif str(info["input"].get("pixels", "")).startswith("normalized"):
        if norm.get("inside_model") is False and norm.get("mean") and norm.get("std"):
            pre = {"raw": False, "mean": list(norm["mean"]), "std": list(norm["std"]),
                   "from": "model metadata: normalized input, with the mean and std convert recorded"}
        else:
            raise ConfigError("the model takes normalized input and its metadata does not record the mean and std: "
                              "give --mean and --std (0..255 units, R,G,B)")
    else:
        pre = {"raw": True, "mean": None, "std": None, "from": "model metadata: raw 0..255 pixels, normalized inside"}
    sides = list(diff or [])
    todo = sides if setting in sides else [setting, *sides]
    results, y, found, skipped, named = predict_folder_on(target, path, todo, folder, pre, limit=limit, verify=verify,
                                                          timeout=timeout, progress=progress, max_pixels=max_pixels)
    if strict and skipped:
        raise ConfigError(f"{skipped} image(s) on the device could not be read, e.g. {named[0] if named else '?'}; "
                          "remove them, or drop --strict to skip and count such files")
    labels = [str(c) for c in info.get("labels") or []]
    outputs = int(results[0][0].shape[1])
    if labels:
        if sorted(labels) != sorted(found):
            raise ConfigError(f"the class folders in {folder} ({', '.join(safe_text(c, 30) for c in found[:8])}"
                              f"{', ...' if len(found) > 8 else ''}) are not the model's classes "
                              f"({', '.join(safe_text(c, 30) for c in labels[:8])}{', ...' if len(labels) > 8 else ''})")
        y = np.asarray([labels.index(found[i]) for i in y], np.int64)
        classes = labels
    elif len(found) != outputs:
        raise ConfigError(f"{folder} has {len(found)} class folders; the model has {outputs} outputs")
    else:
        classes = found
    scores, described = results[todo.index(setting)]
    report = {"model": str(path), "target": target.name, "integrity": checked["integrity"]["status"],
              "model_name": f"{info.get('name')} {info.get('mode')}" if info.get("name") else None,
              "data": f"{DEVICE_FOLDER}{folder}", "split": "all", "skipped": skipped, "skipped_files": named,
              "preprocessing": pre,
              "setting": described, **scores_report(scores, y, classes)}
    if diff:
        (a, da), (b, db) = results[-2:]
        report["diff"] = {**agreement(a, b), "sides": [
            {**d, "top1": float((s.argmax(1) == y).mean())} for s, d in ((a, da), (b, db))]}
    gate = {"checked": min_accuracy is not None, "failed": False, "why": ""}
    if min_accuracy is not None:
        gate.update(failed=100 * report["top1"] < min_accuracy,
                    why=f"top-1 {100 * report['top1']:.2f}% against --min-accuracy {min_accuracy:g}%")
    report["gate"] = gate
    return report


def evaluate_tflite(path, data, *, split: str = "test", limit: int | None = None, resize: bool = False,
                    mean=None, std=None, setting=None, diff=None, compare=None, trust: bool = False,
                    verify: bool = True, max_drop: float | None = None, min_accuracy: float | None = None,
                    progress=None, target=None, timeout: float | None = None, strict: bool = False) -> dict:
    """Accuracy of the ``.tflite`` at ``path`` on ``data`` with ``setting`` (a
    :class:`~resnet_edge.runtime.bench.Setting`); ``diff`` (two settings) adds their comparison on the
    same inputs; ``compare`` (a Keras model, host side) adds its accuracy and agreement. ``max_drop``
    (points below the reference) and ``min_accuracy`` (percent) fill ``report["gate"]``; the caller
    decides what a failed gate means (the CLI exits 1 after printing). ``target``: run the model on that
    device (ssh), the images prepared here and sent with it."""
    from resnet_edge.runtime.bench import Setting, check_model, predict

    setting = setting or Setting()
    checked = check_model(path, verify)
    if checked["inputs"] is None:
        raise ConfigError("reading the model's inputs needs the flatbuffer schema (pip install ai-edge-litert)")
    pre = preprocessing(checked["info"], data, mean, std)
    why = data.skipped_why  # what the folder's scan left out, then what failed to decode
    skipped = [f"{f} ({why[f]})" if f in why else f for f in data.skipped]
    x, y = model_inputs(data, split, checked["inputs"], checked["outputs"], pre, limit=limit, resize=resize,
                        skipped=skipped, strict=strict)
    sides = list(diff or [])  # both sides run, even when they are the same setting (run-to-run differences)
    todo = sides if setting in sides else [setting, *sides]
    results = predict(path, todo, x, verify=verify, progress=progress, target=target, timeout=timeout)
    scores, described = results[todo.index(setting)]
    info = checked["info"] or {}
    report = {"model": str(path), "target": target.name if target else "local",
              "integrity": checked["integrity"]["status"],
              "model_name": f"{info.get('name')} {info.get('mode')}" if info.get("name") else None,
              "data": data.name, "split": split, "preprocessing": pre, "setting": described,
              "skipped": len(skipped), "skipped_files": [safe_text(f, 300) for f in skipped[:20]],
              **scores_report(scores, y, data.classes)}
    if diff:
        (a, da), (b, db) = results[-2:]
        report["diff"] = {**agreement(a, b), "sides": [
            {**d, "top1": float((s.argmax(1) == y).mean())} for s, d in ((a, da), (b, db))]}
    reference = None
    if compare:
        keras = _keras_scores(compare, x, trust)
        keras_top1 = float((keras.argmax(1) == y).mean())
        report["compare"] = {"model": str(compare), "keras_top1": keras_top1,
                             "drop_points": 100 * (keras_top1 - report["top1"]), **agreement(keras, scores)}
        reference = {"from": f"--compare {compare}", "top1": keras_top1}
    elif max_drop is not None:
        reference = _manifest_reference(path, data, split, len(y))
        if reference is None:
            raise ConfigError("--max-drop needs a reference accuracy: give --compare MODEL.keras, or keep the manifest "
                              "convert wrote beside the model and evaluate on the same data and split")
        report["reference"] = reference
    gate = {"checked": max_drop is not None or min_accuracy is not None, "failed": False, "why": ""}
    reasons, passed = [], []
    if max_drop is not None:
        drop = 100 * (reference["top1"] - report["top1"])
        (reasons if drop > max_drop else passed).append(
            f"top-1 {100 * report['top1']:.2f}% is {drop:.2f} points below the reference's {100 * reference['top1']:.2f}% "
            f"(--max-drop {max_drop:g})")
    if min_accuracy is not None:
        (reasons if 100 * report["top1"] < min_accuracy else passed).append(
            f"top-1 {100 * report['top1']:.2f}% against --min-accuracy {min_accuracy:g}%")
    gate.update(failed=bool(reasons), why="; ".join(reasons or passed))
    report["gate"] = gate
    return report
