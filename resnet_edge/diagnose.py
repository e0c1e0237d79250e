"""Where a converted model loses accuracy and where it spends its time (host side: TensorFlow).

* :func:`layer_errors`: the int8 quantization error of every layer, each measured on its own. The model is
  calibrated exactly as the convert stage calibrates it (the same training images, resnet-edge's ranges), then
  quantized with TensorFlow's numeric-verify ops, and :class:`tf.lite.experimental.QuantizationDebugger` runs
  it: each quantized op's output is compared with the float op run on the *same* (dequantized) input, so the
  error is that layer's own, not what the layers before it passed on. ``rmse/scale`` is the error in
  quantization steps: uniform rounding alone gives about 0.29 (1/sqrt(12)); a layer far above it is the one to
  keep in float (TensorFlow's selective quantization: ``denylisted_nodes``).
* :func:`stage_models`: the model cut after its stem and after each residual stage, each prefix converted in
  the mode asked (int8 calibrated as the convert stage does), so timing the prefixes on a device says what each
  stage costs there: stage k costs the latency of prefix k minus that of prefix k-1, and the head the full
  model minus the last prefix. A prefix's output is its last feature map (for int8, dequantized to float: one
  extra op on a small tensor).
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings


#: The Keras layer an op's tensor name most likely comes from, for names of fused ops: the part naming one of
#: these layers wins (a conv fused with its BN and ReLU is named by the conv).
_MAIN = ("_conv", "_add", "predictions", "avg_pool", "_pool", "preprocess", "_dense", "_out")


def _layer_name(tensor_name: str) -> str:
    """``resnet20/conv2_block1_1_relu/Relu;resnet20/conv2_block1_1_conv/Conv2D`` -> ``conv2_block1_1_conv``."""
    names = []
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        name = pieces[1] if len(pieces) > 2 else pieces[0]
        name = re.sub(r"^quant_", "", name)
        if name not in names:
            names.append(name)
    name = next((n for n in names if n.endswith(_MAIN)), names[0] if names else tensor_name)
    return "output" if name in ("Identity", "StatefulPartitionedCall") else name


def layer_errors(model, data, *, calibration: int = 100, samples: int = 32, split: str = "val") -> list[dict]:
    """The int8 error of each layer of the Keras ``model`` (not quantization-aware trained), largest first:
    ``layer``, ``op``, ``tensor``, ``rmse`` and ``max_abs`` (in the tensor's units), ``scale``, ``rmse_scale``
    (rmse in quantization steps) and ``max_abs_scale``. Calibrated on the first ``calibration`` training images
    of ``data`` (as :func:`resnet_edge.convert.converted` does), measured on the first ``samples`` images of
    ``split``."""
    from tensorflow.lite.python import convert as tf_convert

    from resnet_edge._native import quiet_native_stderr, release_memory
    from resnet_edge._tf import tf
    from resnet_edge.convert import is_qat_model, make_converter, measured_calibration, model_samples
    from resnet_edge.errors import ConfigError

    if is_qat_model(model):
        raise ConfigError("a quantization-aware-trained model learned its ranges: its per-layer error is not a "
                          "calibration's, so it is not measured here")
    rep = model_samples(model, data, "train", calibration)[0]
    debug = model_samples(model, data, split, samples)[0]
    converter = make_converter(model, "int8", rep, "float32", False)
    with quiet_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the debugger's tf.lite.Interpreter deprecation, float-input statistics
        graph = measured_calibration(converter, rep)
        instrumented = tf_convert.mlir_quantize(graph, converter._experimental_disable_per_channel,
                                                enable_numeric_verify=True)
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=instrumented, debug_dataset=lambda: ([x[None]] for x in debug))
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    del debugger, converter
    release_memory()
    out = []
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        scale, mse, max_abs = float(row["scale"]), float(row["mean_squared_error"]), float(row["max_abs_error"])
        rmse = math.sqrt(max(mse, 0.0))
        out.append({"layer": _layer_name(row["tensor_name"]), "op": row["op_name"], "tensor": row["tensor_name"],
                    "elements": int(float(row["num_elements"])), "rmse": rmse, "max_abs": max_abs, "scale": scale,
                    "rmse_scale": rmse / scale if scale else None, "max_abs_scale": max_abs / scale if scale else None})
    out.sort(key=lambda r: -(r["rmse_scale"] or 0))
    return out


def stage_cuts(model) -> list[tuple[str, str]]:
    """``[(part, last layer)]`` of the stem and each residual stage, in order (``stem``, ``conv2`` ...), read
    from the family's layer names (``conv1_*``/``pool1_*`` for the stem, ``convS_*`` for stage S; a QAT model's
    ``quant_`` prefix ignored). The head (pooling and classifier) is what follows the last cut."""
    last: dict[str, str] = {}
    order: list[str] = []
    for layer in model.layers:
        name = re.sub(r"^quant_", "", layer.name)
        m = re.match(r"conv(\d+)_block\d+_", name)
        part = f"conv{m.group(1)}" if m else ("stem" if re.match(r"(conv1|pool1)_", name) else None)
        if part is None:
            continue
        if part not in last:
            order.append(part)
        last[part] = layer.name
    return [(p, last[p]) for p in order]


def stage_models(model, mode: str, data, *, calibration: int = 100) -> list[tuple[str, bytes]]:
    """The prefixes of ``model`` up to the end of each part of :func:`stage_cuts`, and the whole model last
    (``"head"``), each converted to ``mode`` (int8 calibrated on the first ``calibration`` training images)."""
    from resnet_edge._tf import keras
    from resnet_edge.convert import is_qat_model, model_samples, to_tflite

    qat = is_qat_model(model)
    rep = model_samples(model, data, "train", calibration)[0] if mode in ("int8", "int16x8") and not qat else None
    out = []
    for part, layer in stage_cuts(model):
        prefix = keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_to_{part}")
        out.append((part, to_tflite(prefix, mode, representative=rep)))
    out.append(("head", to_tflite(model, mode, representative=rep)))
    return out


def per_stage(latency: dict[str, float]) -> dict[str, float]:
    """``{part: ms}`` from the latency of each prefix ``{part: ms}`` (in order, the whole model as ``head``):
    each part's cost is its prefix's latency minus the one before (never below 0: two prefixes within the
    noise of each other)."""
    out, before = {}, 0.0
    for part, ms in latency.items():
        out[part] = max(0.0, ms - before)
        before = max(before, ms)
    return out
