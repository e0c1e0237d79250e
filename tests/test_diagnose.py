"""The pieces behind the report's diagnostics: a device's temperatures (read from sysfs, hostile replies cleaned),
the per-stage arithmetic, the layer names of fused ops, and a QAT model refused for the calibration error."""

from __future__ import annotations

import pytest

from resnet_edge.harness import temperatures
from resnet_edge.runtime.replies import clean_machine


def _zone(root, i, kind, temp):
    z = root / f"thermal_zone{i}"
    z.mkdir()
    (z / "type").write_text(kind + "\n")
    (z / "temp").write_text(temp + "\n")


def test_temperatures_from_a_sysfs_tree(tmp_path):
    """A Pi exposes cpu-thermal in millidegrees; a phone many zones, some of them unreadable or absurd."""
    _zone(tmp_path, 0, "cpu-thermal", "48312")
    _zone(tmp_path, 1, "gpu-thermal", "not a number")
    _zone(tmp_path, 2, "battery", "9999999")  # 10,000 degrees: a broken sensor, left out
    _zone(tmp_path, 10, "cpu-thermal", "51000")  # the same type twice: both kept, by zone
    (tmp_path / "cooling_device0").mkdir()
    assert temperatures(str(tmp_path)) == {"cpu-thermal": 48.312, "cpu-thermal (thermal_zone10)": 51.0}
    assert temperatures(str(tmp_path), zones=1) == {"cpu-thermal": 48.312}
    assert temperatures(str(tmp_path / "absent")) == {}


def test_a_devices_temperatures_are_cleaned():
    hostile = {"cpu": "x", "isa": ["AVX2"], "temperature_c": {
        "before": {"cpu": 40.5, "evil": "'; rm -rf /", "hot": 1e9, "nan": float("nan"), "bool": True},
        "after": {"cpu": 41}, "during": {"cpu": 3}}}
    assert clean_machine(hostile)["temperature_c"] == {"before": {"cpu": 40.5}, "after": {"cpu": 41.0}}
    assert "temperature_c" not in clean_machine({"cpu": "x", "temperature_c": "hot"})


def test_per_stage_costs_are_prefix_differences():
    from resnet_edge.diagnose import per_stage

    assert per_stage({"stem": 1.0, "conv2": 3.0, "conv3": 2.9, "head": 4.0}) == {
        "stem": 1.0, "conv2": 2.0, "conv3": 0.0, "head": 1.0}  # a prefix within the noise of the one before: 0


@pytest.mark.parametrize("tensor, layer", [
    ("resnet20/conv2_block1_1_relu/Relu;resnet20/conv2_block1_1_conv/Conv2D", "conv2_block1_1_conv"),
    ("resnet20/conv2_block1_add/add;resnet20/conv2_block1_out/Relu", "conv2_block1_add"),
    ("resnet18/quant_predictions/MatMul;resnet18/quant_predictions/BiasAdd", "predictions"),
    ("Identity", "output"),
])
def test_layer_names_of_fused_ops(tensor, layer):
    from resnet_edge.diagnose import _layer_name

    assert _layer_name(tensor) == layer


def test_a_qat_model_has_no_calibration_error_to_measure():
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import resolve
    from resnet_edge.diagnose import layer_errors, stage_cuts
    from resnet_edge.errors import ConfigError
    from resnet_edge.optimize.qat import quantize

    model = quantize(build_model(resolve(8, family="cifar", classes=10)))
    assert [p for p, _ in stage_cuts(model)] == ["stem", "conv2", "conv3", "conv4"]
    with pytest.raises(ConfigError, match="learned its ranges"):
        layer_errors(model, None)
    cuts = stage_cuts(build_model(resolve(18, classes=10, input_size=64)))  # ImageNet: the stem ends in its pool
    assert cuts[0] == ("stem", "pool1_pool") and [p for p, _ in cuts[1:]] == ["conv2", "conv3", "conv4", "conv5"]
