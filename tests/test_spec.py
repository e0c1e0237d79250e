"""The family as data, checked against the paper without building anything (pure Python, fast)."""

import pytest

from resnet_edge.arch import spec as S
from resnet_edge.errors import ConfigError, UnknownModelError

# Trainable parameters for 1000 classes at 224x224, as given in the issue (torchvision's exact counts).
IMAGENET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# Table 1 multiply-adds (10^9), and Table 6 parameters of the CIFAR ResNets (millions), from the paper.
TABLE1_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
TABLE6_MPARAMS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}


@pytest.mark.parametrize("depth", sorted(IMAGENET_PARAMS))
def test_imagenet_trainable_params_exact(depth):
    assert S.count(S.resolve(depth)).trainable_params == IMAGENET_PARAMS[depth]


@pytest.mark.parametrize("depth", sorted(TABLE1_GMACS))
def test_imagenet_macs_within_3_percent_of_table1(depth):
    macs = S.count(S.resolve(depth)).macs
    assert abs(macs / 1e9 - TABLE1_GMACS[depth]) / TABLE1_GMACS[depth] < 0.03


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_v15_keeps_params_moves_stride_to_3x3(depth):
    v1, v15 = S.resolve(depth), S.resolve(depth, variant="v1.5")
    assert S.count(v15).trainable_params == S.count(v1).trainable_params
    assert S.count(v15).macs > S.count(v1).macs  # the 3x3 runs at the higher resolution
    b1 = [b for b in S.plan(v1).blocks if b.name == "conv3_block1"][0]
    b15 = [b for b in S.plan(v15).blocks if b.name == "conv3_block1"][0]
    assert [c.stride for c in b1.convs] == [2, 1, 1]
    assert [c.stride for c in b15.convs] == [1, 2, 1]


@pytest.mark.parametrize("depth", sorted(TABLE6_MPARAMS))
def test_cifar_params_match_table6(depth):
    params = S.count(S.resolve(depth, family="cifar")).trainable_params / 1e6
    digits = 1 if TABLE6_MPARAMS[depth] >= 1 else 2
    assert round(params, digits) == TABLE6_MPARAMS[depth]


@pytest.mark.parametrize("name", S.list_models())
def test_depth_counts_the_weighted_layers(name):
    """Depth = convolutions on the main path + the classifier (projections are not counted)."""
    spec = S.default_spec(name)
    p = S.plan(spec)
    main_path = 1 + sum(len(b.convs) for b in p.blocks)
    assert main_path + 1 == spec.depth
    projections = sum(b.projection is not None for b in p.blocks)
    assert S.count(spec).conv_layers == main_path + projections


@pytest.mark.parametrize("depth", [18, 50, 20, 110])
def test_plain_has_same_convs_and_no_shortcuts(depth):
    res, plain = S.resolve(depth), S.resolve(depth, plain=True)
    rp, pp = S.plan(res), S.plan(plain)
    assert [c for b in rp.blocks for c in b.convs] == [c for b in pp.blocks for c in b.convs]
    assert all(b.shortcut is None and b.projection is None for b in pp.blocks)
    assert all(b.shortcut is not None for b in rp.blocks)


def test_shortcut_options():
    a, b, c = (S.plan(S.resolve(20, shortcut=x)) for x in "ABC")
    assert [blk.shortcut for blk in a.blocks].count("pad") == 2  # conv3_block1 and conv4_block1
    assert [blk.shortcut for blk in b.blocks].count("projection") == 2
    assert all(blk.shortcut == "projection" for blk in c.blocks)
    counts = [S.count(S.resolve(20, shortcut=x)).trainable_params for x in "ABC"]
    assert counts[0] < counts[1] < counts[2]  # A is parameter-free


def test_cifar_stages_sizes():
    spec = S.resolve(56)
    assert spec.family == "cifar" and spec.stage_blocks == (9, 9, 9) and spec.stage_widths == (16, 32, 64)
    assert S.resolve(50, family="cifar").stage_blocks == (8, 8, 8)  # 50 is also 6n+2


def test_any_classes_and_input_size():
    spec = S.resolve(18, classes=7, input_size=96)
    c = S.count(spec)
    assert c.trainable_params == IMAGENET_PARAMS[18] - 512 * 1000 - 1000 + 512 * 7 + 7


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"depth": 19}, "depth 19 is not a ResNet of the paper"),
        ({"depth": 21, "family": "cifar"}, "6n+2"),
        ({"depth": 20, "family": "imagenet"}, "--family cifar"),
        ({"depth": 18, "input_size": 32}, "CIFAR family"),
        ({"depth": 18, "input_size": 16, "force": True}, "too small"),
        ({"depth": 20, "input_size": 4}, "too small for the CIFAR family"),
        ({"depth": 18, "classes": 1}, "at least 2"),
        ({"depth": 18, "shortcut": "D"}, "unknown shortcut"),
        ({"depth": 18, "variant": "v2"}, "unknown variant"),
        ({"model": "resnet18", "depth": 34}, "has depth 18"),
        ({}, "give --depth"),
    ],
)
def test_invalid_configs_say_what_is_valid(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        S.resolve(**kwargs)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_force_admits_small_imagenet_input():
    spec = S.resolve(18, input_size=32, force=True)
    assert spec.input_size == 32


def test_registry_lookup_and_unknown_name():
    assert S.get("ResNet-50").depth == 50
    assert S.get("plain_20").plain
    with pytest.raises(UnknownModelError) as err:
        S.get("resnet19")
    assert "resnet18" in str(err.value) and "plain1202" in str(err.value)
    names = S.list_models()
    assert len(names) == len(set(names)) == 2 * (5 + 6)
    assert S.list_models(family="cifar", plain=True)[0] == "plain20"


def test_spec_round_trips_through_dict():
    spec = S.resolve(50, variant="v1.5", classes=5, input_size=128, preprocess=S.Preprocess(input_dtype="uint8"))
    assert S.spec_from_dict(spec.to_dict()) == spec
    thin = spec.replace(inner_widths=tuple((8, 8) for _ in range(16)))
    assert S.spec_from_dict(thin.to_dict()) == thin


def test_inner_widths_must_cover_every_block():
    with pytest.raises(ConfigError, match="9 blocks"):
        S.plan(S.resolve(20).replace(inner_widths=((8,),)))


def test_inner_widths_thin_the_blocks():
    spec = S.resolve(20)
    thin = spec.replace(inner_widths=tuple((w // 2,) for w in [16] * 3 + [32] * 3 + [64] * 3))
    assert S.count(thin).macs < 0.6 * S.count(spec).macs
    assert [b.out_channels for b in S.plan(thin).blocks] == [b.out_channels for b in S.plan(spec).blocks]


def test_preprocess_validation():
    with pytest.raises(ConfigError):
        S.Preprocess(std=(1.0, 0.0, 1.0))
    with pytest.raises(ConfigError):
        S.Preprocess(input_dtype="int16")
