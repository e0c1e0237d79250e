"""`resnet-edge search`'s space and starting points, apart from tests/test_search.py so that the two test workers
share the search's tests: the residual stream searched, the first trial (the prior), and a search from published
weights whose thinner children start from their parent's channels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.cli_helpers import run


def test_a_search_from_weights_starts_each_child_from_its_parent(tmp_path):
    """--weights FILE (a torchvision ResNet-18 with random weights) on an image folder at 64 px: the space is that
    depth; a trial of a thinner network (every block at half its inner width) starts from the file's filters that rank
    highest (by L1 norm, worked out here from the file itself), and a few training steps later its kernels are still
    those; the winner's recipe names the file and builds that thin network."""
    from safetensors.numpy import save_file

    from resnet_edge.arch.keras_model import load_model
    from tests.torchvision_reference import random_state_dict
    from tools.transfer import digits_by_class, write_digit_folder

    sd = random_state_dict(18)
    path = tmp_path / "resnet18.tv_in1k.safetensors"
    save_file(sd, str(path))
    order = digits_by_class()
    folder = write_digit_folder(tmp_path / "d", {c: order[c][:16] for c in range(10)}, size=64)
    r = run("search", "--data", f"folder:{folder}", "--weights", path, "--sizes", "64", "--widths", "0.5", "--modes", "int8",
            "--threads", "1", "--budget", "1000ms", "--trials", "1", "--epochs", "1", "--measure", "2", "--runs", "4",
            "--batch-size", "32", "--no-baseline", "--no-second-seed", "--out", tmp_path / "s", "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["space"]["depths"] == [18] and result["space"]["candidates"] == 1
    trained = sorted((tmp_path / "s" / "trials").glob("*/model.keras"))
    assert len(trained) == 1
    thinner = 0
    for model_path in trained:
        manifest = json.loads(model_path.with_suffix(".json").read_text())
        widths = manifest["spec"]["inner_widths"]
        model = load_model(model_path)
        for i, (k,) in enumerate(widths):  # ResNet-18: two blocks a stage, conv2_block1 .. conv5_block2
            name, torch_name = f"conv{i // 2 + 2}_block{i % 2 + 1}_1", f"layer{i // 2 + 1}.{i % 2}.conv1"
            file_kernel = sd[f"{torch_name}.weight"].transpose(2, 3, 1, 0)  # out, in, h, w -> h, w, in, out
            kept = np.sort(np.argsort(-np.abs(file_kernel).sum(axis=(0, 1, 2)), kind="stable")[:k])
            ours = model.get_layer(f"{name}_conv").kernel.numpy()
            assert ours.shape == file_kernel[..., kept].shape
            change = np.linalg.norm(ours - file_kernel[..., kept]) / np.linalg.norm(file_kernel[..., kept])
            assert change < 0.05, (model_path.parent.name, name, change)  # a few steps from the file, not a fresh start
            thinner += k < file_kernel.shape[-1]
    assert thinner == 8  # every block of the child is thinner than the file's
    from resnet_edge.recipe import load as load_recipe

    recipe = load_recipe(str(tmp_path / "s" / "winner.yaml"))
    assert recipe["weights"] == str(path.resolve()) and recipe["model"]["keep"] == [0.5] * 4
    assert recipe["train"]["lr"] == 0.003 and recipe["train"]["freeze"] == "none"  # the trials' transfer recipe


def test_the_first_trial_is_what_a_user_would_pick_by_hand(digits):
    """The prior: the shallowest network at full width (int8 where it is feasible; it trains whole, so the winner is at
    least that choice on validation); without one under the budget, the feasible candidate with the most weights."""
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.search.latency import Meter
    from resnet_edge.search.space import Candidate
    from resnet_edge.search.study import prior
    from resnet_edge.targets import resolve

    meter = Meter(resolve("local"), Setting(threads=1), digits, Path("unused"), runs=2)
    full = (1.0,) * 3
    feasible = [Candidate(32, full, "int8"), Candidate(20, full, "float16"), Candidate(20, full, "int8"),
                Candidate(20, full, "int8", stream=(0.5, 1.0, 1.0)), Candidate(44, (0.25, 0.25, 1.0), "int8")]
    assert prior(feasible, meter)[0] == Candidate(20, full, "int8")
    thin = [Candidate(20, (0.25, 1.0, 1.0), "int8"), Candidate(44, (0.25, 0.25, 1.0), "int8")]
    pick, why = prior(thin, meter)
    assert pick == thin[1] and "most weights" in why


def test_a_searched_stream_is_the_network_thinning_makes(digits):
    """--streams: a candidate's network (what is timed and trained) has the shape the winner's recipe gets by thinning
    the trained full network, so the recipe rebuilds what won; candidates whose stream shortcut A would narrow are
    not in the search; the study's parameters give the candidate back; the whole stream keeps the old names."""
    import optuna

    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.optimize.channels import thin, thin_to
    from resnet_edge.runtime.setting import Setting
    from resnet_edge.search.latency import Meter
    from resnet_edge.search.space import Candidate, space_for
    from resnet_edge.search.study import params_of, suggest
    from resnet_edge.targets import resolve

    meter = Meter(resolve("local"), Setting(threads=1), digits, Path("unused"), runs=2)
    for keep, stream in [((0.5, 0.25, 1.0), (0.5, 0.5, 0.25)), ((1.0, 1.0, 0.75), (0.25, 1.0, 0.5))]:
        c = Candidate(20, keep, "int8", stream=stream)
        base = meter.base(20)
        whole = build_model(base)
        slim, thinned = thin(whole, base, keep, "l1", stream)
        assert meter.spec(c) == thinned
        x = np.random.default_rng(0).normal(size=(2, base.input_size, base.input_size, 3)).astype(np.float32)
        np.testing.assert_array_equal(thin_to(whole, base, thinned)(x).numpy(), slim(x).numpy())  # --weights' path
    space = space_for(8, (20,), (1.0,), ("int8",), streams=(0.25, 1.0))
    cands = space.candidates()
    kept = [c for c in cands if meter.buildable(c)]
    narrowing = {(1.0, 0.25, 0.25), (1.0, 0.25, 1.0), (0.25, 1.0, 0.25), (1.0, 1.0, 0.25)}  # 16 -> 8 or 32 -> 16
    assert len(cands) == 8 and {c.stream for c in cands if c not in kept} == narrowing
    study = optuna.create_study()
    for c in kept:
        study.enqueue_trial(params_of(c, space))
        assert suggest(study.ask(), space) == c
    whole = Candidate(20, (1.0,) * 3, "int8", stream=(1.0,) * 3)
    assert whole.stream is None and whole.key == Candidate(20, (1.0,) * 3, "int8").key
    assert "-r0.25-1-1-" in Candidate(20, (1.0,) * 3, "int8", stream=(0.25, 1.0, 1.0)).key
