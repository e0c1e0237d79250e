"""Quantization-aware training with tensorflow-model-optimization's default 8-bit scheme (host side).

The whole network is annotated, so tfmot's transforms see the patterns it knows: Conv2D + BatchNorm
(+ ReLU), folded into one quantized convolution, and Add + ReLU, quantized once after the ReLU. Two
layers of ours need a word with tfmot:

* ``preprocess`` (built-in normalization, SUB then MUL): the pair has an unquantized tensor between its
  two ops, which would leave both in float. For QAT it becomes the same affine map as one frozen 1x1
  depthwise convolution (weight 1/std, bias -mean/std per channel), which tfmot quantizes like any
  convolution: the int8 model takes raw pixels and normalizes them in int8;
* ``ChannelPad`` (shortcut option A): passes quantized values through, as ZeroPadding2D does in tfmot's
  own registry (TFLite pads with the zero point).

``scheme="pqat"`` uses tfmot's prune-preserving scheme, so the zeros of a pruned model survive QAT.
"""

from __future__ import annotations

import time
from pathlib import Path

from resnet_edge._tfmot import configs, quantize_scope, tfmot
from resnet_edge.errors import ResnetEdgeError


#: Fine-tuning rate with fake quantization: 1e-3 let the digits ResNet-20 drift from 99% to 69% in
#: three epochs (inference diverged from training), 1e-4 kept it at 99%.
QAT_LR = 1e-4


def quantize(model, scheme: str = "default", calibration=None):
    """Return the QAT version of ``model`` (not compiled). Raises if it is quantized already.

    ``calibration`` (model inputs, e.g. 256 training images) sets every activation range from the float
    model's outputs before training starts (see :func:`calibrate`); without it tfmot starts from its
    defaults (-6..6, and 0..0 for the input), which its moving averages take thousands of steps to leave.
    """
    from resnet_edge._tf import keras
    from resnet_edge.arch.keras_model import CUSTOM_OBJECTS, ChannelPad
    from resnet_edge.convert import is_qat_model
    from resnet_edge.optimize.common import check_keras2

    check_keras2(model)
    if is_qat_model(model):
        raise ResnetEdgeError("this model is already quantization-aware (it has QuantizeWrapper layers); QAT it from the float model")
    mot = tfmot()
    qk = mot.quantization.keras
    passthrough, _ = configs()

    if model.inputs[0].dtype != "float32":
        raise ResnetEdgeError(
            "QAT needs a model with a float32 input (this one takes uint8); train a float32-input model and "
            "convert it with --io uint8 to get a uint8 interface"
        )

    def annotate(layer):
        if isinstance(layer, ChannelPad):
            return qk.quantize_annotate_layer(layer, passthrough())
        if isinstance(layer, keras.layers.Normalization):
            return qk.quantize_annotate_layer(normalization_as_conv(layer))
        return qk.quantize_annotate_layer(layer)

    if scheme not in ("default", "pqat"):
        raise ResnetEdgeError(f"unknown QAT scheme {scheme!r}; valid: default, pqat")
    # Work on a private copy: tfmot's wrappers replace attributes (kernel -> its fake-quantized tensor) of
    # the layers they wrap, which would break the caller's float model.
    source = keras.models.clone_model(model)
    source.set_weights(model.get_weights())
    annotated = keras.models.clone_model(source, clone_function=annotate)
    with quantize_scope(CUSTOM_OBJECTS):
        if scheme == "pqat":
            q = qk.quantize_apply(annotated, mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
        else:
            q = qk.quantize_apply(annotated)
    if calibration is not None:
        calibrate(model, q, calibration)
    return q


def calibrate(float_model, qat_model, samples) -> int:
    """Set the QAT model's ranges (min/max variables) before training: for activations, what the float
    model's layers output on ``samples`` (the input range for the QuantizeLayer, each layer's output range
    for its output quantizer, the logits' range for the classifier's pre-activation quantizer); for
    weights, their own symmetric range. Returns the number of ranges set. Activation ranges always
    include 0, as TFLite requires."""
    import numpy as np

    from resnet_edge._tf import keras

    # A fresh copy: layers of a model made by strip_pruning/clone_model also belong to other graphs, whose
    # outputs a probe model cannot reach.
    fresh = keras.models.clone_model(float_model)
    fresh.set_weights(float_model.get_weights())
    float_model = fresh
    names = [layer.name for layer in float_model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(float_model.input, [float_model.get_layer(n).output for n in names])
    outputs = dict(zip(names, probe.predict(samples, batch_size=64, verbose=0)))
    x = np.asarray(samples, dtype=np.float32)

    def rng(a):
        return min(float(np.min(a)), 0.0), max(float(np.max(a)), 0.0)

    ranges = {"quantize_layer/quantize_layer": rng(x)}
    for name, value in outputs.items():
        ranges[f"quant_{name}/output"] = ranges[f"quant_{name}/post_activation"] = rng(value)
        layer = float_model.get_layer(name)
        if isinstance(layer, keras.layers.Dense) and layer.get_config().get("activation") not in (None, "linear"):
            inputs = outputs.get(layer.input.node.layer.name) if hasattr(layer.input, "node") else None
            if inputs is None:
                inputs = keras.Model(float_model.input, layer.input).predict(samples, batch_size=64, verbose=0)
            ranges[f"quant_{name}/pre_activation"] = rng(inputs @ layer.kernel.numpy() + layer.bias.numpy())
    done = 0
    for layer in qat_model.layers:
        # The float weights a wrapper quantizes (its wrapped layer's own variables, e.g. conv1_conv/kernel:0).
        float_weights = {v.name.split(":")[0].rpartition("/")[2]: v for v in layer.weights
                         if not v.name.startswith(f"{layer.name}/")}
        for w in layer.weights:
            stem, _, kind = w.name.split(":")[0].rpartition("_")
            if kind not in ("min", "max"):
                continue
            attr = stem.rpartition("/")[2]
            if stem in ranges:
                w.assign(ranges[stem][0 if kind == "min" else 1])
            elif attr in ("kernel", "depthwise_kernel") and attr in float_weights:
                # Weight ranges (symmetric, per output channel or per tensor), as tfmot's LastValueQuantizer
                # sets them at every training step; in inference it would use its -6..6 start values.
                k = np.abs(float_weights[attr].numpy())
                a = k.reshape(-1, k.shape[-1]).max(axis=0) if w.shape.rank == 1 and w.shape[0] == k.shape[-1] else k.max()
                w.assign(np.reshape(-a if kind == "min" else a, w.shape))
            else:
                continue
            done += 1
    return done


def normalization_as_conv(layer):
    """A frozen 1x1 depthwise convolution computing what a Normalization layer computes:
    (x - mean) / std = x * (1/std) + (-mean/std), per channel."""
    import numpy as np

    from resnet_edge._tf import keras

    mean = np.asarray(layer.mean).reshape(-1).astype(np.float32)
    std = np.sqrt(np.maximum(np.asarray(layer.variance).reshape(-1), 1e-7)).astype(np.float32)
    init = keras.initializers.Constant
    return keras.layers.DepthwiseConv2D(
        1, use_bias=True, name=layer.name, trainable=False,
        depthwise_initializer=init((1.0 / std).reshape(1, 1, -1, 1).tolist()),
        bias_initializer=init((-mean / std).tolist()),
    )


def layer_report(float_model, qat_model) -> list[dict]:
    """What QAT did to every layer of the float model: quantized, folded, passed through, or left in
    float (with the reason)."""
    from resnet_edge._tf import keras

    wrapped = {layer.name.removeprefix("quant_"): layer for layer in qat_model.layers
               if type(layer).__name__.startswith("QuantizeWrapper")}
    rows = []
    for layer in float_model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            rows.append({"layer": layer.name, "status": "quantized", "why": "input quantized by QuantizeLayer"})
            continue
        w = wrapped.get(layer.name)
        config = type(w.quantize_config).__name__ if w is not None else None
        if w is None:
            status, why = "float", "not annotated by tfmot (no quantize config for this layer type)"
        elif config == "NoOpQuantizeConfig" and isinstance(layer, keras.layers.BatchNormalization):
            status, why = "folded", "BatchNorm folded into the preceding convolution (Conv+BN pattern)"
        elif config == "NoOpQuantizeConfig" and isinstance(layer, keras.layers.Add):
            status, why = "quantized", "Add+ReLU pattern: quantized once after the ReLU"
        elif config in ("NoOpQuantizeConfig", "PassThroughQuantizeConfig"):
            status, why = "pass-through", "moves quantized values as they are (no requantization needed)"
        else:
            status, why = "quantized", config
        rows.append({"layer": layer.name, "type": type(layer).__name__, "status": status, "why": why})
    return rows


def qat(
    model_path: str | Path,
    data,
    out: str | Path,
    *,
    epochs: int = 2,
    lr: float = QAT_LR,
    batch_size: int = 128,
    limit: int | None = None,
    scheme: str = "default",
    verbose: int = 2,
    trust: bool = False,
) -> dict:
    """Fine-tune ``model_path`` with fake quantization; write the QAT model to ``out`` with a manifest.

    Side effects: writes ``out`` (.h5, reloadable with :func:`resnet_edge.arch.keras_model.load_model`) and its ``.json``
    manifest; the float model is not changed. The manifest holds validation accuracy of the float
    model, of the QAT Keras model and of its full-int8 TFLite conversion (made without calibration
    data), and the per-layer report.
    """
    from resnet_edge.build import check_keras_path, save_keras, versions
    from resnet_edge.convert import convert_and_check
    from resnet_edge.evaluate import check_classes
    from resnet_edge.arch.keras_model import count_keras
    from resnet_edge.optimize.common import (accuracy, fine_tune, gzip_size, load_for_tfmot, now, outputs_logits,
                                             read_manifest)

    if epochs < 0:
        raise ResnetEdgeError(f"--epochs must be 0 or more, got {epochs}")
    check_keras_path(out, h5_only=True)
    model = load_for_tfmot(model_path, trust=trust)
    check_classes(model, data, model_path)
    t0 = time.perf_counter()
    before = accuracy(model, data, "val", limit)
    from resnet_edge.convert import representative_samples

    q = quantize(model, scheme, calibration=representative_samples(model, data, 256))
    history = fine_tune(q, data, epochs=epochs, lr=lr, batch_size=batch_size, limit=limit, verbose=verbose,
                        from_logits=outputs_logits(model))
    after = accuracy(q, data, "val", limit)
    int8_bytes, int8 = convert_and_check(q, data, "int8", io="int8", split="val", limit=limit)
    report = layer_report(model, q)
    manifest = {
        "kind": "keras-model",
        "optimization": "qat" if scheme == "default" else "pqat",
        "created": now(),
        "source": {"path": str(model_path), "manifest": read_manifest(model_path).get("file")},
        "spec": read_manifest(model_path).get("spec"),
        "data": data.info(),
        "recipe": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": "SGD momentum 0.9", "limit": limit},
        "accuracy": {"split": "val", "float": before, "qat_keras": after, "int8_tflite": int8["tflite_accuracy"]},
        "int8_tflite": int8,
        "counts": count_keras(model).to_dict(),
        "compressed_bytes": {"int8_tflite": int8["bytes"], "int8_tflite_gzip": gzip_size(int8_bytes)},
        "layers": report,
        "left_in_float": [r for r in report if r["status"] == "float"],
        "history": history,
        "seconds": round(time.perf_counter() - t0, 1),
        "versions": versions(),
        "trained": True,
    }
    return save_keras(q, out, manifest, h5_only=True)
