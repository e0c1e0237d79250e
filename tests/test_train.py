"""Training with the paper's recipe on the real digits, resume after kill -9, mirrored strategy, evaluate."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_edge.arch import spec as S
from resnet_edge.cli import cli
from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.train import Recipe, lr_at, schedule_points, spec_for_data, train


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """ResNet-20 trained for 4 epochs on the full digits training split (80 SGD steps)."""
    run = tmp_path_factory.mktemp("run")
    manifest = train(spec_for_data(digits, model="resnet20"), digits, run, Recipe(epochs=4, batch_size=64), verbose=0)
    return run, manifest


def test_short_real_training_beats_chance_clearly(trained, digits):
    from resnet_edge.evaluate import evaluate

    run, manifest = trained
    result = evaluate(run / "model.keras", digits)
    assert result["top1"] >= 0.8, result["top1"]  # chance is 0.1
    assert manifest["final"]["step"] == 4 * math.ceil(len(digits.train) / 64)
    assert manifest["data"]["source"] == "digits" and manifest["normalization"]["inside_model"]
    history = [json.loads(line) for line in [json.dumps(h) for h in json.loads((run / "history.json").read_text())]]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_error"] < history[0]["train_error"]
    csv = (run / "history.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,step,lr") and len(csv) == 5
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads((run / "best.json").read_text())
    assert best["best"]["val_acc"] == max(h["val_acc"] for h in history)


def test_paper_schedule():
    cifar = S.resolve(20)
    b, v = schedule_points(Recipe(epochs=10), cifar, steps_per_epoch=100)
    assert b == [500, 750] and np.allclose(v, [0.1, 0.01, 0.001])
    assert lr_at(499, b, v) == 0.1 and lr_at(500, b, v) == pytest.approx(0.01)
    imagenet = S.resolve(18, input_size=64)
    b, _ = schedule_points(Recipe(epochs=90), imagenet, steps_per_epoch=10)
    assert b == [300, 600]
    b, v = schedule_points(Recipe(epochs=1, lr_boundaries=(0.5, 0.6)), cifar, steps_per_epoch=1)
    assert b == [1] and len(v) == 2  # boundaries that round to the same step collapse


def test_warmup_rule_ends_below_80_percent_error(trained):
    _, manifest = trained
    ended = manifest["warmup_ended_at_step"]
    assert ended is not None and 1 <= ended < manifest["final"]["step"]


def test_recipe_validation():
    with pytest.raises(ConfigError):
        Recipe(epochs=0)
    with pytest.raises(ConfigError):
        Recipe(lr_boundaries=(0.5, 1.5))
    with pytest.raises(ConfigError):
        Recipe(warmup="sometimes")


def test_refuses_to_overwrite_or_mix_runs(trained, digits):
    run, _ = trained
    spec = spec_for_data(digits, model="resnet20")
    with pytest.raises(ResnetEdgeError, match="--resume"):
        train(spec, digits, run, Recipe(epochs=4, batch_size=64), verbose=0)
    other = spec_for_data(digits, model="resnet32")
    with pytest.raises(ResnetEdgeError, match="holds resnet20, not resnet32"):
        train(other, digits, run, Recipe(epochs=4, batch_size=64), resume=True, verbose=0)
    with pytest.raises(ResnetEdgeError, match="already complete"):
        train(spec, digits, run, Recipe(epochs=4, batch_size=64), resume=True, verbose=0)


def test_model_must_fit_the_data(digits):
    with pytest.raises(ConfigError, match="CIFAR family"):
        spec_for_data(digits, model="resnet18")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "resnet_edge", *args], capture_output=True, text=True, timeout=timeout)


def test_resume_after_kill_9_ends_where_an_uninterrupted_run_ends(tmp_path):
    common = ["train", "--model", "resnet20", "--epochs", "4", "--batch-size", "50", "--limit", "300"]
    full = _cli(*common, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "resnet_edge", *common, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (run / "checkpoints" / "epoch-0002").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "model.keras").exists(), "the run finished before it could be killed"
    resumed = _cli("train", "--resume", "--out", str(run), "--json")
    assert resumed.returncode == 0, resumed.stderr

    ha, hb = _same_final_weights(tmp_path / "full", run)
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [6, 12, 18, 24]
    assert [h["lr"] for h in ha] == [h["lr"] for h in hb]


def _same_final_weights(full, run):
    """Assert two runs ended with the same weights; return both histories."""
    from resnet_edge.arch.keras_model import load_model

    a, b = load_model(full / "model.keras"), load_model(run / "model.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-5)
    return json.loads((full / "history.json").read_text()), json.loads((run / "history.json").read_text())


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    proc = _cli("train", "--model", "resnet20", "--epochs", "2", "--batch-size", "64", "--limit", "256",
                "--strategy", "mirrored", "--cpu-devices", "2", "--out", str(tmp_path / "m"), "--json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["strategy"] == {"name": "mirrored", "replicas": 2}
    assert manifest["final"]["step"] == 2 * 4 and np.isfinite(manifest["final"]["loss"])


def test_evaluate_cli(trained):
    run, _ = trained
    result = CliRunner().invoke(cli, ["evaluate", str(run / "model.keras"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 359 and report["top5"] >= report["top1"]
    assert len(report["per_class"]) == 10 and np.array(report["confusion_matrix"]).sum() == 359
    human = CliRunner().invoke(cli, ["evaluate", str(run / "best.keras")])
    assert "top-1" in human.output and "most confused" in human.output


def test_evaluate_errors(trained, tmp_path):
    run, _ = trained
    from tests.test_data import write_folder

    folder = write_folder(tmp_path / "imgs")
    result = CliRunner().invoke(cli, ["evaluate", str(run / "model.keras"), "--data", f"folder:{folder}"])
    assert result.exit_code != 0 and "predicts 10 classes" in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "none.keras")])
    assert result.exit_code != 0 and "not found" in result.output


def test_train_cli_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--model", "resnet18", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "CIFAR-family net, --model resnet20" in r.output
    r = runner.invoke(cli, ["train", "--resume", "--out", str(tmp_path / "nothing")])
    assert r.exit_code != 0 and "nothing to resume" in r.output
    r = runner.invoke(cli, ["train", "--model", "resnet20", "--data", f"cifar10:{tmp_path}", "--out", str(tmp_path / "y")])
    assert r.exit_code != 0 and "expected" in r.output
    assert not (tmp_path / "y").exists()


def test_warmup_line_says_what_happened():
    """A warm-up that never ended ran the whole run at lr/10; 'none' is only for a run without one."""
    from resnet_edge.cli.render import _warmup_text

    assert _warmup_text({"warmup_ended_at_step": 12, "recipe": {"warmup": "auto"}}) == "lr/10 for the first 12 steps"
    assert "whole run" in _warmup_text({"warmup_ended_at_step": None, "recipe": {"warmup": "auto"}})
    assert "whole run" in _warmup_text({"warmup_ended_at_step": None, "recipe": {"warmup": 500}})
    assert _warmup_text({"warmup_ended_at_step": None, "recipe": {"warmup": 0}}) == "none"


def test_checkpoint_every_n_epochs_resumes_exactly(digits, tmp_path):
    """--checkpoint-every 2: a run stopped after epoch 3 has only epoch 2's checkpoint; resumed, it trains
    epoch 3 again and ends where a run checkpointed every epoch ends. best.keras goes with its checkpoint."""
    spec, recipe = spec_for_data(digits, model="resnet20"), Recipe(epochs=4, batch_size=50)
    full = train(spec, digits, tmp_path / "full", recipe, limit=300, verbose=0)
    run = tmp_path / "every2"
    assert train(spec, digits, run, recipe, limit=300, verbose=0, checkpoint_every=2, stop_after=3) == {
        "stopped_at_epoch": 3, "run_dir": str(run)}
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("epoch-")] == ["epoch-0002"]
    state = json.loads((run / "checkpoints" / "epoch-0002" / "state.json").read_text())
    best = json.loads((run / "best.json").read_text())
    assert best["best"] == state["best"]  # best.keras is the one the checkpoint names, not a later epoch's
    resumed = train(spec, digits, run, recipe, limit=300, verbose=0, checkpoint_every=2, resume=True)
    ha, hb = _same_final_weights(tmp_path / "full", run)
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [6, 12, 18, 24]
    assert [h["val_acc"] for h in ha] == pytest.approx([h["val_acc"] for h in hb], abs=1e-6)
    assert resumed["best"] == full["best"] and resumed["epochs_done"] == 4
    with pytest.raises(ConfigError, match="checkpoint-every"):
        train(spec, digits, tmp_path / "bad", recipe, limit=300, verbose=0, checkpoint_every=0)
