"""Models that drop into apps: the standard TFLite Metadata, checked with the real clients.

MediaPipe Tasks' ImageClassifier (mediapipe 1.2.3) and the TFLite Task Library's (tflite-support 0.4.4) run
in side environments of their own (tests/side_envs.py: neither installs beside TensorFlow 2.21), classify
the digits' real test images saved as PNG files, and are compared with our runtime on the same pixels. The
code MediaPipe generated from the published schemas reads what we wrote, independently of our reader.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from resnet_edge.measure.bench import predict
from resnet_edge.runtime.runner import check_model

from resnet_edge.runtime.setting import Setting
from resnet_edge.tflite import metadata as md
from resnet_edge.tflite import standard as std
from resnet_edge.tflite.model import read
from tests.cli_helpers import one_line_error, run
from tests.side_envs import side_python

ROOT = Path(__file__).resolve().parents[1]
MEDIAPIPE = ["mediapipe==1.2.3"]
TASK_LIBRARY = ["tflite-support==0.4.4"]


@pytest.fixture(scope="session")
def mediapipe_python():
    return side_python("mediapipe-1.2.3", MEDIAPIPE, "mediapipe.tasks.python.vision")


@pytest.fixture(scope="session")
def task_library_python():
    return side_python("tflite-support-0.4.4", TASK_LIBRARY, "tflite_support.task.vision")


@pytest.fixture(scope="module")
def app_models(converted, trained_resnet20, digits, tmp_path_factory):
    """Every mode convert writes, int8 with float, uint8 and int8 input/output (float32, float16, dynamic and
    int8 --io int8 from the session's conversion)."""
    from resnet_edge.convert import convert

    out = tmp_path_factory.mktemp("app")
    folder, _ = converted
    models = {m: folder / f"model_{m}.tflite" for m in ("float32", "float16", "dynamic", "int16x8")}
    models["int8 --io int8"] = folder / "model_int8.tflite"
    for io in ("float32", "uint8"):
        (manifest,) = convert(model_path=trained_resnet20, modes=["int8"], out=str(out / f"int8_{io}.tflite"), data=digits,
                              io=io, parity_samples=50, check_old_runtime=False)
        models["int8" if io == "float32" else "int8 --io uint8"] = Path(manifest["written"]["model"])
    return models


@pytest.fixture(scope="module")
def digit_pngs(digits, tmp_path_factory):
    """The digits' 359 test images as PNG files (lossless), in class folders; and their pixels and labels."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pngs")
    test = digits.split("test")
    for i, (img, label) in enumerate(zip(test.x, test.y)):
        (folder / digits.classes[label]).mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / digits.classes[label] / f"{i:04d}.png")
    order = sorted(folder.rglob("*.png"), key=lambda p: str(p.relative_to(folder)))  # the client's order
    index = [int(p.stem) for p in order]
    return folder, test.x[index], test.y[index]


def classify(python: str, client: str, models: list, images: Path) -> dict:
    proc = subprocess.run([python, str(ROOT / "tools" / "app_client.py"), "--client", client, "--images", str(images),
                           *map(str, models)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {r["model"]: r for r in map(json.loads, proc.stdout.splitlines())}


_OURS: dict = {}


def ours(model: Path, x: np.ndarray) -> np.ndarray:
    """Our runtime's top-1 (each model and input once per session: both clients compare with it)."""
    key = (str(model), hashlib.sha256(x.tobytes()).hexdigest())
    if key not in _OURS:
        ((scores, _),) = predict(check_model(model), [Setting(threads=2)], x.astype(np.float32))
        _OURS[key] = scores.argmax(1)
    return _OURS[key]


@pytest.mark.parametrize("client", ["mediapipe", "task-library"])
def test_frameworks_classify_our_models_as_our_runtime_does(client, app_models, digit_pngs, digits, request):
    """Every mode and --io that convert writes: the framework loads it from its standard metadata alone, names
    the classes, and its top-1 agrees with our runtime's on the real test images. int8 input is refused by
    both frameworks (they take uint8 or float32), and inspect says so."""
    python = request.getfixturevalue("mediapipe_python" if client == "mediapipe" else "task_library_python")
    folder, x, y = digit_pngs
    results = classify(python, client, list(app_models.values()), folder)
    figures = {}
    for mode, path in app_models.items():
        r = results[str(path)]
        if mode == "int8 --io int8":
            assert "got INT8" in r.get("error", ""), r  # the frameworks' own limit, not our metadata
            continue
        assert "error" not in r, (mode, r.get("error"))
        names = [e["name"] for e in r["results"]]
        index = np.array([e["index"] for e in r["results"]])
        assert names == [digits.classes[i] for i in index], mode  # the names are the labels of the indices
        mine = ours(path, x)
        agree, accuracy, our_accuracy = (index == mine).mean(), (index == y).mean(), (mine == y).mean()
        figures[mode] = f"agree {agree:.2%}, top-1 {accuracy:.2%} (ours {our_accuracy:.2%})"
        if mode in ("float32", "float16"):
            assert agree == 1.0, (mode, figures[mode])  # the same float math, image for image
        else:  # quantized kernels of another TFLite build: a few near-ties may flip
            assert agree >= 0.97 and abs(accuracy - our_accuracy) <= 0.015, (mode, figures[mode])
    print(client, json.dumps(figures, indent=1))


def test_inspect_shows_standard_metadata_and_flags_int8_input(app_models):
    r = run("inspect", app_models["int8 --io uint8"], "--target", "cpu", "--json")
    assert r.exit_code == 0, r.output
    app = json.loads(r.output)["app_metadata"]
    assert (app["labels"], app["labels_file"], app["color_space"]) == (10, "labels.txt", "RGB")
    assert app["normalization"] == {"mean": [0.0], "std": [1.0]} and app["input_range"] == {"min": [0.0], "max": [255.0]}
    assert app["problems"] == [] and app["name"] == "resnet20 (int8)"
    human = run("inspect", app_models["int8 --io int8"], "--target", "cpu").output
    assert "PROBLEM" in human and "--io uint8" in human and "[-128] .. [127]" in human


def test_integer_input_gets_one_step_per_pixel(trained_resnet20, digits, tmp_path):
    """Calibration images that never reach 0 or 255 give the converter's uint8 input a scale other than 1,
    which a framework (feeding pixels as they are) would misread: convert sets scale 1, zero point 0, and
    the model still computes the same on in-range pixels."""
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import pixel_input_quantization, to_tflite
    from resnet_edge.tflite.inspect import io_tensors

    model = load_model(trained_resnet20)
    x = digits.split("train").x[:32].astype(np.float32)
    dim = 40 + x * (150 / 255)  # pixels 40..190 only
    raw = to_tflite(model, "int8", representative=dim, io="uint8")
    before = io_tensors(raw)[0][0]["quantization"]
    assert abs(before["scale"] - 1) > 0.05, before  # the converter's own choice
    fixed = pixel_input_quantization(raw)
    after = io_tensors(fixed)[0][0]["quantization"]
    assert (after["scale"], after["zero_point"]) == (1.0, 0)
    a, b = tmp_path / "raw.tflite", tmp_path / "fixed.tflite"
    a.write_bytes(raw)
    b.write_bytes(fixed)
    test = np.round(dim[:32])  # pixels both quantizations represent
    sa = predict(check_model(a, verify=False), [Setting(threads=1)], test)[0][0]
    sb = predict(check_model(b, verify=False), [Setting(threads=1)], test)[0][0]
    assert (sa.argmax(1) == sb.argmax(1)).mean() >= 0.95 and np.abs(sa - sb).max() < 0.1


def test_field_slots_follow_the_published_schema(mediapipe_python, task_library_python):
    """Our writer's field slots and enum values, against metadata_schema.fbs as both wheels publish it."""
    for python, package, rel in ((mediapipe_python, "mediapipe", "tasks/metadata/metadata_schema.fbs"),
                                 (task_library_python, "tensorflow_lite_support", "metadata/metadata_schema.fbs")):
        where = subprocess.run([python, "-c", f"import importlib.util as u; print(u.find_spec('{package}').submodule_search_locations[0])"],
                               capture_output=True, text=True, check=True).stdout.strip()
        tables, enums = parse_fbs((Path(where) / rel).read_text())
        for name, fields in std.SLOTS.items():
            assert tables[name] == list(fields), (package, name)
        assert enums["ContentProperties"] == list(std.CONTENT_PROPERTIES)
        assert enums["ProcessUnitOptions"] == list(std.PROCESS_UNIT_OPTIONS)
        assert enums["ColorSpaceType"] == list(std.COLOR_SPACES) and enums["AssociatedFileType"] == list(std.FILE_TYPES)


def parse_fbs(text: str) -> tuple[dict, dict]:
    """Tables (field slots in order; a union field takes two: NAME_type, NAME) and enums/unions (values in
    order, unions with NONE first) of a .fbs file."""
    text = re.sub(r"//[^\n]*", "", text)
    unions = {m.group(1) for m in re.finditer(r"\bunion\s+(\w+)", text)}
    tables, enums = {}, {}
    for kind, name, body in re.findall(r"\b(table|enum|union)\s+(\w+)[^{]*\{([^}]*)\}", text):
        if kind == "table":
            slots = []
            for field_name, field_type in re.findall(r"(\w+)\s*:\s*\[?(\w+)", body):
                slots += [f"{field_name}_type", field_name] if field_type in unions else [field_name]
            tables[name] = slots
        else:
            values = [v.split("=")[0].strip() for v in body.split(",") if v.strip()]
            enums[name] = (["NONE"] if kind == "union" else []) + values
    return tables, enums


def test_an_independent_reader_finds_both_entries(app_models, mediapipe_python, tmp_path):
    """MediaPipe's generated schema code reads the standard metadata and our own entry; both survive our
    entry being rewritten (md.embed) and the standard one being rewritten (resnet-edge metadata)."""
    src = app_models["int8 --io uint8"]

    def reader(path):
        proc = subprocess.run([mediapipe_python, str(ROOT / "tests" / "schema_reader.py"), str(path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-1500:]
        return json.loads(proc.stdout)

    first = reader(src)
    assert {"TFLITE_METADATA", "resnet_edge"} <= set(first["entries"])
    s = first["standard"]
    assert s["name"] == "resnet20 (int8)" and s["minParserVersion"] == "1.0.0" and "He et al." in s["description"]
    (image,), (scores,) = s["inputs"], s["outputs"]
    assert image["normalization"] == {"mean": [0.0], "std": [1.0]} and image["stats"] == {"min": [0.0], "max": [255.0]}
    assert image["color_space"] == 1 and scores["files"] == [{"name": "labels.txt", "type": 2}]
    assert first["zip"] == {"labels.txt": "".join(f"{i}\n" for i in range(10))}
    assert first["ours"]["labels"] == [str(i) for i in range(10)]

    # our entry rewritten: the standard metadata and the appended labels survive, the checksum holds
    info = md.read_info(src.read_bytes())
    again = tmp_path / "embedded.tflite"
    again.write_bytes(md.embed(src.read_bytes(), {**info, "tool": "rewritten"}))
    second = reader(again)
    assert second["standard"] == first["standard"] and second["zip"] == first["zip"] and second["ours"]["tool"] == "rewritten"
    assert run("inspect", again, "--target", "cpu").exit_code == 0

    # the standard metadata rewritten: our entry survives (new labels in both), sealed again
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]) + "\n")
    out = tmp_path / "named.tflite"
    r = run("metadata", again, "--labels", names, "--author", "Edge Team", "--license", "Apache-2.0", "--out", out)
    assert r.exit_code == 0, r.output
    third = reader(out)
    assert third["standard"]["author"] == "Edge Team" and third["standard"]["license"] == "Apache-2.0"
    assert third["zip"]["labels.txt"].splitlines()[3] == "three" and third["ours"]["labels"][3] == "three"
    assert third["ours"]["tool"] == "rewritten" and third["buffers"] == second["buffers"]
    assert "verified (the checksum" in run("inspect", out, "--target", "cpu").output
    same_graph(again, out)


def same_graph(a: Path, b: Path) -> None:
    """Two models whose tensors, operators and every buffer but the metadata entries' are identical."""
    ma, da = read(a)
    mb, db = read(b)
    meta_a = {m.buffer for m in ma.metadata or []}
    meta_b = {m.buffer for m in mb.metadata or []}
    assert set(range(len(ma.buffers), len(mb.buffers))) <= meta_b  # any buffer added holds a metadata entry
    for i, (x, y) in enumerate(zip(ma.buffers, mb.buffers)):
        if i not in meta_a | meta_b:
            assert bytes(np.asarray(x.data if x.data is not None else [], np.uint8)) == \
                bytes(np.asarray(y.data if y.data is not None else [], np.uint8)), i
    ga, gb = ma.subgraphs[0], mb.subgraphs[0]
    assert [(t.name, list(t.shape), t.type, t.buffer) for t in ga.tensors] == \
        [(t.name, list(t.shape), t.type, t.buffer) for t in gb.tensors]
    assert [(o.opcodeIndex, list(o.inputs), list(o.outputs)) for o in ga.operators] == \
        [(o.opcodeIndex, list(o.inputs), list(o.outputs)) for o in gb.operators]


@pytest.fixture(scope="module")
def foreign_classifiers(trained_resnet20, tmp_path_factory):
    """Our trained ResNet-20 converted by the bare TensorFlow converter (no metadata of any kind), taking
    [-1, 1] (it maps them back to pixels inside)."""
    from resnet_edge._tf import tf
    from resnet_edge.arch.keras_model import load_model

    out = tmp_path_factory.mktemp("foreign_app")
    model = load_model(trained_resnet20)

    class Signed(tf.Module):
        def __init__(self, m):
            self.m = m

        @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
        def __call__(self, x):
            return {"scores": self.m(x * 127.5 + 127.5)}

    signed = Signed(model)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([signed.__call__.get_concrete_function()], signed)
    (out / "signed.tflite").write_bytes(conv.convert())
    return out


def test_metadata_makes_a_foreign_model_usable(foreign_classifiers, digit_pngs, digits, mediapipe_python,
                                               task_library_python, tmp_path):
    """A model someone else converted: both frameworks refuse it; after `resnet-edge metadata` with its labels
    and its normalization ([-1, 1]: mean 127.5, std 127.5) both classify as our runtime does, and the
    model's tensors and weights are untouched."""
    folder, x, y = digit_pngs
    src = foreign_classifiers / "signed.tflite"
    model = tmp_path / "signed.tflite"
    model.write_bytes(src.read_bytes())
    refused = classify(mediapipe_python, "mediapipe", [model], folder)[str(model)]
    assert "NormalizationOptions" in refused["error"]
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(digits.classes) + "\n")
    r = run("metadata", model, "--labels", labels, "--mean", "127.5", "--std", "127.5", "--name", "digits")
    assert r.exit_code == 0, r.output
    assert "[-1] .. [1]" in r.output and "not verified" in run("inspect", model, "--target", "cpu").output
    same_graph(src, model)
    mine = ours(model, (x - 127.5) / 127.5)
    for python, client in ((mediapipe_python, "mediapipe"), (task_library_python, "task-library")):
        res = classify(python, client, [model], folder)[str(model)]
        index = np.array([e["index"] for e in res["results"]])
        assert (index == mine).mean() == 1.0, client
        assert [e["name"] for e in res["results"]] == [digits.classes[i] for i in index]


def test_bad_input_is_one_line_and_writes_nothing(app_models, foreign_classifiers, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes((foreign_classifiers / "signed.tflite").read_bytes())
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    nine = tmp_path / "nine.txt"
    nine.write_text("\n".join(str(i) for i in range(9)) + "\n")
    one_line_error(run("metadata", model, "--labels", nine, "--mean", "0", "--std", "1"), "9 names", "10 scores")
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"a\nb\xff\n")
    one_line_error(run("metadata", model, "--labels", broken, "--mean", "0", "--std", "1"), "not UTF-8")
    ten = tmp_path / "ten.txt"
    ten.write_text("\n".join(str(i) for i in range(10)) + "\n")
    one_line_error(run("metadata", model, "--labels", ten), "--mean and --std")
    one_line_error(run("metadata", model, "--labels", ten, "--mean", "0", "--std", "0"), "--std must be positive")
    one_line_error(run("metadata", model, "--labels", ten, "--mean", "0", "--std", "1,2,3", "--out", tmp_path / "x.tflite"),
                   "1 or 3 values each")
    for bad, says in (("nan", "not finite"), ("0,0", "one number or three numbers")):  # Click's usage errors: exit 2
        usage = run("metadata", model, "--labels", ten, "--mean", bad, "--std", "1")
        assert usage.exit_code == 2 and says in usage.output and "Traceback" not in usage.output, usage.output
    one_line_error(run("metadata", model, "--labels", tmp_path / "missing.txt", "--mean", "0", "--std", "1"), "not found")
    # normalization that does not fit a uint8 input: frameworks feed its pixels as they are
    u8 = tmp_path / "u8.tflite"
    u8.write_bytes(app_models["int8 --io uint8"].read_bytes())
    u8_before = hashlib.sha256(u8.read_bytes()).hexdigest()
    one_line_error(run("metadata", u8, "--mean", "127.5", "--std", "127.5"), "do not fit the uint8 input")
    # not an image classifier
    two = tmp_path / "two.tflite"
    two.write_bytes(two_input_model())
    one_line_error(run("metadata", two, "--labels", ten, "--mean", "0", "--std", "1"), "not an image classifier")
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    assert hashlib.sha256(u8.read_bytes()).hexdigest() == u8_before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.tflite", "nine.txt", "broken.txt", "ten.txt",
                                                                 "u8.tflite", "two.tflite"])


def two_input_model() -> bytes:
    from resnet_edge._tf import tf

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, a):
            return {"y": a * 2.0}

    two = Two()
    return tf.lite.TFLiteConverter.from_concrete_functions([two.__call__.get_concrete_function()], two).convert()


def test_a_damaged_zip_is_one_line(foreign_classifiers, tmp_path):
    """A foreign model with standard metadata whose appended zip was damaged or cut off: inspect and metadata
    say so in one line and write nothing; a model of ours so damaged fails its checksum first."""
    good = tmp_path / "good.tflite"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(10)) + "\n")
    assert run("metadata", foreign_classifiers / "signed.tflite", "--labels", labels, "--mean", "127.5", "--std", "127.5", "--out",
               good).exit_code == 0
    data = good.read_bytes()
    start = data.rindex(b"PK\x03\x04")  # the labels file's local header
    cases = {
        "cut.tflite": data[:start],  # the whole zip cut off
        "crc.tflite": data[:-60] + bytes([data[-60] ^ 0xFF]) + data[-59:],  # a byte of the central directory
        "body.tflite": data[:start + 40] + b"X" + data[start + 41:],  # a byte of labels.txt: its CRC fails
    }
    for name, damaged in cases.items():
        path = tmp_path / name
        path.write_bytes(damaged)
        one_line_error(run("inspect", path, "--target", "cpu"), "labels.txt" if name == "cut.tflite" else "zip")
        one_line_error(run("metadata", path, "--author", "x"), "labels.txt" if name == "cut.tflite" else "zip")
        assert path.read_bytes() == damaged, name


def test_decoding_hostile_bytes_never_escapes(app_models):
    """Random damage to a real ModelMetadata flatbuffer: decode() returns or raises its one error, nothing else."""
    raw = md.entries(app_models["int8"].read_bytes())[std.ENTRY]
    rng = np.random.default_rng(0)
    for _ in range(3000):
        b = bytearray(raw)
        for i in rng.integers(8, len(b), size=int(rng.integers(1, 6))):
            b[i] = int(rng.integers(0, 256))
        try:
            std.decode(bytes(b))
        except std.BadStandardMetadataError:
            pass
    with pytest.raises(std.BadStandardMetadataError):
        std.decode(raw[:40])
    assert std.decode(raw)["subgraphs"][0]["outputs"][0]["associated_files"][0]["name"] == "labels.txt"


def test_the_readme_snippet_runs_in_mediapipe(app_models, mediapipe_python, digits, tmp_path):
    """The MediaPipe example of docs/apps.md, as it is written there, on the bundled digit: three classes, named by
    the model's labels, the first being our runtime's top-1 for that image."""
    from PIL import Image

    readme = (ROOT / "docs" / "apps.md").read_text()
    code = readme.split("MediaPipe in Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "runs" / "r20").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "runs" / "r20" / "resnet20_int8.tflite").write_bytes(app_models["int8"].read_bytes())
    (tmp_path / "docs" / "digit_3.png").write_bytes((ROOT / "docs" / "digit_3.png").read_bytes())
    (tmp_path / "snippet.py").write_text(code)
    proc = subprocess.run([mediapipe_python, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert len(lines) == 3 and all(len(parts) == 3 for parts in lines), proc.stdout
    scores = [float(parts[2]) for parts in lines]
    assert all(parts[1] == digits.classes[int(parts[0])] for parts in lines) and scores == sorted(scores, reverse=True)
    pixels = np.asarray(Image.open(ROOT / "docs" / "digit_3.png").convert("RGB"))[None]
    assert int(lines[0][0]) == int(ours(app_models["int8"], pixels)[0])


def test_inspect_flags_metadata_that_disagrees(app_models, tmp_path):
    """Metadata another tool wrote wrongly: nine labels for ten scores and [-1, 1] normalization on a uint8
    input; and a float input without normalization. inspect names each disagreement."""
    nine = [str(i) for i in range(9)]
    wrong = std.ImageClassifierMetadata(name="wrong", mean=[127.5], std=[127.5], input_min=[-1.0], input_max=[1.0],
                                        labels=nine)
    path = tmp_path / "wrong.tflite"
    path.write_bytes(md.rewrite(app_models["int8 --io uint8"].read_bytes(), standard=std.encode(wrong),
                                files={std.LABELS_FILE: std.labels_file(nine)}))
    r = run("inspect", path, "--target", "cpu", "--json")
    assert r.exit_code == 0, r.output
    problems = json.loads(r.output)["app_metadata"]["problems"]
    assert len(problems) == 2, problems
    assert "9 names but the output has 10 scores" in problems[1]
    assert "disagree with the uint8 input's quantization, which implies mean 0, std 1" in problems[0]
    bare = std.ImageClassifierMetadata(name="bare", mean=None, std=None, input_min=[], input_max=[], labels=None)
    path = tmp_path / "bare.tflite"
    path.write_bytes(md.rewrite(app_models["float32"].read_bytes(), standard=std.encode(bare), files={}))
    human = run("inspect", path, "--target", "cpu").output
    assert "PROBLEM" in human and "no NormalizationOptions" in human and "none (apps show class indices)" in human
