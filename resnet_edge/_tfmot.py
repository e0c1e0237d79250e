"""tensorflow-model-optimization, imported lazily, and what loading or building a QAT model needs of it.

This sits below the family's builder on purpose: :func:`resnet_edge.arch.keras_model.load_model` enters
:func:`quantize_scope` for a file with tfmot's layers, and :mod:`resnet_edge.optimize.qat` annotates with
:func:`configs`; neither needs the other. Nothing here imports TensorFlow until it is called.
"""

from __future__ import annotations

_CONFIGS = None


def tfmot():
    """The ``tensorflow_model_optimization`` module (TF_USE_LEGACY_KERAS set first, its import chatter quieted)."""
    from resnet_edge._native import quiet_native_stderr
    from resnet_edge._tf import tf  # noqa: F401  (TF_USE_LEGACY_KERAS must be set first)

    with quiet_native_stderr():
        import tensorflow_model_optimization as mot
    return mot


def _define_configs():
    """Our two QuantizeConfigs, defined lazily (tfmot imports TensorFlow)."""
    qk = tfmot().quantization.keras

    class PassThroughQuantizeConfig(qk.QuantizeConfig):
        """No quantizers: the layer moves already-quantized values (padding with zeros)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class OutputQuantizeConfig(PassThroughQuantizeConfig):
        """Quantize the output only (the built-in normalization: float math, an int8 result)."""

        def get_output_quantizers(self, layer):
            return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    return PassThroughQuantizeConfig, OutputQuantizeConfig


def configs():
    """``(PassThroughQuantizeConfig, OutputQuantizeConfig)``, defined once per process."""
    global _CONFIGS
    if _CONFIGS is None:
        _CONFIGS = _define_configs()
    return _CONFIGS


def quantize_scope(custom_objects: dict):
    """The scope that loading or applying QAT needs: tfmot's own objects, our two configs and
    ``custom_objects`` (the family's layers, which the caller passes: this module knows no model)."""
    passthrough, output = configs()
    return tfmot().quantization.keras.quantize_scope(
        {"PassThroughQuantizeConfig": passthrough, "OutputQuantizeConfig": output, **custom_objects}
    )
