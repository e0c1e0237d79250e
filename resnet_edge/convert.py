"""``resnet-edge convert``, the conversion stage: a Keras model -> checked, self-describing ``.tflite`` files
(host side).

For each mode :func:`convert` converts (:func:`to_tflite`), embeds the app's metadata (labels, normalization,
recipe; :mod:`resnet_edge.tflite.metadata`, and the standard metadata app frameworks read), measures parity
against the Keras model on held-out data, reports accelerator readiness and runtime compatibility, and writes
``NAME_MODE.tflite`` + ``NAME_MODE.json`` atomically. ``max_drop`` turns an accuracy drop into a failure: the
model is kept, its manifest says ``"status": "failed"``, and the command exits non-zero. The optimization
stages (QAT, prune) take the same path without writing files (:func:`convert_and_check`): one pipeline
(:func:`converted`) converts and measures for both, and one place (:func:`check_request`) holds the rules.

Modes:

* ``float32``: the graph as it is.
* ``float16``: float16 weights (half the file; the GPU delegate runs them natively, CPUs expand them).
* ``dynamic``: int8 weights, float activations (dynamic-range quantization; no calibration data).
* ``int8``: full integer quantization, per-channel weights, calibrated on representative samples from the
  data layer; a quantization-aware-trained model needs none (its ranges were learned). ``io`` sets the
  model's input/output type: ``int8``, ``uint8`` or ``float32`` (float in and out, int8 inside).
* ``int16x8``: 16-bit activations, 8-bit weights (more accurate than int8, slower on most CPUs).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from resnet_edge import __version__
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.io import ensure_writable, manifest_path, read_manifest, replace_together, sha256_file

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
IO_TYPES = ("float32", "int8", "uint8")
#: Who measures the int8 activation ranges: ``resnet-edge`` (XNNPACK on every core, :mod:`resnet_edge.calibrate`)
#: or ``tensorflow`` (TensorFlow's own calibrator, one image at a time on one core).
CALIBRATORS = ("resnet-edge", "tensorflow")


def check_request(modes: list[str], io: str = "float32", calibrator: str = "resnet-edge", *,
                  calibration: int | None = None, max_drop: float | None = None, qat: bool | None = None) -> None:
    """The rules of a conversion, in one place, each broken one said in one line (:class:`ConfigError`):
    known modes, an ``io`` type only with int8, a known calibrator, at least one calibration image, a
    non-negative ``max_drop``, and a quantization-aware-trained model (``qat``; None: not known yet) only
    to int8 or float32. The command checks what it can before the model loads, :func:`to_tflite` again."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown mode(s) {bad}; valid: {', '.join(MODES)}")
    if io not in IO_TYPES:
        raise ConfigError(f"unknown --io {io!r}; valid: {', '.join(IO_TYPES)}")
    if io != "float32" and "int8" not in modes:
        raise ConfigError(f"--io {io} sets the int8 model's input/output type: add --int8")
    if calibrator not in CALIBRATORS:
        raise ConfigError(f"unknown calibrator {calibrator!r}; valid: {', '.join(CALIBRATORS)}")
    if calibration is not None and calibration < 1:
        raise ConfigError(f"--calibration must be at least 1, got {calibration}")
    if max_drop is not None and max_drop < 0:
        raise ConfigError(f"--max-drop is the accuracy drop in points that fails the command (>= 0), got {max_drop}")
    if qat:
        wrong = [m for m in modes if m not in ("int8", "float32")]
        if wrong:
            raise ConfigError(f"a quantization-aware-trained model converts to int8 (or float32), not {', '.join(wrong)}")


def is_qat_model(model) -> bool:
    """Whether a Keras model carries tfmot fake-quantization (QuantizeWrapper / QuantizeLayer)."""
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer") for layer in model.layers)


def model_samples(model, data, split: str, n: int | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``n`` inputs of ``split`` in the model's form, their labels, and whether the data fits the model
    as it is (same image size). Images of another size are resized (bilinear) for calibration and parity."""
    from resnet_edge._tf import tf
    from resnet_edge.data.pipeline import model_inputs, takes_raw_pixels

    size = int(model.input_shape[1])
    fits = data.image_size is None or data.image_size == size
    if fits:
        xs, ys = [], []
        for x, y in model_inputs(model, data, split, batch_size=64, limit=n):
            xs.append(x.numpy())
            ys.append(y.numpy())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n], True
    part = data.split(split).take(n)
    x = tf.image.resize(tf.cast(part.x, tf.float32), [size, size]).numpy()
    if not takes_raw_pixels(model):
        x = (x - np.asarray(data.mean, np.float32)) / np.asarray(data.std, np.float32)
    if model.inputs[0].dtype == tf.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return x, part.y, False


def representative_samples(model, data, n: int) -> np.ndarray:
    """``n`` training images in the form the model takes (raw or normalized), for calibration."""
    return model_samples(model, data, "train", n)[0]  # float32, or uint8 for a model with a uint8 input


def inference_function(model):
    """The model's inference call (``training=False``) traced once for any batch size: what the
    converter freezes. Converting from it skips the SavedModel that ``from_keras_model`` writes and
    reads back first (most of a float conversion's time)."""
    from resnet_edge._tf import tf

    spec = tf.TensorSpec([None, *model.input_shape[1:]], model.inputs[0].dtype, name=model.input_names[0])
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def make_converter(model, mode: str, representative, io: str, qat: bool):
    """TensorFlow's converter for ``model`` set for ``mode`` (arguments as :func:`to_tflite`'s, checked
    there)."""
    from resnet_edge._tf import tf

    # No trackable object: the converter freezes the traced function instead of saving a SavedModel first.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([inference_function(model)])
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "int16x8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if not qat:
            if representative is None:
                raise ConfigError(f"{mode} needs representative samples (calibration data) unless the model is QAT-trained")
            if not callable(representative):
                want = tuple(int(d) for d in model.input_shape[1:])
                got = tuple(np.asarray(representative).shape[1:])
                if got != want:
                    raise ConfigError(f"representative samples have shape {got} but the model takes {want}; "
                                      "calibrate with data of the model's input size")
            converter.representative_dataset = _as_generator(representative)
        if mode == "int8":
            if not qat:  # a QAT graph is integer-only by construction; TF 2.21's check for it misses Keras models
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io != "float32":
                converter.inference_input_type = getattr(tf, io)
                converter.inference_output_type = getattr(tf, io)
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
    return converter


def to_tflite(
    model,
    mode: str = "float32",
    *,
    representative: np.ndarray | Callable[[], Iterable] | None = None,
    io: str = "float32",
    settings: dict | None = None,
    calibrator: str = "resnet-edge",
    progress: Callable[[str], None] | None = None,
) -> bytes:
    """Convert a tf_keras model; return the ``.tflite`` bytes.

    ``representative`` (an array of model inputs, or a generator function) is needed for ``int8`` and
    ``int16x8`` unless the model was quantization-aware trained. ``settings``, if given, is filled with
    the exact converter settings used (for the manifest). ``calibrator`` measures int8 activation ranges
    (:data:`CALIBRATORS`; an int16x8 model, or samples given as a generator, always use TensorFlow's);
    ``progress`` gets "calibration i/N" lines.
    """
    from resnet_edge._native import release_memory
    from resnet_edge._tf import quiet_native_stderr, tf

    qat = is_qat_model(model)
    check_request([mode], io, calibrator, qat=qat)
    converter = make_converter(model, mode, representative, io, qat)
    calibrated_here = mode == "int8" and not qat and calibrator == "resnet-edge" and not callable(representative)
    if settings is not None:
        settings.update({
            "converter": "tf.lite.TFLiteConverter.from_concrete_functions (frozen inference function)",
            "tensorflow": tf.__version__,
            "optimizations": [str(o) for o in converter.optimizations],
            "supported_types": [str(t.name) for t in converter.target_spec.supported_types],
            "supported_ops": sorted(str(o) for o in converter.target_spec.supported_ops),
            "inference_input_type": str(getattr(converter.inference_input_type, "name", converter.inference_input_type)),
            "inference_output_type": str(getattr(converter.inference_output_type, "name", converter.inference_output_type)),
            "representative_samples": None if representative is None or callable(representative) else int(len(representative)),
            "quantization_aware_trained": qat,
            "calibrator": None if mode not in ("int8", "int16x8") or qat else
                          ("resnet-edge" if calibrated_here else "tensorflow"),
        })
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        try:
            if calibrated_here:
                return serving_signature(_int8_from_measured_ranges(converter, np.asarray(representative), progress),
                                         model)
            return serving_signature(bytes(converter.convert()), model)
        finally:
            del converter
            release_memory()


def serving_signature(tfl: bytes, model) -> bytes:
    """``tfl`` with the ``serving_default`` signature (inputs and outputs named as the Keras model names
    them: ``input`` -> ``predictions``) that a conversion through a SavedModel carries and a frozen function's
    does not: LiteRT's signature runners, ``CompiledModel`` and Android's ``runSignature`` address a model by it."""
    from resnet_edge.tflite.model import _ints, pack, read, schema

    m, _ = read(tfl, "the converted model")
    if m.signatureDefs:
        return tfl
    s, g = schema(), m.subgraphs[0]

    def named(name: str, index: int):
        t = s.TensorMapT()
        t.name, t.tensorIndex = name.encode(), int(index)
        return t

    signature = s.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = b"serving_default", 0
    signature.inputs = [named(n, i) for n, i in zip(model.input_names, _ints(g.inputs))]
    signature.outputs = [named(n, i) for n, i in zip(model.output_names, _ints(g.outputs))]
    m.signatureDefs = [signature]
    return pack(m, len(tfl))


def _int8_from_measured_ranges(converter, samples: np.ndarray, progress) -> bytes:
    """TensorFlow's int8 conversion with the activation ranges measured by :mod:`resnet_edge.calibrate`.

    The converter is asked for its calibration graph only (:func:`calibration_graph`), the ranges are
    measured over every sample on all cores and written in, and the graph goes through the quantizer
    calls the converter makes itself (:func:`quantize_graph`). Given TensorFlow's ranges, this gives
    TensorFlow's model (tested)."""
    return quantize_graph(converter, measured_calibration(converter, samples, progress))


def measured_calibration(converter, samples: np.ndarray, progress=None) -> bytes:
    """The converter's calibration graph with the activation ranges :mod:`resnet_edge.calibrate` measures over
    ``samples``: what the int8 conversion quantizes (and the per-layer error of :mod:`resnet_edge.diagnose`)."""
    from resnet_edge import calibrate
    from resnet_edge._native import release_memory

    graph = calibration_graph(converter, samples[:1])
    release_memory()  # the frozen graph and the converter's intermediates: about 450 MB for ResNet-18
    shown = progress and (lambda done, total: progress(f"calibration {done}/{total}"))
    return calibrate.with_ranges(graph, calibrate.measure(graph, samples, progress=shown))


def calibration_graph(converter, samples) -> bytes:
    """The float graph TensorFlow's quantizer takes, its ``min``/``max`` fields set by TensorFlow's
    calibrator from ``samples`` (TF 2.21's ``_experimental_calibrate_only``)."""
    full = converter.representative_dataset
    converter._experimental_calibrate_only = True
    converter.representative_dataset = _as_generator(samples)
    try:
        return bytes(converter.convert())
    finally:
        converter._experimental_calibrate_only = False
        converter.representative_dataset = full


def quantize_graph(converter, graph: bytes) -> bytes:
    """A calibration graph quantized as ``converter.convert()`` quantizes it: ``_mlir_quantize`` with the
    converter's settings, then ``_deduplicate_readonly_buffers`` (TF 2.21's ``lite.py``)."""
    from tensorflow.lite.python import lite as tflite_converter

    float32 = tflite_converter._dtypes.float32
    quantized = tflite_converter._mlir_quantize(
        graph,
        converter._experimental_disable_per_channel,
        input_data_type=converter.inference_input_type or float32,
        output_data_type=converter.inference_output_type or float32,
        enable_variable_quantization=False,
        disable_per_channel_for_dense_layers=converter._experimental_disable_per_channel_quantization_for_dense_layers,
    )
    return bytes(tflite_converter._deduplicate_readonly_buffers(quantized))


def _as_generator(representative) -> Callable[[], Iterable]:
    if callable(representative):
        return representative
    samples = np.asarray(representative)

    def gen():
        for i in range(len(samples)):
            yield [samples[i:i + 1]]

    return gen


def batch_for(x: np.ndarray) -> int:
    """Images per batch for a Keras or TFLite pass over ``x``: 64 small images, fewer large ones (16 at
    224x224: a batch of 64 took 1.35 GB for ResNet-18 and was only 15% faster)."""
    pixels = int(np.prod(x.shape[1:3])) if x.ndim >= 3 else 1
    return int(max(1, min(64, 2 ** 20 // max(pixels, 1))))


def keras_scores(model, x: np.ndarray) -> np.ndarray:
    """The Keras model's outputs for ``x``, through its traced inference graph (a third faster than calling
    the model eagerly), in batches sized by :func:`batch_for`."""
    from resnet_edge._tf import tf

    step = batch_for(x)
    run = inference_function(model)
    return np.concatenate([tf.nest.flatten(run(tf.constant(x[i:i + step])))[0].numpy()
                           for i in range(0, len(x), step)])


def held_out(model, data, n: int | None, split: str = "test") -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """``n`` images of ``split`` (all when None) in the model's form, their labels, whether the data fit as they
    are, and the Keras model's scores for them: what parity needs from the Keras side, the same for every mode."""
    x, y, fits = model_samples(model, data, split, n)
    return x, y, fits, keras_scores(model, x)


def parity_arrays(model, tflite: bytes, x: np.ndarray, y: np.ndarray, count_accuracy: bool = True,
                  progress: Callable[[str], None] | None = None, scores: np.ndarray | None = None) -> dict:
    """Top-1 agreement between Keras and TFLite, max and mean absolute difference of the (dequantized)
    outputs, and, when ``count_accuracy``, the accuracy of both and the drop in points. ``scores``: the
    Keras model's for ``x`` when already computed (:func:`held_out`). ``progress`` gets "parity i/N"."""
    from resnet_edge.metrics import agreement, top1
    from resnet_edge.runtime.runner import TFLiteModel

    step = batch_for(x)
    tfl = TFLiteModel(tflite, probe=False)  # bytes just made here
    reference = keras_scores(model, x) if scores is None else scores
    got = []
    for i in range(0, len(x), step):
        got.append(tfl.predict(x[i:i + step], batch_size=step))
        if progress:
            progress(f"parity {min(i + step, len(x))}/{len(x)}")
    tfl_scores = np.concatenate(got)
    spread = int(len(np.unique(reference.argmax(1))))
    out = {
        **agreement(reference, tfl_scores),  # n, top1_agreement, max_abs_diff, mean_abs_diff
        # An untrained net often predicts one class for every input: then 100% agreement says nothing,
        # and the output differences are the measure (readers show agreement only when this is > 1).
        "keras_distinct_predictions": spread,
        "keras_accuracy": None,
        "tflite_accuracy": None,
        "accuracy_drop_points": None,
    }
    if count_accuracy:
        ka, ta = top1(reference, y), top1(tfl_scores, y)
        out.update(keras_accuracy=ka, tflite_accuracy=ta, accuracy_drop_points=100 * (ka - ta))
    return out


class Converted:
    """One mode's result from :func:`converted`: the ``.tflite`` bytes, the converter's exact settings, what
    calibrated it (None where nothing did) and its parity with the Keras model (None without data)."""

    def __init__(self, mode: str, tflite: bytes, settings: dict, calibration: dict | None, parity: dict | None):
        self.mode, self.tflite, self.settings, self.calibration, self.parity = mode, tflite, settings, calibration, parity


def converted(model, modes: list[str], *, data=None, io: str = "float32", calibration: int = 100,
              calibrator: str = "resnet-edge", parity_split: str = "test", parity_samples: int | None = None,
              finish: Callable[[str, bytes], bytes] | None = None,
              progress: Callable[[str], None] | None = None) -> Iterator[Converted]:
    """The one conversion pipeline, for the convert stage and the optimization stages alike: each of ``modes``
    converted and checked, in turn (:class:`Converted`).

    The ``calibration`` training images (read once, when a mode needs them and the model is not QAT) and the
    held-out set (``parity_samples`` images of ``parity_split``, all when None; read and scored by Keras once
    for every mode) are shared by every mode. ``finish(mode, tflite)`` gives the file as it will be shipped (the
    convert stage adds its metadata there) before parity is measured on it. ``progress`` gets a line at each
    step (calibration i/N, parity i/N)."""
    qat = is_qat_model(model)
    check_request(modes, io, calibrator, calibration=calibration, qat=qat)
    say = progress or (lambda text: None)
    rep = calibrated = None
    if any(m in ("int8", "int16x8") for m in modes) and not qat:
        if data is None:
            raise ConfigError("int8 and int16x8 need calibration images: give data (--data)")
        say(f"reading {calibration} calibration images")
        rep, _, fits = model_samples(model, data, "train", calibration)
        calibrated = {"samples": int(len(rep)), "split": "train", "data": data.name, "resized": not fits}
    classes_match = data is not None and int(model.output_shape[-1]) == data.num_classes
    parity_set = None  # computed beside the conversion instead, it measured 4% faster and took 300 MB more
    for mode in modes:
        settings: dict = {}
        say(f"{mode}: converting")
        quantized = mode in ("int8", "int16x8")
        tfl = to_tflite(model, mode, representative=rep if quantized else None, io=io if mode == "int8" else "float32",
                        settings=settings, calibrator=calibrator, progress=lambda text, mode=mode: say(f"{mode}: {text}"))
        if finish is not None:
            tfl = finish(mode, tfl)
        figures = None
        if data is not None:
            if parity_set is None:
                say(f"{mode}: parity: reading {parity_samples or 'every'} {parity_split} images, the Keras model's scores")
                parity_set = held_out(model, data, parity_samples, parity_split)
            x, y, fits_as_is, scores = parity_set
            figures = {"split": parity_split, **parity_arrays(
                model, tfl, x, y, count_accuracy=classes_match and fits_as_is,
                progress=lambda text, mode=mode: say(f"{mode}: {text}"), scores=scores)}
        yield Converted(mode, tfl, settings, calibrated if quantized else None, figures)


def convert_and_check(model, data, mode: str = "float32", *, io: str = "float32", split: str = "test",
                      limit: int | None = None, calibration: int = 100) -> tuple[bytes, dict]:
    """:func:`converted` for one mode, no file written (the QAT and pruning stages' int8 check): the
    ``.tflite`` bytes and ``{"mode", "io", "bytes", "split", parity figures}`` on ``limit`` images of ``split``."""
    c = next(converted(model, [mode], data=data, io=io, calibration=calibration, parity_split=split,
                       parity_samples=limit))
    return c.tflite, {"mode": mode, "io": io, "bytes": len(c.tflite), **c.parity}


#: Ops that read their input's quantization when they are prepared, so the input tensor's scale and zero
#: point may change without changing what they compute.
_RESCALING_CONSUMERS = {"QUANTIZE", "SUB", "ADD", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D"}


def pixel_input_quantization(tfl: bytes) -> bytes:
    """Give the integer input of a model that takes raw 0..255 pixels one step per pixel value: scale 1
    and zero point 0 (uint8) or -128 (int8).

    The converter sets the input's range from the calibration images, so images that never reach 0 or 255
    give a scale other than 1. App frameworks (MediaPipe, the Task Library) feed a quantized input the
    pixel values as they are, which is right only with scale 1; and with scale 1 quantizing a pixel loses
    nothing. The ops that read the input rescale from whatever quantization it has, so only the input's
    parameters change. Returns ``tfl`` unchanged when the input is float or already so quantized."""
    from resnet_edge.tflite.model import _ints, op_name, pack, read, type_name

    m, _ = read(tfl)
    g = m.subgraphs[0]
    index = _ints(g.inputs)[0]
    t = g.tensors[index]
    zero = {"uint8": 0, "int8": -128}.get(type_name(t.type))
    q = t.quantization
    if zero is None or q is None or q.scale is None or len(q.scale) != 1:
        return tfl
    if float(q.scale[0]) == 1.0 and int(q.zeroPoint[0]) == zero:
        return tfl
    consumers = {op_name(m, op.opcodeIndex) for op in g.operators or [] if index in _ints(op.inputs)}
    if not consumers <= _RESCALING_CONSUMERS:
        raise ConfigError(f"cannot give the integer input one step per pixel: it feeds {', '.join(sorted(consumers))}")
    q.scale = np.asarray([1.0], dtype=np.float32)
    q.zeroPoint = np.asarray([zero], dtype=np.int64)
    return pack(m, len(tfl))


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
    name: str | None = None,
) -> list[dict]:
    """Convert a saved model (``model_path``) or a fresh one (``spec``) to every mode in ``modes``.

    ``trust`` loads a model file without checking it for code (see :mod:`resnet_edge.keras_files`).
    ``author`` and ``license`` go into the standard metadata that app frameworks read. ``weights``: a
    :class:`~resnet_edge.arch.weights.WeightsFile` loaded into the fresh ``spec`` (``new_classifier``: keep
    its fresh classifier).
    ``calibrator`` measures the int8 activation ranges (see :data:`~resnet_edge.convert.CALIBRATORS`).
    ``progress``, if given, gets a line at each step (calibration i/N, parity i/N, each check).
    ``name`` names the files (default: the model file's name, or the built network's).
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
    check_request(modes, io, calibrator, calibration=calibration, max_drop=max_drop)
    if (model_path is None) == (spec is None):
        raise ConfigError("give a MODEL file, or --depth/--model to build one (not both)")
    # Beside the source model by default (a fresh model: the current directory). Checked before anything loads.
    if name is None:  # the output files' name: NAME_MODE.tflite
        name = Path(model_path).stem if model_path is not None else spec.name
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
    fits_as_is = data is None or data.image_size is None or data.image_size == int(model.input_shape[1])
    # 500 held-out images; 100 when they must be resized (then only agreement and differences count)
    n = parity_samples or (500 if fits_as_is else 100)
    results = []
    failed = []
    say = progress or (lambda text: None)

    def info_of(mode: str) -> dict:
        return {
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

    def finish(mode: str, tfl: bytes) -> bytes:
        """The file as shipped: the pixel input's quantization, our metadata and the standard metadata."""
        if mode == "int8" and io != "float32" and norm:
            tfl = pixel_input_quantization(tfl)
        app = app_metadata(tfl, arch=arch, mode=mode, labels=labels, norm=norm, recipe=recipe, source=source,
                           data_name=data.name if data is not None and classes_match else None, author=author,
                           license=license)
        return md.rewrite(tfl, info=info_of(mode), standard=std.encode(app),
                          files={std.LABELS_FILE: std.labels_file(labels)} if labels is not None else {})

    for done in converted(model, modes, data=data, io=io, calibration=calibration, calibrator=calibrator,
                          parity_samples=n, finish=finish, progress=progress):
        mode, tfl, settings, figures = done.mode, done.tflite, done.settings, done.parity
        info = md.read_info(tfl)  # as embedded: with the content checksum
        path = paths[mode]
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
                "calibration": done.calibration,
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


