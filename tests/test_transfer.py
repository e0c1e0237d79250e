"""Transfer learning: `train --weights` on a folder of real images (scikit-learn's digits 0-4 written as 64x64 PNGs),
from a torchvision-layout ResNet-18 file. The weights are random stand-ins (no published file can be downloaded
here), so these tests check the mechanics: what each phase freezes, the learning rates, exact resume across the
phase boundary, the model that ships, and the errors. tools/transfer.py measures what pretraining is worth."""

from __future__ import annotations

import json
import numpy as np
import pytest

from tests.cli_helpers import one_line_error, run
from tools.transfer import digits_by_class, write_digit_folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from safetensors.numpy import save_file

    from tests.torchvision_reference import random_state_dict

    root = tmp_path_factory.mktemp("transfer")
    order = digits_by_class()
    write_digit_folder(root / "photos", {c: order[c][:30] for c in range(5)})
    for seed in (0, 1):
        save_file(random_state_dict(18, seed=seed), str(root / f"r18_{seed}.safetensors"))
    return root


def _layers(model, prefixes):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers
            if layer.get_weights() and layer.name.startswith(prefixes)}


def _same(a: dict, b: dict) -> bool:
    return all(all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a)


def _changed(a: dict, b: dict) -> bool:
    """Every layer of ``a`` moved (some weight of it differs in ``b``)."""
    return all(any(not np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a)


def test_phases_freeze_what_they_say_and_resume_exactly(setup):
    """Head phase: only the classifier moves (BatchNorm statistics too stay ImageNet's). Fine-tune phase with
    stages:2: the stem and conv2_x/conv3_x stay as loaded, conv4_x/conv5_x train (BatchNorm statistics too). A run
    stopped at the phase boundary ends with the uninterrupted run's weights exactly."""
    from resnet_edge.arch.keras_model import build_model, load_model
    from resnet_edge.arch.weights import describe, load_into
    from resnet_edge.data import load
    from resnet_edge.train import Recipe, spec_for_data, train

    wf = describe(setup / "r18_0.safetensors")
    data = load(f"folder:{setup / 'photos'}")
    spec = spec_for_data(data, input_size=64, weights=wf)
    assert spec.preprocess.mean == pytest.approx((123.675, 116.28, 103.53))  # the weights' normalization, not the data's
    recipe = Recipe(epochs=2, batch_size=16, lr=0.01, warmup=0, freeze="stages:2", head_epochs=1, lr_boundaries=(0.9,))
    loaded = build_model(spec)
    load_into(loaded, wf, new_classifier=True)
    frozen = ("conv1_", "conv2_", "conv3_")
    tuned = ("conv4_", "conv5_")

    whole = train(spec, data, setup / "whole", recipe, weights=wf, limit=32, verbose=0)
    part = setup / "part"
    assert train(spec, data, part, recipe, weights=wf, limit=32, verbose=0, stop_after=1)["stopped_at_epoch"] == 1
    head = load_model(part / "checkpoints" / "epoch-0001" / "model.keras")
    assert _same(_layers(loaded, frozen + tuned), _layers(head, frozen + tuned))
    assert _changed(_layers(loaded, ("predictions",)), _layers(head, ("predictions",)))
    # resumed at the phase boundary without the weights file: the checkpoint holds the weights and names the file
    resumed = train(spec, data, part, recipe, resume=True, limit=32, verbose=0)
    a, b = load_model(setup / "whole" / "model.keras"), load_model(part / "model.keras")
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert _same(_layers(loaded, frozen), _layers(a, frozen))
    assert _changed(_layers(head, tuned), _layers(a, tuned))
    assert all(layer.trainable for layer in a.layers if layer.get_weights() and "preprocess" not in layer.name)

    history = json.loads((setup / "whole" / "history.json").read_text())
    assert [row["phase"] for row in history] == ["head", "fine-tune"]
    assert [row["lr"] for row in history] == pytest.approx([0.01, 0.001])  # the head's rate, then lr/10
    assert whole["weights"]["file"] == "r18_0.safetensors" and resumed["weights"] == whole["weights"]
    assert whole["normalization"]["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert history[0]["step"] == 2 and resumed["final"]["step"] == whole["final"]["step"] == 4  # 32 images, batch 16

    r = run("train", "--resume", "--out", setup / "whole", "--weights", setup / "r18_1.safetensors")
    one_line_error(r, "started from r18_0.safetensors, not from r18_1.safetensors")


def test_cli_defaults_from_the_data_size(setup, tmp_path):
    """Few images a class: only the classifier trains, at the transfer rate, without warm-up, from a zero classifier;
    the output says how the run started."""
    out = tmp_path / "run"
    r = run("train", "--weights", setup / "r18_0.safetensors", "--data", f"folder:{setup / 'photos'}",
            "--input-size", "64", "--epochs", "1", "--batch-size", "16", "--limit", "40", "--out", out)
    assert r.exit_code == 0, r.output
    assert "r18_0.safetensors (torchvision), new classifier; only the classifier trained (--freeze backbone)" in r.output
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["recipe"]["freeze"] == "backbone" and manifest["recipe"]["head_epochs"] == 1
    assert manifest["recipe"]["lr"] == 0.003 and manifest["recipe"]["warmup"] == 0


def test_transfer_defaults():
    from resnet_edge.train import default_freeze, default_head_epochs, default_transfer_epochs

    assert default_transfer_epochs(50, 32) == 250  # 2 steps an epoch: 500 steps
    assert default_transfer_epochs(100_000, 128) == 15  # a large set: the usual 15 epochs
    assert [default_freeze(n, 5) for n in (99, 100, 499, 500)] == ["backbone", "stages:2", "stages:2", "none"]
    assert default_head_epochs("backbone", 40) == 40 and default_head_epochs("none", 40) == 10
    assert default_head_epochs("stages:2", 1) == 0


@pytest.mark.slow
def test_qat_and_pruning_on_a_fine_tuned_model(setup, tmp_path):
    """The model a transfer run ships has nothing frozen, so qat and prune (weights, channels) take it as any other."""
    out = tmp_path / "run"
    data = f"folder:{setup / 'photos'}"
    r = run("train", "--weights", setup / "r18_0.safetensors", "--data", data, "--input-size", "64", "--epochs", "2",
            "--freeze", "none", "--head-epochs", "1", "--batch-size", "16", "--limit", "40", "--lr", "0.01", "--out", out)
    assert r.exit_code == 0, r.output
    q = run("qat", out / "model.keras", "--data", data, "--epochs", "1", "--limit", "32", "--out", tmp_path / "q.h5",
            "--json")
    assert q.exit_code == 0, q.output
    assert json.loads(q.output)["left_in_float"] == []
    pruned = run("prune", out / "model.keras", "--data", data, "--sparsity", "0.5", "--epochs", "1", "--limit", "32",
                 "--out", tmp_path / "p.keras", "--json")
    assert pruned.exit_code == 0, pruned.output
    m = json.loads(pruned.output)
    assert m["counts"]["nonzero_params_after"] < 0.6 * m["counts"]["after"]["total_params"]
    c = run("prune", out / "model.keras", "--data", data, "--channels", "0.5", "--epochs", "1", "--limit", "32",
            "--out", tmp_path / "c.keras", "--json")
    assert c.exit_code == 0, c.output
    m = json.loads(c.output)
    assert m["counts"]["after"]["macs"] < 0.7 * m["counts"]["before"]["macs"]


def test_schedule_of_a_transfer_run():
    from resnet_edge.arch.spec import resolve
    from resnet_edge.train import Recipe, schedule_points

    spec = resolve(18)
    tune = Recipe(epochs=8, lr=0.1, freeze="none", head_epochs=2)
    # head at 0.1 for 20 steps, then lr/10 dropped at 1/3 and 2/3 of the 60 fine-tune steps
    assert schedule_points(tune, spec, 10) == ([20, 40, 60], pytest.approx([0.1, 0.01, 0.001, 0.0001]))
    given = Recipe(epochs=8, lr=0.1, freeze="stages:1", head_epochs=2, fine_tune_lr=0.05, lr_boundaries=(0.5,))
    assert schedule_points(given, spec, 10) == ([20, 50], pytest.approx([0.1, 0.05, 0.005]))
    probe = Recipe(epochs=6, lr=0.1, freeze="backbone", head_epochs=6)  # only the classifier: the usual schedule
    assert schedule_points(probe, spec, 10) == schedule_points(Recipe(epochs=6, lr=0.1), spec, 10)


@pytest.mark.parametrize("args, fragment", [
    (["--model", "resnet20", "--data", "digits", "--freeze", "none"], "add --weights"),
    (["--model", "resnet20", "--data", "digits", "--head-epochs", "2"], "add --weights"),
    (["--weights", "{w}", "--data", "digits"], "images of digits are 32x32"),
    (["--weights", "{w}", "--data", "folder:{p}", "--freeze", "stages:7"], "stages:N with N from 0 to 4"),
    (["--weights", "{w}", "--data", "folder:{p}", "--freeze", "top"], "--freeze is backbone, none or stages:N"),
    (["--weights", "{w}", "--data", "folder:{p}", "--epochs", "3", "--head-epochs", "5"], "between 0 and --epochs (3)"),
    (["--weights", "{w}", "--data", "folder:{p}", "--freeze", "backbone", "--head-epochs", "1"], "drop --head-epochs"),
    (["--weights", "{w}", "--data", "folder:{p}", "--depth", "50"], "ResNet-18 weights, not ResNet-50"),
    (["--weights", "{p}/missing.safetensors", "--data", "folder:{p}"], "not found"),
])
def test_transfer_usage_errors(setup, tmp_path, args, fragment):
    args = [a.format(w=setup / "r18_0.safetensors", p=setup / "photos") for a in args]
    r = run("train", *args, "--out", tmp_path / "run")
    assert r.exit_code in (1, 2) and "Traceback" not in r.output, r.output  # 2: a usage error, said before the data loads
    (line,) = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert fragment in line, line
    assert not (tmp_path / "run").exists()
