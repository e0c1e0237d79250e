"""The fast int8 path of ``convert``: activation ranges measured on all cores (resnet_edge.calibrate), put
through TensorFlow's own quantizer calls.

Two independent facts make it trustworthy: (1) given TensorFlow's ranges, the route gives TensorFlow's
model, tensor for tensor and buffer for buffer; (2) the ranges it measures are each tensor's minimum and
maximum as another engine (TFLite's built-in kernels, every tensor preserved, one image at a time) sees them.
"""

import numpy as np
import pytest

from resnet_edge.errors import ConfigError


@pytest.fixture(scope="module")
def setup(trained_resnet20, digits):
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import model_samples

    model = load_model(trained_resnet20)
    rep, _, _ = model_samples(model, digits, "train", 48)
    return model, rep


def _same_model(a: bytes, b: bytes) -> None:
    """Every tensor (name, type, shape, quantization), operator and non-metadata buffer equal."""
    from resnet_edge.tflite.model import read

    ma, _ = read(a)
    mb, _ = read(b)
    ga, gb = ma.subgraphs[0], mb.subgraphs[0]
    assert len(ga.tensors) == len(gb.tensors) and len(ga.operators) == len(gb.operators)
    for ta, tb in zip(ga.tensors, gb.tensors):
        assert ta.name == tb.name and ta.type == tb.type and list(ta.shape) == list(tb.shape)
        qa, qb = ta.quantization, tb.quantization
        assert (qa is None or qa.scale is None) == (qb is None or qb.scale is None), ta.name
        if qa is not None and qa.scale is not None:
            assert np.array_equal(qa.scale, qb.scale) and np.array_equal(qa.zeroPoint, qb.zeroPoint), ta.name
    for oa, ob in zip(ga.operators, gb.operators):
        assert oa.opcodeIndex == ob.opcodeIndex and list(oa.inputs) == list(ob.inputs)
    meta = {m.buffer for m in ma.metadata or []} | {m.buffer for m in mb.metadata or []}
    for i, (xa, xb) in enumerate(zip(ma.buffers, mb.buffers)):
        if i not in meta:
            assert np.array_equal(xa.data, xb.data) if xa.data is not None else xb.data is None, i


@pytest.mark.parametrize("io", ["float32", "uint8"])
def test_tensorflows_ranges_give_tensorflows_model(setup, io):
    """The quantizer route is the converter's own: only the ranges differ."""
    from resnet_edge.convert import calibration_graph, make_converter, quantize_graph

    model, rep = setup
    reference = bytes(make_converter(model, "int8", rep, io, False).convert())  # TensorFlow, end to end
    converter = make_converter(model, "int8", rep, io, False)
    ours = quantize_graph(converter, calibration_graph(converter, rep))
    _same_model(ours, reference)


def test_measured_ranges_are_each_tensors_own(setup):
    """XNNPACK on all cores, in batches, against TFLite's built-in kernels with every tensor preserved."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from resnet_edge import calibrate
    from resnet_edge.convert import calibration_graph, make_converter

    model, rep = setup
    graph = calibration_graph(make_converter(model, "int8", rep, "float32", False), rep[:1])
    measured = calibrate.measure(graph, rep, threads=2)
    it = Interpreter(model_content=graph, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    lo = {i: np.inf for i in measured}
    hi = {i: -np.inf for i in measured}
    for x in rep:
        it.set_tensor(index, x[None])
        it.invoke()
        for i in measured:
            a = it.get_tensor(i)
            lo[i], hi[i] = min(lo[i], a.min()), max(hi[i], a.max())
    assert len(measured) >= 20  # every activation of the network (ResNet-20: 19 convolutions and more)
    for i, (a, b) in measured.items():
        assert np.isclose(a, lo[i], rtol=1e-4, atol=1e-4) and np.isclose(b, hi[i], rtol=1e-4, atol=1e-4), (i, a, b, lo[i], hi[i])
    # the graph got them: with_ranges wrote what measure found
    written = calibrate.ranges_of(calibrate.with_ranges(graph, measured))
    assert written.keys() == measured.keys()
    assert all(np.allclose(written[i], measured[i], rtol=1e-6) for i in measured)


def test_progress_and_batches(setup):
    from resnet_edge import calibrate
    from resnet_edge.convert import calibration_graph, make_converter

    model, rep = setup
    graph = calibration_graph(make_converter(model, "int8", rep, "float32", False), rep[:1])
    seen = []
    one = calibrate.measure(graph, rep[:5], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5) and all(t == 5 for _, t in seen)
    alone = calibrate.measure(graph, rep[:5], threads=1)  # threads change nothing that matters
    assert all(np.allclose(one[i], alone[i], rtol=1e-5, atol=1e-5) for i in one)


def test_nan_in_activations_is_one_line(setup):
    from resnet_edge import calibrate
    from resnet_edge.convert import calibration_graph, make_converter

    model, rep = setup
    graph = calibration_graph(make_converter(model, "int8", rep, "float32", False), rep[:1])
    bad = rep[:2].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ConfigError, match="not finite"):
        calibrate.measure(graph, bad)


def test_calibrators_agree_on_accuracy(setup, digits):
    """Ours against TensorFlow's on the trained net: the same predictions on held-out images, nearly.

    (TensorFlow's records an in-place ADD's input range as the union with the sum's; ours, each tensor's own.)"""
    from resnet_edge.convert import model_samples, to_tflite
    from resnet_edge.runtime.runner import TFLiteModel

    model, rep = setup
    x, y, _ = model_samples(model, digits, "test", 300)
    settings = {}
    ours = TFLiteModel(to_tflite(model, "int8", representative=rep, settings=settings), probe=False).predict(x)
    theirs = TFLiteModel(to_tflite(model, "int8", representative=rep, calibrator="tensorflow"), probe=False).predict(x)
    keras = model.predict(x, verbose=0)
    assert settings["calibrator"] == "resnet-edge"
    acc = {k: float((v.argmax(1) == y).mean()) for k, v in (("ours", ours), ("theirs", theirs), ("keras", keras))}
    assert acc["ours"] >= acc["keras"] - 0.02 and acc["ours"] >= acc["theirs"] - 0.01, acc
    assert (ours.argmax(1) == keras.argmax(1)).mean() >= 0.97
