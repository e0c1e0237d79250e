"""Keras -> TFLite in every mode the edge needs (host side).

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

import warnings
from typing import Callable, Iterable

import numpy as np

from resnet_edge.errors import ConfigError

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
IO_TYPES = ("float32", "int8", "uint8")


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


#: Who measures the int8 activation ranges: ``resnet-edge`` (XNNPACK on every core, :mod:`resnet_edge.calibrate`)
#: or ``tensorflow`` (TensorFlow's own calibrator, one image at a time on one core).
CALIBRATORS = ("resnet-edge", "tensorflow")


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

    if mode not in MODES:
        raise ConfigError(f"unknown conversion mode {mode!r}; valid: {', '.join(MODES)}")
    if io not in IO_TYPES:
        raise ConfigError(f"unknown --io {io!r}; valid: {', '.join(IO_TYPES)}")
    if io != "float32" and mode != "int8":
        raise ConfigError(f"--io {io} applies to --int8 only; {mode} models keep float32 inputs and outputs")
    if calibrator not in CALIBRATORS:
        raise ConfigError(f"unknown calibrator {calibrator!r}; valid: {', '.join(CALIBRATORS)}")
    qat = is_qat_model(model)
    if qat and mode not in ("int8", "float32"):
        raise ConfigError(f"a quantization-aware-trained model converts to int8 (its ranges were learned), not {mode}")
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
    from resnet_edge import calibrate
    from resnet_edge._native import release_memory

    graph = calibration_graph(converter, samples[:1])
    release_memory()  # the frozen graph and the converter's intermediates: about 450 MB for ResNet-18
    shown = progress and (lambda done, total: progress(f"calibration {done}/{total}"))
    graph = calibrate.with_ranges(graph, calibrate.measure(graph, samples, progress=shown))
    return quantize_graph(converter, graph)


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


def parity(model, tflite: bytes, data, split: str = "test", limit: int | None = None) -> dict:
    """Run the Keras model and its TFLite conversion on the same samples of ``split`` (see
    :func:`parity_arrays`)."""
    x, y, _ = model_samples(model, data, split, limit)
    return {"split": split, **parity_arrays(model, tflite, x, y)}


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


def held_out(model, data, n: int) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """``n`` test images in the model's form, their labels, whether the data fit as they are, and the
    Keras model's scores for them: what parity needs from the Keras side, the same for every mode."""
    x, y, fits = model_samples(model, data, "test", n)
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


def convert_and_check(model, data, mode: str = "float32", *, io: str = "float32", split: str = "test",
                      limit: int | None = None, calibration: int = 100) -> tuple[bytes, dict]:
    """Convert ``model`` (calibrating on ``calibration`` training samples when the mode needs it) and
    measure :func:`parity` on ``split``. Returns the ``.tflite`` bytes and the figures."""
    needs = mode in ("int8", "int16x8") and not is_qat_model(model)
    rep = representative_samples(model, data, calibration) if needs else None
    tflite = to_tflite(model, mode, representative=rep, io=io)
    return tflite, {"mode": mode, "io": io, "bytes": len(tflite), **parity(model, tflite, data, split, limit)}


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
