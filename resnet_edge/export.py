"""``resnet-edge convert``: Keras model -> checked, self-describing ``.tflite`` files (host side).

For each mode: convert (:mod:`resnet_edge.convert`), embed the app's metadata (labels, normalization,
recipe; :mod:`resnet_edge.tflite.metadata`), measure parity against the Keras model on held-out data,
report accelerator readiness and runtime compatibility, and write ``NAME.tflite`` + ``NAME.json``
atomically. ``max_drop`` turns an accuracy drop into a failure: the model is kept, its manifest says
``"status": "failed"``, and the command exits non-zero.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path


from resnet_edge import __version__
from resnet_edge.convert import CALIBRATORS, MODES, held_out, is_qat_model, model_samples, parity_arrays, pixel_input_quantization, to_tflite
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.io import ensure_writable, manifest_path, read_manifest, replace_together, sha256_file


def output_paths(name: str, modes: list[str], out: str | None, default_dir: Path = Path(".")) -> dict[str, Path]:
    """One mode: OUT is the file (default ``default_dir``/NAME_MODE.tflite). Several, or an existing
    directory: OUT is the directory that receives NAME_MODE.tflite files (default ``default_dir``)."""
    is_dir = bool(out) and (Path(out).is_dir() or str(out).endswith(("/", os.sep)))  # a trailing slash: a directory
    if len(modes) == 1 and not is_dir:
        path = Path(out) if out else default_dir / f"{name}_{modes[0]}.tflite"
        if path.suffix != ".tflite":
            raise ConfigError(f"--out {path}: use a .tflite file name (e.g. {path.with_suffix('.tflite').name})")
        return {modes[0]: ensure_writable(path, manifest=True)}
    folder = Path(out) if out else default_dir
    if folder.suffix == ".tflite":
        raise ConfigError(f"--out {folder}: several modes write several files; give a directory instead")
    return {m: ensure_writable(folder / f"{name}_{m}.tflite", manifest=True) for m in modes}


def convert(
    *,
    model_path: str | Path | None = None,
    spec=None,
    modes: list[str],
    out: str | None = None,
    data=None,
    calibration: int = 100,
    io: str = "float32",
    targets: tuple[str, ...] = (),
    max_drop: float | None = None,
    parity_samples: int | None = None,
    check_old_runtime: bool = True,
    trust: bool = False,
    author: str = "",
    license: str = "",
    weights=None,
    new_classifier: bool = False,
    calibrator: str = "resnet-edge",
    progress=None,
) -> list[dict]:
    """Convert a saved model (``model_path``) or a fresh one (``spec``) to every mode in ``modes``.

    ``trust`` loads a model file without checking it for code (see :mod:`resnet_edge.keras_files`).
    ``author`` and ``license`` go into the standard metadata that app frameworks read. ``weights``: a
    :class:`~resnet_edge.arch.weights.WeightsFile` loaded into the fresh ``spec`` (``new_classifier``: keep
    its fresh classifier).
    ``calibrator`` measures the int8 activation ranges (see :data:`~resnet_edge.convert.CALIBRATORS`).
    ``progress``, if given, gets a line at each step (calibration i/N, parity i/N, each check).
    ``parity_samples`` held-out test images (default 500, or 100 when the data must be resized to the
    model's input, where only agreement and differences mean something) measure parity.

    Side effects: writes ``NAME_MODE.tflite`` (or ``out``) and a ``.json`` manifest beside each, together.
    Each returned manifest has ``"written"`` (the full paths of both files) beside what the file holds.
    Raises :class:`MaxDropError` (with every manifest) after writing when ``max_drop`` is exceeded (those
    manifests say ``"status": "failed"``).
    """
    from resnet_edge.runtime import jobs
    from resnet_edge.tflite import metadata as md
    from resnet_edge.tflite import standard as std
    from resnet_edge.tflite.inspect import inspect
    from resnet_edge.tflite.readiness import report

    modes = list(dict.fromkeys(modes or ["float32"]))
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown mode(s) {bad}; valid: {', '.join(MODES)}")
    if io != "float32" and "int8" not in modes:
        raise ConfigError(f"--io {io} sets the int8 model's input/output type: add --int8")
    if (model_path is None) == (spec is None):
        raise ConfigError("give a MODEL file, or --depth/--model to build one (not both)")
    if calibrator not in CALIBRATORS:
        raise ConfigError(f"unknown calibrator {calibrator!r}; valid: {', '.join(CALIBRATORS)}")
    if calibration < 1:
        raise ConfigError(f"--calibration must be at least 1, got {calibration}")
    if max_drop is not None and max_drop < 0:
        raise ConfigError(f"--max-drop is the accuracy drop in points that fails the command (>= 0), got {max_drop}")
    # Beside the source model by default (a fresh model: the current directory). Checked before anything loads.
    name = Path(model_path).stem if model_path is not None else spec.name  # the output files' name
    paths = output_paths(name, modes, out, Path(model_path).parent if model_path is not None else Path("."))
    source_manifest = {}
    if model_path is not None:
        from resnet_edge.arch.keras_model import load_model

        model = load_model(model_path, trust=trust)
        source_manifest = read_manifest(model_path)
        arch = source_manifest.get("name") or (source_manifest.get("spec") or {}).get("name") or model.name
        source = {"path": str(model_path), "sha256": sha256_file(model_path), "trained": source_manifest.get("trained")}
    else:
        from resnet_edge.arch.keras_model import build_model

        model = build_model(spec)
        arch = spec.name
        source = {"built": spec.to_dict(), "trained": False}
        if weights is not None:
            from resnet_edge.arch.weights import load_into

            loaded = load_into(model, weights, new_classifier=new_classifier)
            source.update(trained=not new_classifier, sha256=sha256_file(weights.path),
                          weights={"file": Path(weights.path).name, "format": weights.format, **loaded})
    qat = is_qat_model(model)
    if qat:
        wrong = [m for m in modes if m not in ("int8", "float32")]
        if wrong:
            raise ConfigError(f"a quantization-aware-trained model converts to int8 (or float32), not {', '.join(wrong)}")
    for p in paths.values():
        if model_path is not None and manifest_path(p).resolve() == manifest_path(model_path).resolve():
            raise ConfigError(f"--out {p} would overwrite {manifest_path(p).name}, the manifest of {Path(model_path).name}; "
                              f"choose another name (e.g. {p.stem}_{next(iter(paths))}.tflite)")
    classes_match = data is not None and int(model.output_shape[-1]) == data.num_classes
    recipe = source_manifest.get("spec") or (spec.to_dict() if spec is not None else None)
    labels = data.classes if classes_match else None
    norm = source_manifest.get("normalization") or (
        {"mean": list(recipe["preprocess"]["mean"]), "std": list(recipe["preprocess"]["std"]), "inside_model": True}
        if recipe and recipe.get("preprocess") else None)
    needs_rep = any(m in ("int8", "int16x8") for m in modes) and not qat
    rep = fits = None
    if needs_rep and data is None:
        raise ConfigError("int8 and int16x8 need calibration images: give data (--data)")
    if needs_rep:
        if progress:
            progress(f"reading {calibration} calibration images")
        rep, _, fits = model_samples(model, data, "train", calibration)
    results = []
    failed = []
    say = progress or (lambda text: None)
    parity_set = None  # the held-out images, read and scored by Keras once for every mode (computed beside the
    # conversion instead, it measured 4% faster and took 300 MB more: many conversions at once matter more)
    for mode in modes:
        settings: dict = {}
        say(f"{mode}: converting")
        tfl = to_tflite(model, mode, representative=rep if mode in ("int8", "int16x8") else None,
                        io=io if mode == "int8" else "float32", settings=settings, calibrator=calibrator,
                        progress=lambda text, mode=mode: say(f"{mode}: {text}"))
        info = {
            "format": "resnet_edge/1",
            "name": arch,
            "source_file": Path(model_path).name if model_path is not None else None,
            "mode": mode,
            "labels": labels,
            "normalization": norm,
            "input": {"size": int(model.input_shape[1]), "channels": 3, "pixels": "raw 0..255 RGB" if norm else "normalized"},
            "recipe": recipe,
            "trained": bool(source.get("trained")),
            "tool": f"resnet-edge {__version__}",
        }
        if mode == "int8" and io != "float32" and norm:
            tfl = pixel_input_quantization(tfl)
        app = app_metadata(tfl, arch=arch, mode=mode, labels=labels, norm=norm, recipe=recipe, source=source,
                           data_name=data.name if data is not None and classes_match else None, author=author,
                           license=license)
        tfl = md.rewrite(tfl, info=info, standard=std.encode(app),
                         files={std.LABELS_FILE: std.labels_file(labels)} if labels is not None else {})
        info = md.read_info(tfl)  # as embedded: with the content checksum
        path = paths[mode]
        figures = None
        if data is not None:
            if parity_set is None:
                # 500 held-out images; 100 when they must be resized (then only agreement and differences count)
                fits_as_is = data.image_size is None or data.image_size == int(model.input_shape[1])
                n = parity_samples or (500 if fits_as_is else 100)
                say(f"{mode}: parity: reading {n} test images, the Keras model's scores")
                parity_set = held_out(model, data, n)
            x, y, data_fits, scores = parity_set
            figures = {"split": "test", **parity_arrays(model, tfl, x, y, count_accuracy=classes_match and data_fits,
                                                        progress=lambda text, mode=mode: say(f"{mode}: {text}"),
                                                        scores=scores)}
        status = "ok"
        if max_drop is not None and figures and figures.get("accuracy_drop_points") is not None:
            if figures["accuracy_drop_points"] > max_drop:
                status = "failed"
                failed.append(f"{path.name}: accuracy fell {figures['accuracy_drop_points']:.2f} points (> --max-drop {max_drop})")
        say(f"{mode}: inspecting the model")
        summary = inspect(tfl, targets=(), load_check=False)
        with replace_together(path, manifest_path(path)) as (tmp_model, tmp_manifest):
            # every check runs before the commit: a kill at any point leaves the old pair or the new one
            tmp_model.write_bytes(tfl)
            readiness = {}
            for t in targets:
                say(f"{mode}: {t} readiness")
                readiness[t] = report(tfl, t)
            old_runtime = None
            if check_old_runtime:
                say(f"{mode}: loading it in tflite-runtime 2.14")
                old_runtime = jobs.tflite_runtime_check(tmp_model)
            manifest = {
                "kind": "tflite-model",
                "name": arch,
                "status": status,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "source": source,
                "mode": mode,
                "file": {"path": path.name, "bytes": len(tfl), "sha256": hashlib.sha256(tfl).hexdigest(),
                         "content_sha256": summary["integrity"].get("sha256")},
                "ops": summary["ops"],
                "op_versions": summary["op_versions"],
                "quantization": {**summary["quantization"], "inputs": summary["inputs"], "outputs": summary["outputs"]},
                "converter_settings": settings,
                "calibration": None if mode not in ("int8", "int16x8") or qat else {
                    "samples": int(len(rep)), "split": "train", "data": data.name if data is not None else None,
                    "resized": not fits},
                "parity": figures,
                "metadata": info,
                "app_metadata": summary["app_metadata"],
                "readiness": readiness,
                "compatibility": {
                    "min_runtime_version": summary["min_runtime_version"],
                    "tflite_runtime_2_14": old_runtime,
                },
                "untrained_warning": None if source.get("trained") else
                    "the source model is untrained: its accuracy (and any accuracy here) means nothing",
            }
            tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        results.append({**manifest, "written": {"model": str(path), "manifest": str(manifest_path(path))}})
    if failed:
        raise MaxDropError("; ".join(failed) + " (models kept, manifests marked failed)", results)
    return results


def app_metadata(tfl: bytes, *, arch: str, mode: str, labels: list[str] | None, norm: dict | None, recipe: dict | None,
                 source: dict, data_name: str | None, author: str = "", license: str = ""):
    """The standard metadata (:mod:`resnet_edge.tflite.standard`) of a converted model. Our models
    normalize inside and take raw 0..255 pixels, so the frameworks are told mean 0, std 1: feed the
    pixels as they are (the training mean and std again would normalize twice). A model built without
    built-in normalization gets none: what it expects is unknown, and ``inspect`` says so."""
    from resnet_edge.tflite import standard as std
    from resnet_edge.tflite.inspect import io_tensors

    inputs, outputs = io_tensors(tfl)
    size = inputs[0]["shape"][1]
    classes = outputs[0]["shape"][-1]
    softmax = (recipe or {}).get("classifier_activation", "softmax") == "softmax"
    mean = std_ = None
    lo, hi = [], []
    if norm:
        mean, std_ = [0.0], [1.0]
        lo, hi = std.input_range(inputs[0]["dtype"], mean, std_)
    trained = f", trained on {data_name}" if source.get("trained") and data_name else ("" if source.get("trained") else
                                                                                     ", untrained")
    inside = (f"it normalizes inside (mean {', '.join(f'{v:g}' for v in norm['mean'])}, std "
              f"{', '.join(f'{v:g}' for v in norm['std'])}): feed raw 0..255 pixels") if norm else \
        "it takes normalized values (built without --raw-input: the normalization is unknown)"
    return std.ImageClassifierMetadata(
        name=f"{arch} ({mode})",
        description=(f"{arch}: a residual network (He et al., Deep Residual Learning for Image Recognition, 2015) "
                     f"classifying {size}x{size} RGB images into {classes} classes{trained}; {mode}; converted by "
                     f"resnet-edge {__version__}."),
        version=(source.get("sha256") or "")[:12] or "untrained",
        author=author, license=license,
        input_description=f"An RGB image of {size}x{size} pixels; {inside}.",
        mean=mean, std=std_, input_min=lo, input_max=hi,
        output_name="probability" if softmax else "logits",
        output_description=f"The {'probabilities' if softmax else 'logits (no softmax)'} of the {classes} classes, "
                           f"in the order of {std.LABELS_FILE}." if labels is not None else
                           f"The {'probabilities' if softmax else 'logits (no softmax)'} of the {classes} classes.",
        labels=labels,
    )


class MaxDropError(ResnetEdgeError):
    """``--max-drop`` exceeded; ``manifests`` holds every result (the models were written)."""

    def __init__(self, message: str, manifests: list[dict]):
        super().__init__(message)
        self.manifests = manifests


__all__ = ["convert"]
