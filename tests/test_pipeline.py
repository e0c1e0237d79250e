"""resnet-edge run: a tiny recipe end to end, then what a second run skips, what a change reruns, what a deleted
or damaged file rebuilds, a run killed with -9 and continued, two runs on one folder, and the gates."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from resnet_edge.cli import cli

TINY = """\
recipe_version: 1
name: tiny
model: {depth: 8, family: cifar}
data: digits
train: {epochs: 2, batch_size: 64, limit: 192}
variants:
  - name: float
    modes: [float32, int8]
  - name: thin
    optimize:
      channels: {keep: 0.5, stream: [1, 0.5, 1], epochs: 1, batch_size: 64}
    modes: [int8]
validate:
  limit: 64
  runs: 3
  warmup: 1
  targets:
    - {target: local, threads: [1]}
gates:
  max_bytes: 1000000
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(recipe: Path, out: Path, *extra: str):
    r = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(out), "--json", *extra])
    return r, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else None)


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def done(recipe_file, tmp_path_factory) -> Path:
    """One finished run of the tiny recipe (tests copy it before changing anything)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    r, j = run(recipe_file, out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def copy(done, tmp_path) -> Path:
    dest = tmp_path / "tiny"
    shutil.copytree(done, dest)
    return dest


def test_a_tiny_recipe_end_to_end(recipe_file, done):
    r, j = run(recipe_file, done)  # the same command again: nothing runs
    assert r.exit_code == 0, r.output
    assert j["ran"] == []
    rows = {(x["variant"], x["mode"]): x for x in j["rows"]}
    assert set(rows) == {("float", "float32"), ("float", "int8"), ("thin", "int8")}
    for x in rows.values():
        assert 0 <= x["top1"] <= 1 and 0 <= x["agreement"] <= 1 and x["p50_ms"] > 0 and x["p90_ms"] >= x["p50_ms"]
        assert x["bytes"] == (done / "variants" / x["variant"] / "convert" / f"{x['variant']}_{x['mode']}.tflite").stat().st_size
        assert x["failed"] == [] and x["target"] == "local"
    assert rows[("float", "float32")]["speedup"] == 1.0 and rows[("float", "float32")]["agreement"] == 1.0
    assert rows[("thin", "int8")]["bytes"] < rows[("float", "int8")]["bytes"] < rows[("float", "float32")]["bytes"]
    thin = json.loads((done / "variants" / "thin" / "optimize" / "model.json").read_text())
    assert thin["stream_widths"] == [16, 16, 64] and thin["settings"]["stream"] == [1, 0.5, 1]  # the recipe's stream
    reference = json.loads((done / "reference" / "stage.json").read_text())["result"]
    float32 = json.loads((done / "variants/float/validate_float32/stage.json").read_text())["result"]
    assert float32["float_top1"] == reference["top1"]  # the float model's accuracy, on the same images
    for stage in done.rglob("stage.json"):  # every record names its key and the sha256 of what it wrote
        record = json.loads(stage.read_text())
        for name, digest in record["outputs"].items():
            assert sha(stage.parent / name) == digest


def test_each_int8_layers_own_error(done):
    """The per-layer int8 error of each calibrated int8 variant: one row per quantized op of the model, every
    convolution there, largest first, in quantization steps near rounding noise for most layers; the CSV beside
    it holds the same rows."""
    import csv

    from resnet_edge.arch.keras_model import load_model

    for variant, model in (("float", "train/model.keras"), ("thin", "variants/thin/optimize/model.keras")):
        stage = json.loads((done / "variants" / variant / "layers" / "stage.json").read_text())
        layers = stage["result"]["layers"]
        convs = [layer.name for layer in load_model(done / model).layers if type(layer).__name__ == "Conv2D"]
        assert sorted(x["layer"] for x in layers if x["op"] == "CONV_2D") == sorted(convs)
        steps = [x["rmse_scale"] for x in layers]
        assert steps == sorted(steps, reverse=True) and all(0 <= v < 20 for v in steps)
        assert 0.1 < float(np.median(steps)) < 1.0  # 1/sqrt(12) = 0.29 for rounding alone
        with open(done / "variants" / variant / "layers" / "layer_errors.csv") as f:
            assert [r["layer"] for r in csv.DictReader(f)] == [x["layer"] for x in layers]


def test_where_the_time_goes(done):
    """The chosen variant and float32, cut after the stem and each of the three stages: each prefix ends on that
    stage's feature map, the parts add up to the whole model's p50, and the report shows them."""
    from resnet_edge.tflite.inspect import io_tensors

    stage = json.loads((done / "stage_latency" / "stage.json").read_text())
    results = json.loads((done / "results.json").read_text())
    chosen = " ".join(results["chosen"])
    assert stage["settings"]["chosen"] == results["chosen"] and stage["result"]["models"][0] == chosen
    assert set(stage["result"]["models"]) == {chosen, "float float32"}
    shapes = {"stem": [1, 32, 32, 16], "conv2": [1, 32, 32, 16], "conv3": [1, 16, 16, 32], "conv4": [1, 8, 8, 64],
              "head": [1, 10]}
    label = "float_float32"
    for part, shape in shapes.items():
        _, outputs = io_tensors((done / "stage_latency" / f"{label}_{part}.tflite").read_bytes())
        assert list(outputs[0]["shape"]) == shape, part
    (t,) = stage["result"]["targets"]
    for model in stage["result"]["models"]:
        assert list(t["ms"][model]) == list(shapes) and all(v >= 0 for v in t["ms"][model].values())
        assert sum(t["ms"][model].values()) >= t["total_ms"][model] * 0.999
    html = (done / "report.html").read_text()
    assert html.index("Which layers lose accuracy") < html.index("Where the time goes") < html.index("Where it ran")
    assert "## Where the time goes" in (done / "report.md").read_text()


def test_the_human_table_and_progress(recipe_file, done):
    r = CliRunner().invoke(cli, ["run", str(recipe_file), "--out", str(done)])
    assert r.exit_code == 0, r.output
    assert "variant" in r.stdout and "vs f32" in r.stdout and "every stage was up to date" in r.stdout
    assert "[1/11] train: up to date, skipped" in r.stderr and "[9/11] validate:thin:int8: up to date" in r.stderr
    assert "[11/11] stage_latency: up to date" in r.stderr


def test_a_new_convert_mode_reruns_conversion_and_validation_only(recipe_file, copy):
    model = copy / "train" / "model.keras"
    before = (sha(model), model.stat().st_mtime_ns)
    r, j = run(recipe_file, copy, "--set", "variants.0.modes=[float32,float16,int8]")
    assert r.exit_code == 0, r.output
    assert "convert:float" in j["ran"] and "validate:float:float16" in j["ran"]
    assert not {"train", "reference", "optimize:thin", "convert:thin", "validate:thin:int8", "layers:float",
                "layers:thin"} & set(j["ran"])
    assert (sha(model), model.stat().st_mtime_ns) == before
    assert ("float", "float16") in {(x["variant"], x["mode"]) for x in j["rows"]}


def test_jobs_run_the_variants_side_by_side(recipe_file, done, copy):
    """--jobs 2 with training kept: the float variant's conversion and the thin variant's optimization run at
    once, each in a worker process; the stages that time models run in the run's own process, alone; the table
    is the one a serial run made."""
    shutil.rmtree(copy / "variants")
    r, j = run(recipe_file, copy, "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert "train" not in j["ran"] and {"convert:float", "optimize:thin", "stage_latency"} <= set(j["ran"])
    rec = {s: json.loads((copy / "variants" / v / d / "stage.json").read_text())
           for s, v, d in (("convert:float", "float", "convert"), ("optimize:thin", "thin", "optimize"),
                           ("validate:float:int8", "float", "validate_int8"))}
    a, b = rec["convert:float"], rec["optimize:thin"]
    assert a["started"] < b["finished"] and b["started"] < a["finished"]  # they overlapped
    assert a["pid"] != b["pid"] and os.getpid() not in (a["pid"], b["pid"])
    assert rec["validate:float:int8"]["pid"] == os.getpid()
    timed = [json.loads(p.read_text()) for p in copy.rglob("stage.json") if "validate_" in str(p)]
    others = [json.loads(p.read_text()) for p in (copy / "variants").rglob("stage.json") if "validate_" not in str(p)]
    for t in timed:  # nothing ran while a model was timed
        assert all(o["finished"] <= t["started"] or o["started"] >= t["finished"] for o in others)
    serial = {(x["variant"], x["mode"]): x for x in json.loads((done / "results.json").read_text())["rows"]}
    for x in j["rows"]:
        y = serial[(x["variant"], x["mode"])]
        assert x["bytes"] == pytest.approx(y["bytes"], rel=0.01) and abs(x["top1"] - y["top1"]) <= 2 / 64


def test_dry_run_says_what_would_run_and_runs_nothing(recipe_file, copy):
    r = CliRunner().invoke(cli, ["run", str(recipe_file), "--out", str(copy), "--dry-run",
                                 "--set", "train.epochs=3"])
    assert r.exit_code == 0, r.output
    assert "[1/11] train: would run (settings changed (train))" in r.stderr
    assert "[2/11] reference: would run (train runs first, so its input may change)" in r.stderr
    assert "[11/11] stage_latency: would run (validate:float:float32 runs first" in r.stderr
    assert json.loads((copy / "train" / "stage.json").read_text())["settings"]["train"]["epochs"] == 2


def test_a_deleted_or_damaged_artifact_is_rebuilt(recipe_file, copy):
    tfl = copy / "variants" / "float" / "convert" / "float_int8.tflite"
    good = sha(tfl)
    tfl.unlink()
    r = CliRunner().invoke(cli, ["run", str(recipe_file), "--out", str(copy)])
    assert r.exit_code == 0, r.output
    assert "convert:float: running (float_int8.tflite was deleted)" in r.stderr
    assert sha(tfl) == good  # the same bytes again: validation is skipped
    assert "validate:float:int8: up to date" in r.stderr
    with open(tfl, "ab") as f:
        f.write(b"\0")
    r = CliRunner().invoke(cli, ["run", str(recipe_file), "--out", str(copy)])
    assert "convert:float: running (float_int8.tflite was changed or damaged)" in r.stderr and sha(tfl) == good


def test_the_gates_name_the_variant_and_by_how_much(recipe_file, copy):
    r, j = run(recipe_file, copy, "--set", "gates.max_bytes=200000", "--set", "gates.min_top1=100")
    assert r.exit_code == 1 and j["ran"] == [] and j["passing"] == []
    assert "no variant meets every gate" in r.stderr and "float float32: " in r.stderr
    assert "size " in r.stderr and "> 200,000 B" in r.stderr and "< 100%" in r.stderr
    fails = {(x["variant"], x["mode"]): x["failed"] for x in j["rows"]}
    assert any("size" in f for f in fails[("float", "float32")])
    r, j = run(recipe_file, copy, "--set", "gates.latency={target: local, p50_ms: 100000}")
    assert r.exit_code == 0 and j["passing"]
    r, j = run(recipe_file, copy, "--set", "gates.latency={target: elsewhere, p50_ms: 1}")
    assert r.exit_code == 1 and all("no latency measured on elsewhere" in x["failed"] for x in j["rows"])


def test_killed_with_9_mid_training_then_continued_to_the_same_result(recipe_file, done, tmp_path):
    """A run killed with -9 after its first checkpoint, while a second run of the same folder is refused,
    then run again: training resumes from the checkpoint and ends with the weights of the uninterrupted run."""
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    only = ("--set", "variants=[{name: float, modes: [float32]}]",  # training's key does not depend on them
            "--set", "validate.stage_latency=false")
    proc = subprocess.Popen([sys.executable, "-m", "resnet_edge", "run", str(recipe_file), "--out", str(out), *only],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "train" / "checkpoints").glob("*/state.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        second = CliRunner().invoke(cli, ["run", str(recipe_file), "--out", str(out), *only])
        assert second.exit_code == 1 and "\n" not in second.stderr.strip() and "lock" in second.stderr.lower()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert not (out / "train" / "model.keras").exists()
    r = CliRunner().invoke(cli, ["run", str(recipe_file), "--out", str(out), *only])
    assert r.exit_code == 0, r.output
    assert "[1/4] train: running (its last attempt stopped before the end)" in r.stderr
    from resnet_edge.arch.keras_model import load_model

    a, b = load_model(out / "train" / "model.keras"), load_model(done / "train" / "model.keras")
    assert all((x == y).all() for x, y in zip(a.get_weights(), b.get_weights()))
    from resnet_edge.runtime.runner import TFLiteModel  # the files differ (the source's sha256 is inside): not the scores

    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    here, there = (TFLiteModel(str(d / "variants/float/convert/float_float32.tflite")).predict(x) for d in (out, done))
    assert (here == there).all()


def test_killed_with_9_mid_conversion_then_continued(recipe_file, done, tmp_path):
    out = tmp_path / "killed"
    shutil.copytree(done, out)
    shutil.rmtree(out / "variants")
    only = ("--set", "variants=[{name: float, modes: [float32, int8]}]", "--set", "validate.stage_latency=false",
            "--set", "validate.layer_errors=false")
    proc = subprocess.Popen([sys.executable, "-m", "resnet_edge", "run", str(recipe_file), "--out", str(out), *only],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "variants" / "float" / "convert").exists() and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.5)  # inside the conversion
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "variants" / "float" / "convert" / "stage.json").exists()
    r, j = run(recipe_file, out, *only)
    assert r.exit_code == 0, r.output
    assert "train" not in j["ran"] and "convert:float" in j["ran"]
    for name in ("float_float32.tflite", "float_int8.tflite"):
        assert sha(out / "variants/float/convert" / name) == sha(done / "variants/float/convert" / name)


# --- the report ------------------------------------------------------------------------------------------


def test_the_report_is_written_with_the_verdict_first(done):
    html = (done / "report.html").read_text()
    md = (done / "report.md").read_text()
    assert html.index("Verdict") < html.index("Every variant") < html.index("Where it ran") < html.index("Reproduce")
    assert "Ship " in html and html.count("data:image/png;base64,") >= 3
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "| variant | mode |" in md and "float32" in md and "## Reproduce" in md
    results = json.loads((done / "results.json").read_text())
    for x in results["rows"]:
        assert f"<td>{x['variant']}</td><td>{x['mode']}</td>" in html
    for path, digest in ((p, d) for s in done.rglob("stage.json")
                         for p, d in json.loads(s.read_text())["outputs"].items()):
        assert digest in html  # every artifact's sha256, to reproduce


def test_the_report_from_the_records_alone(done, tmp_path):
    """Made again from results.json and the stages' records: no model needed, nothing run."""
    dest = tmp_path / "records"
    shutil.copytree(done, dest, ignore=shutil.ignore_patterns("*.keras", "*.h5", "*.tflite", "checkpoints"))
    (dest / "report.html").unlink()
    r = CliRunner().invoke(cli, ["report", str(dest), str(done), "--out", str(tmp_path / "two.html")])
    assert r.exit_code == 0, r.output
    two = (tmp_path / "two.html").read_text()
    assert "Beside tiny" in two and (tmp_path / "two.md").exists()
    r = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert r.exit_code == 1 and "holds no finished run" in r.stderr


def test_the_report_in_a_real_browser(done, tmp_path):
    """Debian's chromium, driven by Playwright: the page loads with no request leaving the file and no console
    error, and reads at 1280 px and at a phone's 390 px (nothing wider than the screen but inside a scroller)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no chromium here (Debian's package chromium; .ci/run installs it)")
    sync = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    page_url = (done / "report.html").resolve().as_uri()
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for width in (1280, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                requests, errors = [], []
                page.on("request", lambda req: requests.append(req.url))
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(page_url)
                page.wait_for_load_state("load")
                assert [u for u in requests if u != page_url and not u.startswith("data:")] == []
                assert errors == []
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                images = page.evaluate("[...document.images].map(i => [i.naturalWidth, i.getBoundingClientRect().right])")
                assert images and all(w > 0 and right <= width for w, right in images)
                page.screenshot(path=str(tmp_path / f"report-{width}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
    assert (tmp_path / "report-390.png").stat().st_size > 10_000


def test_the_cifar10_recipe_runs_two_steps_on_batches_in_the_cifar_layout(tmp_path):
    """No CIFAR-10 can be had here: the shipped recipe, as it is but for the data, its length and the depth (ResNet-20
    for ResNet-110: the suite's time; the recipe's own model is checked by its schema), on batches written in the real
    CIFAR-10 layout (64 training images, two steps of 32)."""
    from tests.test_data import write_cifar

    data = write_cifar(tmp_path / "cifar-10-batches-py", n_train=32, n_test=16, batches=2)
    r, j = run(Path("resnet110-cifar10"), tmp_path / "run", "--set", f"data=cifar10:{data}", "--set", "train.epochs=1",
               "--set", "model.name=resnet20",
               "--set", "train.batch_size=32", "--set", "variants=[{name: float, modes: [float32]}]",
               "--set", "validate.limit=8", "--set", "validate.runs=2", "--set", "validate.warmup=0",
               "--set", "gates.min_top1=null", "--set", "gates.max_drop=null", "--set", "validate.stage_latency=false")
    assert r.exit_code == 0, r.output
    train = json.loads((tmp_path / "run" / "train" / "stage.json").read_text())
    assert train["result"]["name"] == "resnet20" and train["result"]["final"]["step"] == 2
    assert train["settings"]["train"]["lr_boundaries"] == [0.5, 0.75]  # the paper's schedule, as the recipe says
    assert {(x["variant"], x["mode"], x["setting"]) for x in j["rows"]} == {
        ("float", "float32", "litert xnnpack 1t"), ("float", "float32", "litert xnnpack 2t")}  # threads: [1, 2]


def test_the_photos_recipe_from_a_keras_applications_weights_file(tmp_path):
    """resnet50-photos as shipped but for its data, weights and length: the weights are the Keras Applications
    ResNet50 file that tools/transfer.py pretrains (one epoch here), read as a published file is; the int8 model
    has the recipe's uint8 input for apps."""
    from tools.transfer import SIZE, digits_by_class, pretrain, write_digit_folder

    order = digits_by_class()
    source = write_digit_folder(tmp_path / "source", {c: order[c][:10] for c in range(5)})
    pretrain(source, tmp_path / "source.h5", epochs=1)
    photos = write_digit_folder(tmp_path / "photos", {c: order[c][:12] for c in range(5, 10)})
    r, j = run(Path("resnet50-photos"), tmp_path / "run", "--set", f"data=folder:{photos}",
               "--set", f"weights={tmp_path / 'source.h5'}", "--set", f"model.input_size={SIZE}",
               "--set", "train.epochs=1", "--set", "train.limit=16",
               "--set", "variants=[{name: float, modes: [int8], io: uint8}]", "--set", "validate.limit=8",
               "--set", "validate.runs=2", "--set", "validate.warmup=0", "--set", "validate.targets=[{target: local}]",
               "--set", "validate.stage_latency=false", "--set", "validate.layer_errors=false",
               "--set", "gates={}")
    assert r.exit_code == 0, r.output
    train = json.loads((tmp_path / "run" / "train" / "stage.json").read_text())
    assert train["inputs"]["weights"] == sha(tmp_path / "source.h5")
    manifest = json.loads((tmp_path / "run" / "train" / "model.json").read_text())
    assert manifest["name"] == "resnet50" and manifest["spec"]["input_size"] == SIZE
    assert manifest["weights"] == {"file": "source.h5", "sha256": sha(tmp_path / "source.h5"),
                                   "format": "keras-applications"}
    assert train["result"]["final"]["phase"] == "head" and train["result"]["final"]["lr"] == 0.003  # transfer
    from resnet_edge.tflite.inspect import io_tensors

    inputs, outputs = io_tensors((tmp_path / "run" / "variants/float/convert/float_int8.tflite").read_bytes())
    assert inputs[0]["dtype"] == "uint8" and outputs[0]["dtype"] == "uint8" and outputs[0]["shape"][-1] == 5
    assert [(x["variant"], x["mode"]) for x in j["rows"]] == [("float", "int8")]


def test_the_report_shows_the_search_the_model_won(copy, tmp_path):
    """A recipe that a search wrote (`search: .../search.json`): the run's report tells how the search chose the model,
    every trial and the accuracy-latency plot; a record that is damaged, foreign or hostile never breaks the report
    and never reaches the page as markup."""
    dest = copy
    record = {"budget_ms": 0.25, "metric": "p90", "target": "local", "setting": "litert xnnpack 1t", "feasible": 3,
              "space": {"candidates": 6}, "train_seconds": 12.5, "device_seconds": 4.0, "device_measurements": 6,
              "winner": {"key": "resnet8-k1-1-1-int8-abc", "p90_ms": 0.2, "searched_ms": 0.19, "val_acc": 0.9,
                         "test_top1": 0.88},
              "trials": [{"number": 0, "candidate": "resnet8-k1-1-1-int8-abc", "state": "COMPLETE", "latency_ms": 0.19,
                          "val_acc": 0.9, "epochs": 2, "prior": True},
                         {"number": 1, "candidate": "<script>alert(1)</script>", "state": "PRUNED", "latency_ms": 0.12,
                          "val_acc": 0.5, "epochs": 1}],
              "pareto": [{"latency_ms": 0.12, "val_acc": 0.5}, {"latency_ms": 0.19, "val_acc": 0.9}]}
    path = tmp_path / "search.json"
    path.write_text(json.dumps(record))
    results = json.loads((dest / "results.json").read_text())
    results["recipe"]["search"] = str(path)
    (dest / "results.json").write_text(json.dumps(results))
    r = CliRunner().invoke(cli, ["report", str(dest)])
    assert r.exit_code == 0, r.output
    html, md = (dest / "report.html").read_text(), (dest / "report.md").read_text()
    assert "How the search chose it" in html and "resnet8-k1-1-1-int8-abc" in html and "3 of\n6 candidates" in html
    assert 'alt="validation accuracy against measured latency of every trial of the search"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "| 0 | resnet8-k1-1-1-int8-abc | complete | 0.19 | 90.00% | 2 | the prior's pick |" in md
    for text, said in (("{", "is not JSON"), (json.dumps({"trials": "many"}), "is not the record of a resnet-edge search"),
                       (None, "cannot be read")):
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
        r = CliRunner().invoke(cli, ["report", str(dest)])
        assert r.exit_code == 0 and said in (dest / "report.html").read_text(), r.output
