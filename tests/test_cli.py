"""The command line, through click's CliRunner: output, exit codes and one-line errors."""

import json

import pytest
from click.testing import CliRunner

from resnet_edge import __version__
from resnet_edge.arch import spec as S
from resnet_edge.cli import cli
from resnet_edge.io import sha256_file


@pytest.fixture
def run():
    def invoke(*args):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and fragment in lines[0], result.output


def test_version_and_help(run):
    assert __version__ in run("--version").output
    for args in ([], ["models"], ["build"]):
        result = run(*args, "-h")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_models_table_lists_registry(run):
    result = run("models")
    assert result.exit_code == 0
    for name in S.list_models():
        assert name in result.output
    assert "11.69M" in result.output and "1.8 GMACs (Table 1)" in result.output


def test_models_json_matches_counter(run):
    rows = json.loads(run("models", "--family", "cifar", "--json").output)
    assert {r["name"] for r in rows} == set(S.list_models(family="cifar"))
    r20 = next(r for r in rows if r["name"] == "resnet20")
    assert r20["params"] == S.count(S.resolve(20)).trainable_params
    assert r20["input_size"] == 32 and r20["shortcut"] == "A"


def test_build_writes_model_and_manifest(run, tmp_path):
    out = tmp_path / "sub" / "r20.keras"
    result = run("build", "--depth", "20", "--classes", "7", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert summary == manifest
    assert manifest["file"]["sha256"] == sha256_file(out)
    assert manifest["counts"]["trainable_params"] == S.count(S.resolve(20, classes=7)).trainable_params
    assert manifest["spec"]["classes"] == 7 and manifest["trained"] is False
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]

    from resnet_edge.arch.keras_model import load_model

    assert load_model(out).output_shape == (None, 7)


def test_build_human_summary(run, tmp_path):
    result = run("build", "--model", "plain20", "--raw-input", "uint8", "--mean", "1,2,3", "--std", "4,5,6",
                 "-o", str(tmp_path / "p.keras"))
    assert result.exit_code == 0, result.output
    assert "plain20" in result.output and "none (plain)" in result.output
    assert "uint8 raw pixels" in result.output and "untrained" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["build", "--depth", "19"], "depth 19 is not a ResNet"),
        (["build", "--family", "cifar", "--depth", "22"], "6n+2"),
        (["build", "--depth", "18", "--input-size", "32"], "CIFAR family"),
        (["build", "--depth", "20", "--classes", "1"], "at least 2"),
        (["build", "--model", "resnet19"], "resnet19"),
        (["build", "--depth", "20", "--out", "model.txt"], ".keras or .h5"),
        (["build", "--depth", "20", "--mean", "1,2,3"], "--raw-input"),
        (["build", "--depth", "20", "--raw-input", "uint8", "--mean", "1,2"], "three numbers"),
    ],
)
def test_build_errors_are_one_line(run, args, fragment):
    assert_one_line_error(run(*args), fragment)


def test_build_unwritable_output(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run("build", "--depth", "20", "--out", str(blocker / "m.keras")), "cannot create the directory")
    (tmp_path / "dir.keras").mkdir()
    assert_one_line_error(run("build", "--depth", "20", "--out", str(tmp_path / "dir.keras")), "is a directory")


def test_failed_build_keeps_existing_file(run, tmp_path):
    out = tmp_path / "keep.keras"
    out.write_bytes(b"previous model")
    result = run("build", "--depth", "20", "--input-size", "4", "--out", str(out))
    assert result.exit_code != 0
    assert out.read_bytes() == b"previous model"


def test_python_m_entry_point():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "resnet_edge", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_shorten_never_cuts_a_word_or_url():
    from resnet_edge.ui import shorten

    text = "Unknown layer: 'QuantizeLayer'. Please ensure you are using a `keras.utils.custom_object_scope`. " \
           "See https://www.tensorflow.org/guide/keras/save_and_serialize#registering_the_custom_object for details."
    for limit in range(20, len(text) + 5, 7):
        short = shorten(text, limit)
        assert len(short) <= limit + 4
        assert "https://" not in short or "https://www.tensorflow.org/guide/keras/save_and_serialize#registering_the_custom_object" in short
        words = set(text.split()) | {w.rstrip(",;:(") for w in text.split()}  # whole words only
        assert all(word in words for word in short.removesuffix(" ...").split()), short


def test_summaries_read_well():
    """Issue 10: 'method method magnitude', 15-digit statistics, '1 partitions', options without help,
    shortcut choices shown as [a|b|c]."""
    from resnet_edge.cli.render import _method_text, _readiness_line, _short

    assert _method_text({"method": "magnitude", "sparsity": 0.5, "skip": ["first"], "lr": 0.01}) == \
        "magnitude: sparsity 0.5, skip first"
    assert _short([77.9963359499205, 78.1]) == "[78, 78.1]"
    line = _readiness_line("m.tflite", "cpu", {"ready": True, "ops": 30, "partitions": 1, "runtime": "LiteRT 2.3.0"})
    assert "1 XNNPACK partition in" in line and "partitions" not in line
    blocked = _readiness_line("m.tflite", "cpu", {"ready": False, "ops": 30, "partitions": 1, "blocked": 1,
                                                  "blockers": [{"op": "SOFTMAX", "index": 29, "why": "x"}]})
    assert ", 1 partition in" in blocked
    helptext = CliRunner().invoke(cli, ["train", "-h"]).output
    assert "[A|B|C]" in helptext
    lines = helptext.splitlines()
    for option, words in (("--epochs", "Passes over the training split"), ("--batch-size", "Images per step"),
                          ("--momentum", "SGD momentum"), ("--weight-decay", "L2 weight decay"), ("--seed", "Seeds")):
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " "))
        assert words in " ".join(" ".join(lines[at:at + 3]).split()), option  # the option's own listing, wrapped


def test_h5_saves_without_the_legacy_warning(tmp_path):
    import warnings

    from resnet_edge.arch.keras_model import build_model
    from resnet_edge.arch.spec import resolve
    from resnet_edge.build import save_keras

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_keras(build_model(resolve(None, model="resnet20")), tmp_path / "m.h5", {"kind": "keras-model"})
    assert not [w for w in caught if "HDF5" in str(w.message)]
