"""Recipes: the model zoo as small declarative files (``models/*.yaml``), read safely and checked before
anything runs.

A recipe names the model (a registry name, or depth/family/shortcut; ``weights:`` for a pretrained start), the
data, the training (the paper's recipe, every value overridable; transfer settings), the variants to make (each:
an optimization or none, then its conversion modes, ``io`` and calibration), where to validate them (targets
with threads and accelerators) and the gates (accuracy drop against the float model, a minimum top-1, a p50/p90
latency budget on a named target, a maximum file size). :data:`SCHEMA` says every key, its type, range and
default; ``recipe_version`` lets later versions read older recipes.

A recipe is a file from elsewhere. It is read as bytes (at most :data:`MAX_BYTES`, UTF-8), parsed with PyYAML's
safe scanner into nodes, with anchors and aliases refused (no "billion laughs"), no tags but YAML's own plain
scalars, at most :data:`MAX_NODES` nodes and :data:`MAX_DEPTH` levels; the values are built here, never by a
constructor that could run code. It is then validated with ``jsonschema`` against :data:`SCHEMA`: a wrong key, type
or value is one line, ``FILE:LINE: KEY: what is wrong (what is allowed)``. ``--set key.sub=value`` overrides a value
(the value read as a YAML scalar or flow list), checked the same way. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from resnet_edge.errors import ConfigError

RECIPE_VERSION = 1
MAX_BYTES = 256 << 10
MAX_NODES = 20_000
MAX_DEPTH = 16
#: Where the shipped recipes live, and the one ``resnet-edge run`` runs without an argument.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT = "resnet20-digits"

MODES = ["float32", "float16", "dynamic", "int8", "int16x8"]
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_POS = {"type": "number", "exclusiveMinimum": 0}
_EPOCHS0 = {"type": "integer", "minimum": 0, "maximum": 100_000}
_OPT_COMMON = {"epochs": {**_EPOCHS0, "default": 2}, "lr": {**_POS, "maximum": 100},
               "batch_size": {"type": "integer", "minimum": 1, "maximum": 65_536, "default": 128}}


#: A keep ratio in (0, 1], or one per stage.
_RATIOS = {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                     {"type": "array", "minItems": 1, "maxItems": 8,
                      "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}]}


def _obj(properties: dict, required: tuple = (), **extra) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required),
            **extra}


#: The recipe's schema (JSON Schema, draft 2020-12). ``default`` values are what ``run --show`` fills in.
SCHEMA = _obj({
    "recipe_version": {"const": RECIPE_VERSION, "default": RECIPE_VERSION,
                       "description": "the recipe format; later versions read older ones"},
    "name": {**_NAME, "description": "the run's name (its folder under runs/ by default)"},
    "description": {"type": "string", "maxLength": 2000, "default": ""},
    "model": _obj({
        "name": {**_NAME, "description": "a registry name (resnet-edge models)"},
        "depth": {"type": "integer", "minimum": 1, "maximum": 10_000},
        "family": {"enum": ["imagenet", "cifar"]},
        "plain": {"type": "boolean", "default": False},
        "shortcut": {"enum": ["A", "B", "C"]},
        "input_size": {"type": "integer", "minimum": 8, "maximum": 8192},
        "keep": {**_RATIOS, "description": "build the network thin, trained as it is: the share of each block's inner "
                                           "channels (one ratio, or one per stage; what resnet-edge search returns)"},
        "stream": {**_RATIOS, "description": "build the network with each stage's residual stream this share of its "
                                             "width (one ratio, or one per stage)"},
    }, default={}),
    "search": {"type": ["string", "null"], "minLength": 1, "maxLength": 4096, "default": None,
               "description": "the search.json of the resnet-edge search this model won: the report shows its history"},
    "weights": {"type": ["string", "null"], "minLength": 1, "maxLength": 4096, "default": None,
                "description": "a weights file, or imagenet: start from published ImageNet weights"},
    "data": {"type": "string", "minLength": 1, "maxLength": 4096, "default": "digits",
             "description": "digits | cifar10:DIR | folder:DIR"},
    "train": _obj({
        "epochs": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 15},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 65_536, "default": 128},
        "lr": {**_POS, "maximum": 100, "default": 0.1},
        "momentum": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.9},
        "weight_decay": {"type": "number", "minimum": 0, "maximum": 1, "default": 1e-4},
        "lr_boundaries": {"type": ["array", "null"], "items": {"type": "number", "exclusiveMinimum": 0,
                                                               "exclusiveMaximum": 1}, "maxItems": 16, "default": None},
        "warmup": {"anyOf": [{"enum": ["auto", "off"]}, {"type": "integer", "minimum": 0}], "default": "auto"},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "default": 0},
        "limit": {"type": ["integer", "null"], "minimum": 1, "default": None},
        "checkpoint_every": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1},
        "freeze": {"type": ["string", "null"], "pattern": r"^(backbone|none|stages:[0-4])$", "default": None},
        "head_epochs": {"type": ["integer", "null"], "minimum": 0, "default": None},
        "fine_tune_lr": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None},
    }, default={}),
    "variants": {"type": "array", "minItems": 1, "maxItems": 32, "items": _obj({
        "name": _NAME,
        "optimize": {"oneOf": [
            {"type": "null"},
            _obj({"qat": _obj({**_OPT_COMMON, "scheme": {"enum": ["default", "pqat"], "default": "default"}},
                              default={})}, ("qat",)),
            _obj({"prune": _obj({**_OPT_COMMON, "sparsity": {"type": "number", "exclusiveMinimum": 0,
                                                              "exclusiveMaximum": 1, "default": 0.5},
                                 "structure": {"type": ["string", "null"], "pattern": r"^[1-9][0-9]?:[1-9][0-9]?$",
                                               "default": None},
                                 "skip": {"type": "string", "maxLength": 1000, "default": ""},
                                 "pqat": {"type": "boolean", "default": False},
                                 "clusters": {"type": ["integer", "null"], "minimum": 2, "maximum": 65_536,
                                              "default": None}}, default={})}, ("prune",)),
            _obj({"channels": _obj({**_OPT_COMMON,
                                    "keep": {**_RATIOS, "description": "the share of each block's inner channels "
                                                                       "kept: one ratio, or one per stage"},
                                    "stream": {**_RATIOS, "default": 1,
                                               "description": "the share of each stage's residual-stream channels "
                                                              "kept (its blocks' outputs, its projection): one ratio, "
                                                              "or one per stage"},
                                    "criterion": {"enum": ["l1", "bn"], "default": "l1"}}, ("keep",))},
                 ("channels",)),
        ], "default": None},
        "modes": {"type": "array", "minItems": 1, "maxItems": 5, "uniqueItems": True, "items": {"enum": MODES},
                  "default": ["int8"]},
        "io": {"enum": ["float32", "int8", "uint8"], "default": "float32"},
        "calibration": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 100},
        "input_size": {"type": ["integer", "null"], "minimum": 8, "maximum": 8192, "default": None,
                       "description": "a resolution of its own (the search varies it); null: the model's"},
        "runtime": {"enum": ["litert", "tflite-runtime", "openvino"], "default": "litert"},
    }, ("name",))},
    "validate": _obj({
        "split": {"enum": ["test", "val", "train"], "default": "test"},
        "limit": {"type": ["integer", "null"], "minimum": 1, "default": None},
        "runs": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 50},
        "warmup": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 5},
        "targets": {"type": "array", "minItems": 1, "maxItems": 16, "items": _obj({
            "target": {"type": "string", "minLength": 1, "maxLength": 300,
                       "description": "local, ssh://..., adb://... or a saved device's name"},
            "threads": {"type": ["array", "null"], "minItems": 1, "maxItems": 8,
                        "items": {"type": "integer", "minimum": 1, "maximum": 256}, "default": None},
            "accelerator": {"enum": [None, "cpu", "gpu"], "default": None},
        }, ("target",)), "default": [{"target": "local"}]},
        "layer_errors": {"type": "boolean", "default": True,
                         "description": "per-layer int8 error of each calibrated int8 variant (the report's table)"},
        "layer_error_images": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 32},
        "stage_latency": {"type": "boolean", "default": True,
                          "description": "latency per stage (stem, each residual stage, head) of the chosen "
                                         "variant against float32 on every target"},
    }, default={}),
    "gates": _obj({
        "max_drop": {"type": ["number", "null"], "minimum": 0, "maximum": 100, "default": None,
                     "description": "top-1 points below the float Keras model"},
        "min_top1": {"type": ["number", "null"], "minimum": 0, "maximum": 100, "default": None,
                     "description": "percent"},
        "latency": {"oneOf": [{"type": "null"}, _obj({
            "target": {"type": "string", "minLength": 1, "maxLength": 300, "default": "local"},
            "p50_ms": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None},
            "p90_ms": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None},
        })], "default": None},
        "max_bytes": {"type": ["integer", "null"], "minimum": 1, "default": None},
    }, default={}),
}, ("name", "variants"))


#: The line recorded for a value that --set gave.
SET = -1


class RecipeError(ConfigError):
    """A recipe that cannot be read or is not valid: one line, its file and line, the key and what is allowed."""


def _yaml():
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is in the host extra
        raise ConfigError("reading a recipe needs PyYAML: pip install pyyaml (or 'resnet-edge[host]')") from None
    return yaml


_PLAIN_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
               "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}


def parse(text: str, where: str) -> tuple[object, dict[tuple, int]]:
    """YAML ``text`` -> plain values (dicts, lists, str, int, float, bool, None) and the line of every key path.
    Anchors, aliases, tags and anything but plain scalars are refused, in one line naming the line."""
    yaml = _yaml()

    def line_of(mark) -> int:
        return mark.line + 1 if mark is not None else 0

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise RecipeError(f"{where}:{line_of(event.start_mark)}: anchors and aliases (& and *) are not "
                                  "allowed in a recipe: write the value out")
            if getattr(event, "tag", None) and not (isinstance(event, yaml.ScalarEvent) and event.implicit[0]) \
                    and event.tag not in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", *_PLAIN_TAGS):
                raise RecipeError(f"{where}:{line_of(event.start_mark)}: the tag {event.tag!r} is not allowed in a "
                                  "recipe: plain values, lists and mappings only")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{where}:{line_of(mark)}: not valid YAML ({problem})") from None
    if node is None:
        raise RecipeError(f"{where}:1: the recipe is empty")
    lines: dict[tuple, int] = {}
    count = [0]
    constructor = yaml.constructor.SafeConstructor()

    def build(n, path: tuple, depth: int):
        count[0] += 1
        if count[0] > MAX_NODES or depth > MAX_DEPTH:
            raise RecipeError(f"{where}:{line_of(n.start_mark)}: the recipe is too large or too deeply nested "
                              f"(at most {MAX_NODES} values, {MAX_DEPTH} levels)")
        lines.setdefault(path, line_of(n.start_mark))
        if isinstance(n, yaml.MappingNode):
            out = {}
            for k, v in n.value:
                if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                    raise RecipeError(f"{where}:{line_of(k.start_mark)}: a key must be a plain word")
                if k.value in out:
                    raise RecipeError(f"{where}:{line_of(k.start_mark)}: {_dotted(path + (k.value,))} is given twice")
                lines[path + (k.value,)] = line_of(k.start_mark)
                out[k.value] = build(v, path + (k.value,), depth + 1)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(v, path + (i,), depth + 1) for i, v in enumerate(n.value)]
        if n.tag not in _PLAIN_TAGS:
            raise RecipeError(f"{where}:{line_of(n.start_mark)}: the tag {n.tag!r} is not allowed in a recipe")
        value = constructor.construct_object(n)
        if isinstance(value, float) and value != value:  # .nan: no key takes it
            raise RecipeError(f"{where}:{line_of(n.start_mark)}: {_dotted(path)}: NaN is not a value")
        return value

    return build(node, (), 0), lines


def _line(lines: dict[tuple, int], path: tuple) -> int:
    """The line of ``path``, or of the nearest key above it that has one (a value --set gave: :data:`SET`)."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 0)


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(the recipe)"


def _allowed(schema: dict) -> str:
    if "enum" in schema:
        return "one of " + ", ".join("null" if v is None else str(v) for v in schema["enum"])
    if "const" in schema:
        return f"{schema['const']}"
    kinds = schema.get("type")
    if kinds:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        text = " or ".join("a whole number" if k == "integer" else "a number" if k == "number" else
                           "a list" if k == "array" else "a mapping" if k == "object" else k for k in kinds)
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if lo is not None or hi is not None:
            text += (f" {'>' if 'exclusiveMinimum' in schema else '>='} {lo}" if lo is not None else "") + \
                    (f"{',' if lo is not None else ''} {'<' if 'exclusiveMaximum' in schema else '<='} {hi}"
                     if hi is not None else "")
        if "pattern" in schema:
            text += f" matching {schema['pattern']}"
        return text
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(_allowed(s) for s in schema.get("anyOf") or schema.get("oneOf"))
    return "see models/README.md"


def validate(recipe, lines: dict[tuple, int], where: str) -> None:
    """Check ``recipe`` against :data:`SCHEMA`; the first problem (by line) as :class:`RecipeError`."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - in the host extra
        raise ConfigError("checking a recipe needs jsonschema: pip install jsonschema (or 'resnet-edge[host]')") from None
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = []
    for error in validator.iter_errors(recipe):
        for e in _leaves(error):
            path = tuple(e.absolute_path)
            if e.validator == "additionalProperties":
                known = sorted((e.schema.get("properties") or {}).keys())
                for key in sorted(set(e.instance) - set(known)):
                    problems.append((_line(lines, path + (key,)), _dotted(path + (key,)),
                                     f"unknown key; allowed here: {', '.join(known)}"))
                continue
            if e.validator == "required":
                missing = [k for k in e.validator_value if k not in (e.instance or {})]
                problems.append((_line(lines, path), _dotted(path + (missing[0],)) if missing else _dotted(path),
                                 "is missing (required)"))
                continue
            shown = json.dumps(e.instance)[:80]
            problems.append((_line(lines, path), _dotted(path), f"{shown} is not allowed: {_allowed(e.schema)}"))
    if problems:
        line, key, what = sorted(problems, key=lambda p: (p[0], p[1]))[0]
        raise RecipeError(f"--set {key}: {what}" if line == SET else f"{where}:{line}: {key}: {what}")
    _check_meaning(recipe, lines, where)


def _leaves(error):
    """The most specific errors under a oneOf/anyOf (its branches), else the error itself."""
    if error.context and error.validator in ("oneOf", "anyOf"):
        # The branch whose own errors lie deepest says most (a mapping with a bad value, not "null expected").
        best = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        return list(_leaves(best)) if best.context else [best]
    return [error]


def _check_meaning(recipe: dict, lines: dict[tuple, int], where: str) -> None:
    """What a schema cannot say: one model choice, variant names once each, an io type only with int8."""
    model = recipe.get("model") or {}
    if recipe.get("weights") is None and not model.get("name") and not model.get("depth"):
        raise RecipeError(f"{where}:{lines.get(('model',), 1)}: model: give model.name (resnet-edge models) or "
                          "model.depth, or weights: FILE")
    if model.get("name") and model.get("depth"):
        raise RecipeError(f"{where}:{lines.get(('model', 'depth'), 1)}: model.depth: give model.name or model.depth, "
                          "not both")
    seen = set()
    for i, v in enumerate(recipe["variants"]):
        if v["name"] in seen:
            raise RecipeError(f"{where}:{lines.get(('variants', i, 'name'), 1)}: variants[{i}].name: {v['name']!r} is "
                              "given twice; name each variant once")
        seen.add(v["name"])
        if v.get("io", "float32") != "float32" and "int8" not in v.get("modes", ["int8"]):
            raise RecipeError(f"{where}:{lines.get(('variants', i, 'io'), 1)}: variants[{i}].io: sets the int8 model's "
                              "input/output type: add int8 to its modes")


def with_defaults(value, schema: dict = SCHEMA):
    """``value`` with every default of ``schema`` filled in (a copy), as ``run --show`` prints it."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = with_defaults(value[key], _branch(sub, value[key]))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [with_defaults(v, schema["items"]) for v in value]
    return value


def _branch(schema: dict, value) -> dict:
    """The alternative of a oneOf/anyOf that ``value`` is (mappings: the one naming its keys)."""
    for alt in schema.get("oneOf") or schema.get("anyOf") or []:
        if alt.get("type") == "object" and isinstance(value, dict) and set(value) <= set(alt.get("properties", {})):
            return alt
    return schema


def _override(recipe: dict, lines: dict, assignment: str, where: str) -> None:
    """``key.sub=value`` (a list index as a number: ``variants.0.modes=[int8]``) set in ``recipe``."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {assignment!r}: write key.sub=value (e.g. train.epochs=3)")
    value, _ = parse(text if text.strip() else "null", f"--set {key}")
    path = tuple(int(p) if p.isdigit() else p for p in key.strip().split("."))
    node = recipe
    for i, p in enumerate(path[:-1]):
        if isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        elif isinstance(node, dict) and isinstance(p, str):
            node = node.setdefault(p, {})
        else:
            raise RecipeError(f"--set {key}: {_dotted(path[:i + 1])} is not in the recipe")
        if not isinstance(node, (dict, list)):
            raise RecipeError(f"--set {key}: {_dotted(path[:i + 1])} holds a value, not keys")
    last = path[-1]
    if isinstance(node, list) and not (isinstance(last, int) and last < len(node)):
        raise RecipeError(f"--set {key}: {_dotted(path)} is not in the recipe")
    node[last] = value
    for known in [k for k in lines if k[:len(path)] == path]:
        del lines[known]
    lines[path] = SET  # said as "--set KEY" rather than a line of the file


def load(source: str | Path | None = None, overrides: tuple[str, ...] = ()) -> dict:
    """The recipe at ``source`` (a path, a shipped recipe's name such as ``resnet20-digits``, or None for the
    default) with ``overrides`` (``key.sub=value``) applied, validated, every default filled in."""
    path = _find(source)
    where = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RecipeError(f"cannot read the recipe {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise RecipeError(f"{where}: the recipe is larger than {MAX_BYTES >> 10} kB: refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise RecipeError(f"{where}:{line}: the recipe is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    recipe, lines = parse(text, where)
    if not isinstance(recipe, dict):
        raise RecipeError(f"{where}:1: a recipe is a mapping of keys (name:, model:, variants:, ...)")
    for assignment in overrides:
        _override(recipe, lines, assignment, where)
    validate(recipe, lines, where)
    out = with_defaults(recipe)
    given = sorted(k for k in (recipe.get("train") or {}) if isinstance(recipe.get("train"), dict))
    out["_source"] = {"path": str(path), "overrides": list(overrides), "train_given": given}
    return out


def _find(source) -> Path:
    if source is None:
        return MODELS_DIR / f"{DEFAULT}.yaml"
    path = Path(source)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in str(source):
        return path
    shipped = MODELS_DIR / f"{source}.yaml"
    if shipped.exists():
        return shipped
    names = sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))
    raise RecipeError(f"no recipe {source!r}: give a .yaml file or one of {', '.join(names)}")


def shipped() -> list[str]:
    """The recipes in ``models/``, by name."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))


def learns_ranges(variant: dict) -> bool:
    """Whether a variant's optimization is quantization-aware (QAT, or pruning with PQAT): its int8 ranges are
    learned, not calibrated, and its model is written as ``.h5`` (tfmot's layers)."""
    opt = variant.get("optimize") or {}
    return "qat" in opt or bool((opt.get("prune") or {}).get("pqat"))


def model_file(variant: dict) -> str:
    """Where, in a run folder, the Keras model a variant's ``.tflite`` files are converted from lives."""
    if not variant.get("optimize"):
        return "train/model.keras"
    return f"variants/{variant['name']}/optimize/model.{'h5' if learns_ranges(variant) else 'keras'}"


def dump(recipe: dict) -> str:
    """The resolved recipe as YAML (``run --show``), without the ``_source`` note."""
    yaml = _yaml()
    shown = {k: v for k, v in recipe.items() if not k.startswith("_")}
    return yaml.safe_dump(shown, sort_keys=False, default_flow_style=None, width=100)
