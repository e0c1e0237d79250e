"""Published ImageNet weights into our networks, checked against the reference implementations on two real
photographs (scikit-learn's): Keras Applications itself (tf_keras ships ResNet50/101/152, so no download; both
networks get the same random weights through its file format), torchvision's forward pass written in numpy
(tests/torchvision_reference.py) and, by hand (slow), torchvision itself in a side environment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import one_line_error, run


def photos(size: int = 224) -> np.ndarray:
    """scikit-learn's two real photographs (a temple, a flower), centre-cropped and resized, and their mirror
    images: 4 x size x size x 3 raw RGB pixels."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    out = []
    for img in load_sample_images().images:
        h, w, _ = img.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(img[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(crop))
    x = np.stack(out).astype(np.float32)
    return np.concatenate([x, x[:, :, ::-1]])


def keras_applications_file(path, depth: int = 50, seed: int = 0, classifier_activation="softmax"):
    """Keras Applications' ResNet with random weights (biases and BatchNorm statistics too, so that folding and
    the channel order matter), saved in its weights file format; returns the reference model."""
    from tf_keras import applications

    ref = {50: applications.ResNet50, 101: applications.ResNet101, 152: applications.ResNet152}[depth](
        weights=None, classifier_activation=classifier_activation)
    rng = np.random.default_rng(seed)
    for layer in ref.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kind = layer.__class__.__name__
        if kind == "BatchNormalization":
            gamma, beta, mean, var = weights
            weights = [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape), rng.normal(0, 0.2, mean.shape),
                       rng.uniform(0.5, 1.5, var.shape)]
        else:  # Conv2D, Dense: kernel and bias
            kernel, bias = weights
            fan_in = np.prod(kernel.shape[:-1])
            weights = [rng.normal(0, np.sqrt(2 / fan_in), kernel.shape), rng.normal(0, 0.2, bias.shape)]
        layer.set_weights([w.astype(np.float32) for w in weights])
    ref.save_weights(str(path))
    return ref


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """Keras Applications' ResNet50 ending in logits (random weights make them large, so a softmax would be one-hot
    and hide differences), with its weights file."""
    path = tmp_path_factory.mktemp("kapps") / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    ref = keras_applications_file(path, classifier_activation=None)
    return path, ref


def test_keras_applications_resnet50_matches_the_reference(resnet50_file, tmp_path):
    from tf_keras.applications.resnet import preprocess_input

    from resnet_edge.arch.keras_model import load_model

    path, ref = resnet50_file
    r = run("build", "--weights", path, "--logits", "--out", tmp_path / "r50.keras", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["spec"]["depth"] == 50 and summary["weights"]["classifier"] == "loaded" and summary["trained"]
    assert summary["spec"]["preprocess"]["mean"] == [123.68, 116.779, 103.939]
    ours = load_model(tmp_path / "r50.keras")
    x = photos()
    want = ref.predict(preprocess_input(x.copy()), verbose=0)
    got = ours.predict(x, verbose=0)  # raw RGB pixels: the caffe preprocessing is inside
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"Keras Applications ResNet50: max |ours - reference| = {np.abs(got - want).max():.3g} (relative {rel:.3g})")
    assert rel < 1e-4 and (got.argmax(1) == want.argmax(1)).all()


def test_new_classifier_keeps_the_backbone(tmp_path):
    """--classes other than the file's: every backbone tensor loaded, a fresh classifier of that size."""
    from safetensors.numpy import save_file

    from resnet_edge.arch.keras_model import load_model
    from tests.torchvision_reference import random_state_dict

    sd = random_state_dict(18)
    path = tmp_path / "resnet18.tv_in1k.safetensors"
    save_file(sd, str(path))
    r = run("build", "--weights", path, "--classes", "5", "--out", tmp_path / "r18_5.keras", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["weights"]["classifier"] == "new" and not json.loads(r.output)["trained"]
    ours = load_model(tmp_path / "r18_5.keras")
    np.testing.assert_array_equal(ours.get_layer("conv5_block2_2_conv").get_weights()[0],
                                  sd["layer4.1.conv2.weight"].transpose(2, 3, 1, 0))
    assert ours.output_shape == (None, 5)


def test_bad_weight_files_are_one_line(resnet50_file, tmp_path):
    import h5py

    path, _ = resnet50_file
    out = tmp_path / "never.keras"
    one_line_error(run("build", "--weights", path, "--depth", "101", "--out", out), "ResNet-50 weights, not ResNet-101")
    one_line_error(run("build", "--weights", path, "--variant", "v1.5", "--out", out), "v1 network")
    one_line_error(run("build", "--weights", tmp_path / "missing.h5", "--out", out), "not found")
    (tmp_path / "text.h5").write_text("not hdf5")
    one_line_error(run("build", "--weights", tmp_path / "text.h5", "--out", out), "not an HDF5 file")
    # a whole saved Keras model is not a weights file
    assert run("build", "--depth", "20", "--out", tmp_path / "whole.h5").exit_code == 0
    one_line_error(run("build", "--weights", tmp_path / "whole.h5", "--out", out), "not a Keras Applications weights file")
    # Keras Applications' ResNet50V2 (pre-activation): same layer names in part, another network
    from tf_keras.applications import ResNet50V2

    ResNet50V2(weights=None).save_weights(str(tmp_path / "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"))
    one_line_error(run("build", "--weights", tmp_path / "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5", "--out", out),
                   "ResNetV2 (pre-activation)")
    # a partial file: one layer's weights removed
    partial = tmp_path / "partial.h5"
    with h5py.File(path, "r") as src, h5py.File(partial, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name in src:
            if name != "conv3_block2_2_bn":
                src.copy(name, dst)
    one_line_error(run("build", "--weights", partial, "--out", out), "conv3_block2_2_bn")
    # wrong dtype and wrong shape in one tensor (straight into one built network: the CLI path is the one above)
    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import Preprocess, resolve
    from resnet_edge.arch.weights import WeightsError, describe, load_into

    wf = describe(path)
    model = build_model(resolve(50, preprocess=Preprocess(wf.mean, wf.std, "float32"), classifier_activation=None))
    before = [w.copy() for w in model.get_weights()]
    for what, data in (("int32", lambda d: d[()].astype(np.int32)), ("shape", lambda d: d[()][..., :-1]),
                       ("nan", lambda d: np.full(d.shape, np.nan, np.float32))):
        bad = tmp_path / f"bad_{what}.h5"
        with h5py.File(path, "r") as src, h5py.File(bad, "w") as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            for name in src:
                src.copy(name, dst)
            group = dst["conv4_block1_1_conv"]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
            key = [n for n in names if n.endswith("kernel:0")][0]
            values = data(group[key])
            del group[key]
            group[key] = values
        with pytest.raises(WeightsError, match={"int32": "kernel holds int32", "shape": "kernel has shape",
                                                "nan": "NaN"}[what]):
            load_into(model, describe(bad))
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))  # never half-loaded
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_state_dict_matches_a_reference_forward(depth, tmp_path):
    """A torchvision-layout .safetensors (random weights, BatchNorm statistics too) loaded into ours gives the
    logits of torchvision's forward pass on real photographs (tests/torchvision_reference.py, numpy)."""
    from safetensors.numpy import save_file

    from resnet_edge.arch.keras_model import load_model
    from tests.torchvision_reference import forward, random_state_dict

    sd = random_state_dict(depth)
    path = tmp_path / f"resnet{depth}.tv_in1k.safetensors"
    save_file(sd, str(path))
    r = run("build", "--weights", path, "--logits", "--out", tmp_path / "m.keras", "--json")
    assert r.exit_code == 0, r.output
    spec = json.loads(r.output)["spec"]
    assert (spec["depth"], spec["variant"], spec["classifier_activation"]) == (depth, "v1" if depth < 50 else "v1.5", None)
    x = photos()[:2]
    got = load_model(tmp_path / "m.keras").predict(x, verbose=0)
    want = forward(sd, x, depth)
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"resnet{depth}: max |ours - reference| = {np.abs(got - want).max():.3g} (relative {rel:.3g})")
    assert rel < 1e-4 and (got.argmax(1) == want.argmax(1)).all()


def test_bad_state_dicts_are_one_line(tmp_path):
    from safetensors.numpy import save_file

    from tests.torchvision_reference import random_state_dict

    out = tmp_path / "never.keras"
    sd = random_state_dict(18, classes=3)
    cases = {
        "missing": ({k: v for k, v in sd.items() if not k.startswith("layer3.1.bn2")}, "layer3.1.bn2"),
        "dtype": ({**sd, "layer2.0.conv1.weight": sd["layer2.0.conv1.weight"].astype(np.int32)}, "holds I32"),
        "shape": ({**sd, "layer4.1.conv2.weight": sd["layer4.1.conv2.weight"][:, :-1]}, "layer4.1.conv2"),
        "extra": ({**sd, "layer1.0.se.fc1.weight": np.zeros((4, 64), np.float32)}, "layer1.0.se.fc1.weight"),
        "other": ({"embeddings.weight": np.zeros((3, 4), np.float32)}, "not a torchvision/timm ResNet"),
    }
    for name, (state, says) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path))
        one_line_error(run("build", "--weights", path, "--out", out), says)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    one_line_error(run("build", "--weights", tmp_path / "junk.safetensors", "--out", out), "not a readable .safetensors")
    (tmp_path / "model.pth").write_bytes(b"\x80\x04pickle")
    one_line_error(run("build", "--weights", tmp_path / "model.pth", "--out", out), "pickle")
    assert not out.exists()


def test_convert_starts_from_weights(tmp_path):
    """convert --weights: the fresh network gets the file's weights (a torchvision ResNet-18 here) and the
    .tflite takes raw pixels, with torchvision's normalization inside and said so in its metadata."""
    from safetensors.numpy import save_file

    from resnet_edge.measure.bench import predict
    from resnet_edge.runtime.runner import check_model

    from resnet_edge.runtime.setting import Setting
    from tests.torchvision_reference import forward, random_state_dict

    sd = random_state_dict(18, classes=10)
    path = tmp_path / "resnet18.tv_in1k.safetensors"
    save_file(sd, str(path))
    r = run("convert", "--weights", path, "--samples", "8", "--out", tmp_path / "r18.tflite", "--json")
    assert r.exit_code == 0, r.output
    (m,) = json.loads(r.output)
    assert m["source"]["weights"]["format"] == "torchvision" and m["source"]["trained"]
    assert m["metadata"]["normalization"]["std"] == [58.395, 57.12, 57.375]
    assert m["app_metadata"]["normalization"] == {"mean": [0.0], "std": [1.0]}
    x = photos()[:2]
    ((scores, _),) = predict(check_model(tmp_path / "r18.tflite"), [Setting(threads=2)], x)
    want = forward(sd, x, 18)
    assert (scores.argmax(1) == want.argmax(1)).all()
    softmax = np.exp(want - want.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.abs(scores - softmax).max() < 1e-4


def test_weights_imagenet_uses_files_already_here(resnet50_file, tmp_path, monkeypatch):
    """--weights imagenet downloads nothing: it finds the published file in $RESNET_EDGE_WEIGHTS, the Keras
    cache or timm's Hugging Face cache, and otherwise names the file to get and where from."""
    import shutil

    from safetensors.numpy import save_file

    from resnet_edge.arch.weights import imagenet_file
    from tests.torchvision_reference import random_state_dict

    folder, keras_home, hf_home = tmp_path / "weights", tmp_path / "keras", tmp_path / "hf"
    folder.mkdir()
    for name, value in (("RESNET_EDGE_WEIGHTS", folder), ("KERAS_HOME", keras_home), ("HF_HOME", hf_home)):
        monkeypatch.setenv(name, str(value))
    out = tmp_path / "m.keras"
    one_line_error(run("build", "--weights", "imagenet", "--depth", "50", "--out", out),
                   "resnet50_weights_tf_dim_ordering_tf_kernels.h5", "storage.googleapis.com/tensorflow/keras-applications")
    one_line_error(run("build", "--weights", "imagenet", "--depth", "18", "--out", out),
                   "huggingface.co/timm/resnet18.tv_in1k", "resnet18.tv_in1k.safetensors")
    (keras_home / "models").mkdir(parents=True)
    shutil.copy(resnet50_file[0], keras_home / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    path, warning = imagenet_file(50, None)
    assert path.parent == keras_home / "models" and "not the file Keras Applications publishes" in warning
    snapshot = hf_home / "hub" / "models--timm--resnet18.tv_in1k" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    save_file(random_state_dict(18), str(snapshot / "model.safetensors"))
    r = run("build", "--weights", "imagenet", "--depth", "18", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["weights"]["format"] == "torchvision"
    assert run("build", "--weights", "imagenet", "--out", out).exit_code == 2  # which depth? a usage error


@pytest.mark.slow
@pytest.mark.parametrize("depth", [101, 152])
def test_keras_applications_deeper_files_match_the_reference(depth, tmp_path):
    """ResNet101 and ResNet152 as ResNet50 above (slow: run by hand with -m slow)."""
    from tf_keras.applications.resnet import preprocess_input

    from resnet_edge.arch.keras_model import load_model

    path = tmp_path / f"resnet{depth}_weights_tf_dim_ordering_tf_kernels.h5"
    ref = keras_applications_file(path, depth=depth, classifier_activation=None)
    r = run("build", "--weights", path, "--logits", "--out", tmp_path / "m.keras", "--json")
    assert r.exit_code == 0, r.output
    x = photos()
    want = ref.predict(preprocess_input(x.copy()), verbose=0)
    got = load_model(tmp_path / "m.keras").predict(x, verbose=0)
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"Keras Applications ResNet{depth}: max |ours - reference| = {np.abs(got - want).max():.3g} (relative {rel:.3g})")
    assert rel < 1e-4 and (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_itself(depth, tmp_path):
    """torchvision's own ResNet (random weights, BatchNorm statistics too) saved with safetensors in a torch side
    environment (tests/torch_side.py; torch is too heavy for CI), loaded into ours: the same logits on the
    photographs. Slow: run by hand with -m slow."""
    import subprocess

    from resnet_edge.arch.keras_model import load_model
    from tests.side_envs import side_python

    # the newest pair that installs here and imports (torchvision 0.28.0 with torch 2.13.0+cpu does not: nms missing)
    python = side_python("torch-2.12.1", ["torch==2.12.1", "torchvision==0.27.1", "safetensors", "numpy"], "torchvision")
    x = photos()[:2]
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([python, str(Path(__file__).parent / "torch_side.py"), str(depth), str(tmp_path / "x.npy"),
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-1500:]
    r = run("build", "--weights", tmp_path / f"resnet{depth}.tv_in1k.safetensors", "--logits", "--out", tmp_path / "m.keras")
    assert r.exit_code == 0, r.output
    want = np.load(tmp_path / "logits.npy")
    got = load_model(tmp_path / "m.keras").predict(x, verbose=0)
    rel = np.abs(got - want).max() / np.abs(want).max()
    print(f"{proc.stdout.strip()}: resnet{depth}: max |ours - torch| = {np.abs(got - want).max():.3g} (relative {rel:.3g})")
    assert rel < 1e-4 and (got.argmax(1) == want.argmax(1)).all()
