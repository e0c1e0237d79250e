"""Build a :class:`~resnet_edge.arch.spec.ResNetSpec` as a tf_keras functional model (host side).

Layer names follow Keras Applications, so later stages and reports can address a layer:
``conv1_conv``, ``conv1_bn``, ``conv1_relu``, ``pool1_pool``, ``conv2_block1_1_conv``, ...,
``conv2_block1_0_conv`` (projection shortcut), ``conv3_block1_0_subsample`` / ``conv3_block1_0_pad``
(option A shortcut), ``conv2_block1_add``, ``conv2_block1_out``, ``avg_pool``, ``predictions``;
``preprocess`` when normalization is built in; ``conv1_pad``, ``pool1_pad``, ``conv3_block1_2_pad``: the
symmetric padding of a strided convolution or pool, as in Keras Applications and torchvision.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from resnet_edge._tf import keras, tf
from resnet_edge.arch.spec import Conv, Counts, ResNetSpec, plan
from resnet_edge.errors import ResnetEdgeError

layers = keras.layers

BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.9


@keras.utils.register_keras_serializable(package="resnet_edge")
class ChannelPad(layers.Layer):
    """Append ``pad`` zero channels (the paper's shortcut option A). Parameter-free; one PAD op in TFLite."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, inputs):
        return tf.pad(inputs, [[0, 0], [0, 0], [0, 0], [0, self.pad]])

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        shape[-1] = None if shape[-1] is None else shape[-1] + self.pad
        return tf.TensorShape(shape)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


CUSTOM_OBJECTS = {"ChannelPad": ChannelPad}


def _conv_bn(x, c: Conv, relu: bool):
    # A strided convolution pads both sides alike, as Caffe (the paper's), torchvision and Keras Applications
    # do: TensorFlow's "same" would pad only the bottom and right, and published weights would see every
    # image shifted by a pixel. The output size is the same either way.
    pad = c.kernel // 2 if c.stride > 1 and c.kernel > 1 else 0
    if pad:
        x = layers.ZeroPadding2D(pad, name=f"{c.name}_pad")(x)
    x = layers.Conv2D(
        c.filters,
        c.kernel,
        strides=c.stride,
        padding="valid" if pad else "same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{c.name}_conv",
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{c.name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{c.name}_relu")(x)
    return x


def allow_deep_graphs(layers_count: int = 20_000) -> None:
    """Keras walks a functional graph recursively (building, saving, loading, converting): a
    ResNet-1202 (about 4,000 layers) needs more than Python's default recursion limit of 1,000."""
    if sys.getrecursionlimit() < layers_count:
        sys.setrecursionlimit(layers_count)


def build_model(spec: ResNetSpec) -> "keras.Model":
    """Return the Keras model of ``spec`` (freshly initialized, He-normal convolutions)."""
    p = plan(spec)
    allow_deep_graphs()
    pre = spec.preprocess
    inputs = layers.Input(
        shape=(spec.input_size, spec.input_size, 3),
        dtype=pre.input_dtype if pre else "float32",
        name="input",
    )
    x = inputs
    if pre is not None:
        # Raw pixels (0..255) in; (x - mean) / std inside the model. Casts uint8 to float itself.
        x = layers.Normalization(mean=list(pre.mean), variance=[s * s for s in pre.std], name="preprocess")(x)
    x = _conv_bn(x, p.stem, relu=True)
    if p.stem_pool:
        # zeros pad as -inf would here: the pool follows a ReLU
        x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for block in p.blocks:
        shortcut = x
        for i, c in enumerate(block.convs):
            x = _conv_bn(x, c, relu=i < len(block.convs) - 1)
        if block.shortcut == "projection":
            shortcut = _conv_bn(shortcut, block.projection, relu=False)
        elif block.shortcut == "pad":
            if block.stride > 1:
                # Stride-2 subsampling, x[:, ::2, ::2, :], as a frozen 1x1 depthwise convolution with weight 1:
                # exact, still parameter-free in training, and taken by XNNPACK (a 1x1 max pool, a 1x1 average
                # pool or a strided slice are not: each split the graph into XNNPACK partitions).
                shortcut = layers.DepthwiseConv2D(
                    1, strides=block.stride, use_bias=False, depthwise_initializer="ones", trainable=False,
                    name=f"{block.name}_0_subsample",
                )(shortcut)
            if block.out_channels > block.in_channels:
                shortcut = ChannelPad(block.out_channels - block.in_channels, name=f"{block.name}_0_pad")(shortcut)
        if block.shortcut is not None:
            x = layers.Add(name=f"{block.name}_add")([shortcut, x])
        x = layers.Activation("relu", name=f"{block.name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(spec.classes, activation=spec.classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=spec.name.replace(".", "_"))


def load_model(path: str | Path, compile: bool = False, trust: bool = False) -> "keras.Model":
    """Load a Keras model (``.keras``, ``.h5`` or a SavedModel directory): the one loader every command
    uses. QAT models (tfmot's layers) load too.

    Before Keras sees the file, its config is checked for code that loading would run (a ``Lambda``
    layer, a ``TFOpLambda`` on a non-tensor function, a reference to a module outside Keras/tfmot/this
    toolkit: :mod:`resnet_edge.keras_files`); ``trust=True`` skips that check. Raises
    :class:`ResnetEdgeError` with one line when the file is missing, unsafe or not a Keras model.
    """
    from resnet_edge.keras_files import check_model_file, uses_tfmot

    path = Path(path)
    if not path.exists():
        raise ResnetEdgeError(f"model file not found: {path}; build one with `resnet-edge build --out {path}`")
    classes = check_model_file(path, trust=trust)
    allow_deep_graphs()
    scope = contextlib.ExitStack()
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # Keras's C++ readers take UTF-8 paths only: open the file through a link
        path = scope.enter_context(_utf8_alias(path))
    if trust or uses_tfmot(classes):  # tfmot's layers (QAT, PQAT) need its scope; importing it costs seconds
        from resnet_edge._tfmot import quantize_scope

        scope.enter_context(quantize_scope(CUSTOM_OBJECTS))
    try:
        with scope:
            return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile,
                                           **({} if trust else {"safe_mode": True}))
    except Exception as exc:  # Keras raises many types for a bad file; all mean the same to a user
        from resnet_edge.ui import shorten

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResnetEdgeError(f"cannot load {path} as a Keras model ({shorten(first, 200)}); "
                              "is it a .keras/.h5 file written by tf_keras?") from None


@contextlib.contextmanager
def _utf8_alias(path: Path):
    """A UTF-8 path (a symbolic link in a private temporary folder) to a file whose own name is not."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="resnet-edge-link-"))
    try:
        alias = folder / ("model" + "".join(c for c in path.suffix if c.isascii()))
        os.symlink(os.path.abspath(path), alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def count_keras(model: "keras.Model") -> Counts:
    """Count parameters and MACs of any built Keras model by walking its layers.

    Independent of :func:`resnet_edge.arch.spec.count` (which reads the plan): it works on models that
    were loaded, pruned, thinned or wrapped for QAT (wrappers are looked through), and the tests hold
    the two counts against each other. MACs count trainable convolutions and dense layers, as Table 1 does
    (the frozen identity subsampling of shortcut A is data movement, not a layer of the paper).
    """
    macs = convs = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # QuantizeWrapper / PruneLowMagnitude wrap the real layer
        if isinstance(inner, (layers.Conv2D, layers.Dense)) and inner.trainable:
            # A kernel element is one multiply-accumulate per output position (depthwise included).
            kernel = inner.depthwise_kernel if isinstance(inner, layers.DepthwiseConv2D) else inner.kernel
            shape = layer.output_shape
            spatial = shape[1] * shape[2] if isinstance(inner, layers.Conv2D) else 1
            macs += int(kernel.shape.num_elements()) * spatial
            convs += isinstance(inner, layers.Conv2D)
    trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    return Counts(trainable, int(model.count_params()), macs, convs)
