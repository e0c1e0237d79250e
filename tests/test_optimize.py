"""QAT, magnitude / M:N pruning, PQAT, clustering and channel pruning of small CIFAR ResNets with a few
real training steps on digits; results checked in the Keras models and in the converted TFLite weights."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_edge.cli import cli
from resnet_edge.errors import ConfigError, ResnetEdgeError

LIMIT = 256  # examples per split: a few real SGD steps, not a benchmark


@pytest.fixture(scope="module")
def trained(trained_resnet20):
    return trained_resnet20


def test_qat_quantizes_everything_and_converts_without_calibration(qat_run, tmp_path):
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import is_qat_model, to_tflite
    from resnet_edge.tflite.model import read, op_name, type_name

    out, m = qat_run
    assert m["left_in_float"] == []
    statuses = {r["layer"]: r["status"] for r in m["layers"]}
    assert statuses["conv1_bn"] == "folded" and statuses["conv2_block1_1_conv"] == "quantized"
    assert statuses["conv3_block1_0_pad"] == "pass-through"
    a = m["accuracy"]
    assert a["int8_tflite"] >= a["float"] - 0.05  # a few steps of QAT keep the float accuracy
    assert m["int8_tflite"]["top1_agreement"] >= 0.95
    # Reloads in the quantize scope, converts to int8 without representative data, all ops integer.
    q = load_model(out)  # the one loader opens QAT models too
    assert is_qat_model(q)
    again = CliRunner().invoke(cli, ["qat", str(out), "--limit", "64", "--out", str(tmp_path / "qq.h5")])
    assert again.exit_code != 0 and "already quantization-aware" in again.output
    evaluated = CliRunner().invoke(cli, ["evaluate", str(out), "--limit", "64"])  # every command opens what qat wrote
    assert evaluated.exit_code == 0 and "top-1" in evaluated.output, evaluated.output
    assert m["counts"]["trainable_params"] > 0 and m["compressed_bytes"]["int8_tflite_gzip"] < m["compressed_bytes"]["int8_tflite"]
    tfl = to_tflite(q, "int8", io="int8")
    model, _ = read(tfl)
    g = model.subgraphs[0]
    ops = [op_name(model, op.opcodeIndex) for op in g.operators]
    assert "QUANTIZE" not in ops[1:] and "DEQUANTIZE" not in ops
    assert type_name(g.tensors[g.inputs[0]].type) == "int8"
    conv_outputs = [type_name(g.tensors[op.outputs[0]].type) for op in g.operators if op_name(model, op.opcodeIndex) == "CONV_2D"]
    assert set(conv_outputs) == {"int8"}


def test_qat_output_must_be_h5(trained, tmp_path):
    r = CliRunner().invoke(cli, ["qat", str(trained), "--out", str(tmp_path / "q.keras")])
    assert r.exit_code != 0 and "q.h5" in r.output


def test_qat_refuses_quantized_model(trained, tmp_path):
    from resnet_edge.optimize.qat import quantize
    from resnet_edge.arch.keras_model import load_model

    q = quantize(load_model(trained))
    with pytest.raises(ResnetEdgeError, match="already quantization-aware"):
        quantize(q)


def test_keras3_model_is_refused(tmp_path):
    """A .keras archive written by Keras 3 says so in its metadata; tfmot needs Keras 2."""
    import zipfile

    from resnet_edge.optimize.common import load_for_tfmot

    path = tmp_path / "k3.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", "{}")
    with pytest.raises(ResnetEdgeError, match="tf_keras"):
        load_for_tfmot(path)


def test_keras3_in_memory_model_is_refused():
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import keras\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "from resnet_edge.optimize.qat import quantize\n"
        "from resnet_edge.errors import ResnetEdgeError\n"
        "try:\n    quantize(m)\nexcept ResnetEdgeError as e:\n    print('refused:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "refused:" in proc.stdout and "tf_keras" in proc.stdout, proc.stderr[-2000:]


def test_magnitude_pruning_sparsity_in_keras_and_tflite(pruned_run):
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import to_tflite
    from resnet_edge.optimize.prune import kernel_sparsity
    from resnet_edge.tflite.model import weight_sparsity

    out, m = pruned_run
    model = load_model(out)
    rows = kernel_sparsity(model)
    assert rows[0]["layer"] == "conv1_conv" and rows[0]["sparsity"] < 0.1  # skipped: stays dense
    assert all(abs(r["sparsity"] - 0.5) < 0.02 for r in rows[1:])
    assert m["gzip_bytes"]["float32_tflite_after"] < 0.8 * m["gzip_bytes"]["float32_tflite_before"]
    assert m["counts"]["nonzero_params_after"] < 0.6 * m["counts"]["after"]["total_params"]
    tfl = weight_sparsity(to_tflite(model, "float32"))
    assert tfl["sparsity"] > 0.45


def test_two_four_structure(trained, digits, tmp_path):
    from resnet_edge.optimize.prune import prune

    m = prune(trained, digits, tmp_path / "24.keras", structure="2:4", skip=("first", "last"), epochs=1, limit=LIMIT,
              verbose=0)
    assert all(r["m_by_n_ok"] for r in m["layers"])
    assert m["settings"]["target_sparsity"] == 0.5 and m["sparsity"] >= 0.49


def test_pqat_keeps_zeros_in_int8_weights(trained, digits, tmp_path):
    from resnet_edge.optimize.prune import prune

    m = prune(trained, digits, tmp_path / "pq.h5", sparsity=0.5, schedule="constant", skip=("first",), epochs=1,
              limit=LIMIT, pqat=True, verbose=0)
    w = m["int8_tflite"]["weight_sparsity"]
    assert w["dtypes"] == ["int8"]
    assert w["sparsity"] >= 0.45  # the skipped first conv is dense, the rest keeps ~50% zeros


def test_clustering_leaves_few_values(trained, digits, tmp_path):
    from resnet_edge.optimize.prune import prune

    m = prune(trained, digits, tmp_path / "c.keras", clusters=8, epochs=1, limit=LIMIT, verbose=0)
    assert all(r["unique_values"] <= 8 for r in m["layers"])


def test_channel_pruning_at_1_is_exact(trained, build):
    from resnet_edge._tf import tf
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.arch.spec import spec_from_dict
    from resnet_edge.optimize.channels import thin

    spec = spec_from_dict(json.loads(trained.with_suffix(".json").read_text())["spec"])
    model = load_model(trained)
    same, same_spec = thin(model, spec, 1.0)
    x = tf.random.stateless_uniform((4, 32, 32, 3), seed=(1, 1), maxval=255)
    np.testing.assert_array_equal(model(x, training=False).numpy(), same(x, training=False).numpy())
    assert same_spec.inner_widths == tuple((16,) * 1 for _ in range(3)) + tuple((32,) for _ in range(3)) + tuple((64,) for _ in range(3))


def test_channel_pruning_thins_consistently(trained, digits, tmp_path):
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.arch.spec import count, spec_from_dict
    from resnet_edge.optimize.channels import channel_prune

    out = tmp_path / "thin.keras"
    m = channel_prune(trained, digits, out, keep=0.5, epochs=1, limit=LIMIT, verbose=0)
    model = load_model(out)
    spec = spec_from_dict(json.loads(out.with_suffix(".json").read_text())["spec"])
    assert spec.inner_widths[0] == (8,) and spec.inner_widths[-1] == (32,)
    assert model.get_layer("conv2_block1_1_conv").kernel.shape[-1] == 8
    assert model.get_layer("conv2_block1_2_conv").kernel.shape[2] == 8
    assert model.get_layer("conv2_block1_2_conv").kernel.shape[-1] == 16  # block output untouched
    assert count(spec).macs == m["counts"]["after"]["macs"] < 0.6 * m["counts"]["before"]["macs"]


def test_bn_criterion_keeps_largest_gammas(trained):
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.arch.spec import spec_from_dict
    from resnet_edge.optimize.channels import select_channels

    spec = spec_from_dict(json.loads(trained.with_suffix(".json").read_text())["spec"])
    model = load_model(trained)
    kept = select_channels(model, spec, 0.25, "bn")["conv3_block2_1"]
    gamma = np.abs(model.get_layer("conv3_block2_1_bn").gamma.numpy())
    assert len(kept) == 8 and gamma[kept].min() >= np.sort(gamma)[-8]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sparsity", "1.5"], "0<x<1"),
        (["--sparsity", "0"], "0<x<1"),
        (["--structure", "4:2"], "0 < M < N"),
        (["--structure", "two:four"], "M:N"),
        (["--channels", "1.5"], "(0, 1]"),
        (["--channels", "0"], "(0, 1]"),
        (["--skip", "conv9_block1_1_conv"], "not a layer"),
        (["--clusters", "1"], "2<=x<=65536"),
    ],
)
def test_prune_errors(trained, tmp_path, args, fragment):
    r = CliRunner().invoke(cli, ["prune", str(trained), "--limit", "64", "--out", str(tmp_path / "x.keras"), *args])
    assert r.exit_code != 0 and fragment in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.keras").exists()


def test_parse_structure():
    from resnet_edge.optimize.prune import check_m_by_n, parse_structure

    assert parse_structure("2:4") == (2, 4)
    with pytest.raises(ConfigError):
        parse_structure("4:4")
    k = np.zeros((3, 3, 8, 2))
    k[0, 0, :2, 0] = 1
    assert check_m_by_n(k, 2, 4)
    k[0, 0, 2, 0] = 1
    assert not check_m_by_n(k, 2, 4)


def test_thinned_model_recovers_by_batchnorm_recalibration(trained, digits, tmp_path):
    """Issue 10: thinning left BatchNorm statistics describing the removed filters' world (chance accuracy
    after `--channels 0.5 --epochs 1`); re-estimating them recovers most of it with no training at all."""
    from resnet_edge.optimize.channels import channel_prune

    m = channel_prune(trained, digits, tmp_path / "t.keras", keep=0.5, epochs=0, verbose=0)
    a = m["accuracy"]
    assert a["batchnorm_recalibrated"] >= a["thinned_before_fine_tune"] + 0.2, a  # +20 points before any training


def test_channel_pruning_max_drop_fails_and_keeps_the_model(trained, digits, tmp_path):
    r = CliRunner().invoke(cli, ["prune", str(trained), "--channels", "0.25", "--epochs", "0", "--max-drop", "0",
                                 "--out", str(tmp_path / "t.keras")])
    assert r.exit_code == 1 and "--max-drop 0" in r.output and "Traceback" not in r.output, r.output
    manifest = json.loads((tmp_path / "t.json").read_text())
    assert manifest["status"] == "dropped" and manifest["accuracy"]["drop_points"] > 0 and (tmp_path / "t.keras").exists()
    r = CliRunner().invoke(cli, ["prune", str(trained), "--max-drop", "1", "--out", str(tmp_path / "u.keras")])
    assert r.exit_code == 2 and "applies to --channels" in r.output


def test_channel_pruning_takes_a_keep_ratio_per_stage():
    """What the search varies: each stage thinned by its own ratio (stage 2 to a quarter, stage 3 to half, stage 4
    whole); a ratio per stage of the wrong length is one line."""
    import numpy as np

    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import plan, resolve
    from resnet_edge.errors import ConfigError
    from resnet_edge.optimize.channels import thin

    spec = resolve(20, family="cifar", classes=10)
    model = build_model(spec)
    slim, slim_spec = thin(model, spec, (0.25, 0.5, 1.0))
    widths = {b.name[:5]: {w for w in widths} for b, widths in zip(plan(spec).blocks, slim_spec.inner_widths)}
    assert widths == {"conv2": {4}, "conv3": {16}, "conv4": {64}}
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32) * 50 + 120
    whole, _ = thin(model, spec, (1.0, 1.0, 1.0))
    assert np.allclose(whole(x, training=False), model(x, training=False), atol=1e-5)
    assert slim.count_params() < model.count_params()
    with pytest.raises(ConfigError, match="needs 3 ratios"):
        thin(model, spec, (0.5, 0.5))


def _zero_dropped(model, spec, keep, stream):
    """``model`` with every channel thinning drops silenced at its source: the BatchNorm that writes it gets scale and
    shift 0 (the ReLU after it, or the Add it feeds, then carries an exact 0). What the thin model computes with the
    channels gone, this computes with them kept as zeros."""
    from resnet_edge.arch.spec import plan
    from resnet_edge.optimize.channels import select_channels, select_stream

    p = plan(spec)
    inner, streams = select_channels(model, spec, keep), select_stream(model, spec, stream)

    def zero(name, kept, n):
        layer = model.get_layer(f"{name}_bn")
        g, b, m, v = layer.get_weights()
        drop = np.setdiff1d(np.arange(n), kept)
        g[drop] = b[drop] = 0
        layer.set_weights([g, b, m, v])

    for block in p.blocks:
        for c in block.convs[:-1]:
            zero(c.name, inner[c.name], c.filters)
        kept = streams[int(block.name[4]) - 2]
        for c in [block.convs[-1]] + ([block.projection] if block.projection is not None else []):
            zero(c.name, kept, block.out_channels)
    if p.blocks[0].shortcut in ("identity", None):  # the stem writes the first stage's stream
        zero(p.stem.name, streams[0], p.stem.filters)
    return streams


@pytest.mark.parametrize("name, options, keep, stream, widths", [
    ("resnet20", {}, 0.5, 0.5, (8, 16, 32)),  # shortcut A: each stage keeps what it pads from the one before
    ("resnet20", {}, 0.5, (0.25, 1.0, 0.5), (4, 32, 32)),  # and may keep channels whose shortcut the thinning zeroed
    ("resnet20", {"shortcut": "B"}, 1.0, (1.0, 0.5, 0.25), (16, 16, 16)),  # projections
    ("plain20", {}, 0.5, (0.25, 0.5, 1.0), (4, 16, 64)),
    ("resnet18", {"input_size": 64}, 0.5, 0.5, (32, 64, 128, 256)),  # the stem follows the first stage
    ("resnet50", {"input_size": 64}, 0.75, (0.5, 0.25, 0.5, 0.25), (128, 128, 512, 512)),  # bottleneck: it does not
])
def test_thinning_the_residual_stream_is_dropping_those_channels(name, options, keep, stream, widths):
    """The stream thinned (the same channels out of every block of a stage, its projection, the stem where it writes
    the stage, and out of every input that reads them, the classifier too) computes what the whole network computes
    with those channels silenced: thinning moves weights, nothing else. Random BatchNorm statistics, so nothing is
    zero by chance; the independent counts of the plan and of the Keras model agree."""
    from resnet_edge.arch.keras_model import build_model, count_keras
    from resnet_edge.arch.spec import count, resolve
    from resnet_edge.optimize.channels import thin

    spec = resolve(model=name, classes=10, **({"input_size": 32} | options))
    model = build_model(spec)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    slim, slim_spec = thin(model, spec, keep, "l1", stream)
    assert slim_spec.stream_widths == widths
    streams = _zero_dropped(model, spec, keep, stream)
    if spec.shortcut == "A" and not spec.plain:  # a stage starts with what its zero padding carries from the one before
        assert all(list(after[:len(before)]) == list(before) for before, after in zip(streams, streams[1:]))
    x = rng.normal(size=(3, spec.input_size, spec.input_size, 3)).astype(np.float32)
    np.testing.assert_allclose(slim(x, training=False).numpy(), model(x, training=False).numpy(), atol=2e-6)
    assert count(slim_spec).trainable_params == count_keras(slim).trainable_params < count(spec).trainable_params
    assert count(slim_spec).macs == count_keras(slim).macs


def test_a_stream_shortcut_a_would_narrow_is_one_line(tmp_path):
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import plan, resolve
    from resnet_edge.optimize.channels import thin

    spec = resolve(20, family="cifar", classes=10)
    with pytest.raises(ConfigError, match="stage 2 would keep 8 channels, fewer than the 16"):
        thin(build_model(spec), spec, 1.0, "l1", (1.0, 0.25, 1.0))
    with pytest.raises(ConfigError, match="shortcut A .* cannot"):
        plan(spec.replace(stream_widths=(16, 8, 64)))
    with pytest.raises(ConfigError, match="stream per stage needs 3 ratios"):
        thin(build_model(spec), spec, 1.0, "l1", (0.5, 0.5))


def test_prune_stream_on_the_command_line(trained, tmp_path):
    """`prune --stream 0.5` alone (the inner channels kept): the model and its manifest say what was kept; the weights
    carried over hold what the network learned (chance is 10%: re-estimating BatchNorm alone gives about 39% here,
    two fine-tuning steps about 43%; a stream read back in the wrong order would stay near chance)."""
    out = tmp_path / "s.keras"
    r = CliRunner().invoke(cli, ["prune", str(trained), "--stream", "0.5", "--epochs", "1", "--limit", str(LIMIT),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "50% of the residual stream (8/16/32 channels)" in r.output
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["stream_widths"] == [8, 16, 32] and m["spec"]["stream_widths"] == [8, 16, 32]
    assert 0.45 < m["counts"]["mac_ratio"] < 0.55  # each convolution has one side in the stream: half of it, half
    assert m["accuracy"]["batchnorm_recalibrated"] > 0.25 and m["accuracy"]["after"] > 0.25, m["accuracy"]
