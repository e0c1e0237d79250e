"""Recipes: the shipped ones are valid, and a hostile or wrong one is one line naming its key and line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from resnet_edge import recipe
from resnet_edge.cli import cli

GOOD = "name: tiny\nmodel:\n  name: resnet20\nvariants:\n  - name: float\n    modes: [float32]\n"


def write(tmp_path, text: str | bytes, name: str = "r.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("name", recipe.shipped())
def test_every_shipped_recipe_is_valid_and_shows_itself(name):
    r = recipe.load(name)
    assert r["name"] == name and r["recipe_version"] == recipe.RECIPE_VERSION
    assert all(v["modes"] and v["io"] in ("float32", "int8", "uint8") for v in r["variants"])
    shown, _ = recipe.parse(recipe.dump(r), "shown")
    recipe.validate(shown, {}, "shown")  # what --show prints is itself a valid recipe
    assert recipe.with_defaults(shown) == {k: v for k, v in r.items() if not k.startswith("_")}


def test_the_shipped_zoo_has_what_the_readme_names():
    assert {"resnet20-digits", "resnet56-digits-compact"} <= set(recipe.shipped())
    assert recipe.load(None)["name"] == recipe.DEFAULT


def test_defaults_are_filled_in_everywhere(tmp_path):
    r = recipe.load(write(tmp_path, GOOD.replace("    modes: [float32]\n", "    optimize:\n      qat: {}\n")))
    assert r["train"]["epochs"] == 15 and r["train"]["lr"] == 0.1 and r["data"] == "digits"
    assert r["variants"][0]["optimize"]["qat"] == {"epochs": 2, "batch_size": 128, "scheme": "default"}
    assert r["variants"][0]["modes"] == ["int8"] and r["validate"]["targets"] == [{"target": "local", "threads": None,
                                                                                     "accelerator": None}]


@pytest.mark.parametrize("text, expected", [
    (GOOD + "    modez: [int8]\n", "r.yaml:7: variants[0].modez: unknown key; allowed here:"),
    (GOOD + "train:\n  epochs: many\n", 'r.yaml:8: train.epochs: "many" is not allowed: a whole number >= 1'),
    (GOOD.replace("[float32]", "[int9]"), 'r.yaml:6: variants[0].modes[0]: "int9" is not allowed: one of float32'),
    (GOOD + "gates:\n  latency: {target: local, p50: 3}\n", "r.yaml:8: gates.latency.p50: unknown key"),
    (GOOD + "    optimize:\n      channels: {keep: 1.5}\n", "variants[0].optimize.channels.keep: 1.5 is not allowed"),
    (GOOD.replace("  name: resnet20\n", "  name: resnet20\n  keep: 0\n"), "model.keep: 0 is not allowed"),
    (GOOD.replace("  name: resnet20\n", "  name: resnet20\n  stream: [0.5, 2]\n"), "model.stream"),
    (GOOD.replace("name: tiny\n", ""), "r.yaml:1: name: is missing (required)"),
    (GOOD + "  - name: float\n", "variants[1].name: 'float' is given twice"),
    (GOOD + "    io: uint8\n", "variants[0].io: sets the int8 model's input/output type"),
    (GOOD.replace("  name: resnet20\n", "  plain: true\n"), "model: give model.name"),
    (GOOD + "name: again\n", "r.yaml:7: name is given twice"),
    (GOOD + "train:\n  lr: .nan\n", "train.lr: NaN is not a value"),
    ("a: &a [x, x]\nb: [*a, *a]\n", "r.yaml:1: anchors and aliases (& and *) are not allowed"),
    ("name: !!python/object/apply:os.system [echo hi]\n", "r.yaml:1: the tag 'tag:yaml.org,2002:python/object/apply"),
    ("name: !custom x\n", "the tag '!custom' is not allowed"),
    ("name: [unclosed\n", "r.yaml:2: not valid YAML"),
    ("- just\n- a list\n", "r.yaml:1: a recipe is a mapping of keys"),
    ("", "r.yaml:1: the recipe is empty"),
    ("x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 20)), "too large or too deeply nested"),
])
def test_a_bad_recipe_is_one_line_naming_key_and_line(tmp_path, text, expected):
    with pytest.raises(recipe.RecipeError) as e:
        recipe.load(write(tmp_path, text))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_bombs_and_bytes_are_refused_before_they_cost(tmp_path):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                                                  for p, c in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(recipe.RecipeError, match="anchors and aliases"):
        recipe.load(write(tmp_path, bomb))
    with pytest.raises(recipe.RecipeError, match=r"r.yaml:2: the recipe is not UTF-8"):
        recipe.load(write(tmp_path, b"name: ok\nmodel: \xff\xfe\n"))
    with pytest.raises(recipe.RecipeError, match="larger than 256 kB"):
        recipe.load(write(tmp_path, "# " + "x" * (300 << 10) + "\n"))
    with pytest.raises(recipe.RecipeError, match="cannot read the recipe"):
        recipe.load(tmp_path / "missing.yaml")
    with pytest.raises(recipe.RecipeError, match="no recipe .nosuch.: give a .yaml file or one of .*resnet20-digits"):
        recipe.load("nosuch")


@pytest.mark.parametrize("assignment, expected", [
    ("train.epochs=zero", '--set train.epochs: "zero" is not allowed'),
    ("gates.nope=1", "--set gates.nope: unknown key"),
    ("variants.3.name=x", "--set variants.3.name: variants[3] is not in the recipe"),
    ("variants.0.optimize={qat: {epochs: -1}}", "--set variants[0].optimize.qat.epochs: -1 is not allowed"),
    ("epochs", "write key.sub=value"),
])
def test_set_is_checked_as_the_file_is(tmp_path, assignment, expected):
    with pytest.raises(recipe.RecipeError) as e:
        recipe.load(write(tmp_path, GOOD), (assignment,))
    assert expected in str(e.value)


def test_set_overrides_any_value(tmp_path):
    r = recipe.load(write(tmp_path, GOOD), ("train.epochs=3", "variants.0.modes=[float16, int8]", "data=digits"))
    assert r["train"]["epochs"] == 3 and r["variants"][0]["modes"] == ["float16", "int8"]
    assert r["_source"]["train_given"] == ["epochs"]


def test_run_show_and_errors_from_the_command_line(tmp_path):
    shown = CliRunner().invoke(cli, ["run", "--show", "--set", "train.epochs=4"])
    assert shown.exit_code == 0 and "epochs: 4" in shown.output and "recipe_version: 1" in shown.output
    bad = CliRunner().invoke(cli, ["run", str(write(tmp_path, GOOD + "    modez: [int8]\n")), "--show"])
    assert bad.exit_code == 1 and "r.yaml:7: variants[0].modez: unknown key" in bad.output
    assert "Traceback" not in bad.output
