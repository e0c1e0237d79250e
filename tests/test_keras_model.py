"""Every network of the registry, built in Keras and checked against the plan and the paper."""

import numpy as np
import pytest

from resnet_edge._tf import keras, tf
from resnet_edge.arch import spec as S
from resnet_edge.arch.keras_model import ChannelPad, build_model, count_keras, load_model

FAST = [n for n in S.list_models() if not n.endswith("1202")]
SLOW = pytest.mark.slow


def small(name, **kw):
    """The registry model at the smallest input its family takes comfortably (keeps CPU time low)."""
    spec = S.default_spec(name, **kw)
    return spec.replace(input_size=64 if spec.family == "imagenet" else 32)


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=SLOW) for n in ("resnet1202", "plain1202")])
def test_built_model_matches_plan_counts(name, build):
    spec = S.default_spec(name)
    model = build(spec)
    assert count_keras(model) == S.count(spec)  # params (trainable and total), MACs, conv layers
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == (0 if spec.plain else sum(spec.stage_blocks))
    assert model.output_shape == (None, spec.classes)


@pytest.mark.parametrize("name", FAST)
def test_forward_and_gradients_reach_every_weight(name, build):
    spec = small(name, classes=5)
    model = build(spec)
    x = tf.random.stateless_uniform((2, spec.input_size, spec.input_size, 3), seed=(1, 2))
    y = tf.constant([1, 3])
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, probs)
    assert probs.shape == (2, 5)
    assert np.isfinite(probs.numpy()).all()
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.name for w, g in zip(model.trainable_weights, grads) if g is None or not np.any(g.numpy())]
    assert not missing, f"no gradient reaches {missing[:5]}"


@SLOW
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_imagenet_forward_at_224(name, build):
    model = build(S.default_spec(name))
    out = model(tf.random.stateless_uniform((1, 224, 224, 3), seed=(3, 4)), training=False).numpy()
    assert out.shape == (1, 1000) and np.isfinite(out).all()


def test_layer_names_follow_keras_applications(build):
    names = {layer.name for layer in build(S.default_spec("resnet50")).layers}
    for expected in ("conv1_conv", "conv1_bn", "conv1_relu", "pool1_pool", "conv2_block1_0_conv",
                     "conv2_block1_1_conv", "conv2_block1_3_bn", "conv2_block1_add", "conv2_block1_out",
                     "conv5_block3_out", "avg_pool", "predictions"):
        assert expected in names
    cifar = {layer.name for layer in build(S.default_spec("resnet20")).layers}
    assert {"conv3_block1_0_subsample", "conv3_block1_0_pad", "conv4_block3_add"} <= cifar
    assert not any(n.endswith("_0_conv") for n in cifar)


def test_option_a_shortcut_is_subsample_and_zero_pad(build):
    """conv3_block1's shortcut must be exactly x[:, ::2, ::2, :] followed by 16 zero channels."""
    model = build(small("resnet20"))
    block_in = model.get_layer("conv2_block3_out").output
    shortcut = keras.Model(model.input, [block_in, model.get_layer("conv3_block1_0_pad").output])
    x = tf.random.stateless_uniform((1, 32, 32, 3), seed=(5, 6))
    a, s = (t.numpy() for t in shortcut(x))
    assert s.shape == (1, 16, 16, 32)
    np.testing.assert_array_equal(s[..., :16], a[:, ::2, ::2, :])
    assert not s[..., 16:].any()


def test_stride_placement_v1_and_v15(build):
    v1 = build(S.resolve(50, input_size=64))
    v15 = build(S.resolve(50, input_size=64, variant="v1.5"))
    assert v1.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert v1.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert v15.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert v1.count_params() == v15.count_params()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_save_and_reload_give_identical_outputs(name, suffix, tmp_path, build):
    model = build(small(name))
    path = tmp_path / f"m{suffix}"
    model.save(path)
    again = load_model(path)
    x = tf.random.stateless_uniform((2, *model.input_shape[1:]), seed=(7, 8))
    np.testing.assert_array_equal(model(x, training=False).numpy(), again(x, training=False).numpy())
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]


def test_raw_uint8_input_normalizes_inside(build):
    pre = S.Preprocess(mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0), input_dtype="uint8")
    raw = build_model(small("resnet20", preprocess=pre))
    plain = build_model(small("resnet20"))
    plain.set_weights(raw.get_weights())
    assert raw.input.dtype == tf.uint8
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    normalized = (pixels.astype(np.float32) - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)
    np.testing.assert_allclose(raw(pixels).numpy(), plain(normalized).numpy(), rtol=1e-4, atol=1e-6)


def test_logits_head_and_classes():
    spec = S.resolve(20, classes=3, classifier_activation=None)
    model = build_model(spec)
    out = model(tf.ones((1, 32, 32, 3))).numpy()
    assert out.shape == (1, 3) and not np.isclose(out.sum(), 1.0)


def test_channel_pad_serializes():
    layer = ChannelPad(5, name="p")
    assert ChannelPad.from_config(layer.get_config()).pad == 5


def test_load_model_errors(tmp_path):
    from resnet_edge.errors import ResnetEdgeError

    with pytest.raises(ResnetEdgeError, match="not found"):
        load_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ResnetEdgeError, match="cannot load"):
        load_model(bad)
