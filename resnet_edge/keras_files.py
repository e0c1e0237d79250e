"""Keras model files from elsewhere are hostile until proven otherwise: find code in them before loading.

Loading a Keras model rebuilds it from its config, and some configs carry code that the rebuild runs:
a ``Lambda`` layer stores marshalled Python bytecode (tf_keras runs it from ``.h5`` files, where its
``safe_mode`` does not apply), ``TFOpLambda`` calls any TensorFlow function by name (``tf.io.write_file``
included), and the newer format's ``module`` field makes Keras import a module and take any name
from it (``builtins.eval``). :func:`check_model_file` reads the config of every format as plain JSON,
without deserializing anything, and refuses such entries, naming the layer; ``trust=True`` (the CLI's
``--trust``) skips it for a file the user knows.

Formats: ``.h5`` (the ``model_config`` and ``training_config`` attributes), ``.keras`` (``config.json``
in the zip, size-checked before reading) and SavedModel directories (the JSON of every node in
``keras_metadata.pb``; a SavedModel without it cannot be checked and is refused).

Host side, but no TensorFlow import: ``h5py`` and the protobuf of ``tf_keras`` are imported on demand.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Iterator

from resnet_edge.errors import ResnetEdgeError

#: Layers whose config is Python bytecode (tf_keras 2 and the newer format name it differently).
CODE_LAYERS = {"Lambda": "carries Python bytecode that loading would run",
               "__lambda__": "carries Python bytecode that loading would run"}
#: ``TFOpLambda`` calls ``tf.<function>`` by name; these API prefixes compute on tensors and nothing else.
SAFE_TF_FUNCTIONS = ("math.", "nn.", "__operators__.", "linalg.", "image.resize", "image.central_crop",
                     "image.flip_left_right",
                     "reshape", "concat", "transpose", "pad", "clip_by_value", "cast", "expand_dims", "squeeze",
                     "stack", "unstack", "split", "identity", "compat.v1.transpose", "compat.v1.gather",
                     "gather", "tile", "shape", "ones_like", "zeros_like", "where", "broadcast_to", "slice",
                     "strided_slice", "one_hot", "argmax", "argmin", "maximum", "minimum", "add", "multiply",
                     "subtract", "divide", "abs", "sqrt", "square", "exp", "sigmoid", "tanh", "reduce_mean",
                     "reduce_sum", "reduce_max", "reduce_min", "cumsum", "range", "eye", "fill", "sort")
#: Modules a config may name (the newer format's ``module`` field): Keras itself, tfmot, this toolkit.
SAFE_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization", "resnet_edge")
#: The biggest config we read (a ResNet-1202's config is about 2 MB).
MAX_CONFIG_BYTES = 64 << 20


class UnsafeModelError(ResnetEdgeError):
    """A model file whose config carries code that loading it would run."""


def _trust_hint(path: Path) -> str:
    return f"if you made {path.name} or trust whoever did, pass --trust to load it anyway"


def _is_safe_tf_function(name: str) -> bool:
    """Entries ending in "." are API prefixes; the others are exact names."""
    return any(name.startswith(p) if p.endswith(".") else name == p for p in SAFE_TF_FUNCTIONS)


def _keras_builtin_function(name: str) -> bool:
    """Whether ``name`` is one of Keras's own activations, losses, metrics, initializers, ...: what a
    ``builtins`` function reference may name (anything else would come from Python's builtins)."""
    from resnet_edge._tf import keras

    spaces = (keras.activations, keras.losses, keras.metrics, keras.initializers, keras.regularizers,
              keras.constraints, keras.optimizers)
    return any(callable(getattr(space, name, None)) for space in spaces)


def find_code(config, where: str = "") -> tuple[str, str] | None:
    """The first code-bearing entry of a Keras config: ``(layer or entry name, why)``, or None."""
    for node, layer in _walk(config, where):
        cls = node.get("class_name")
        if isinstance(cls, str) and cls in CODE_LAYERS:
            return layer, f"{cls}: {CODE_LAYERS[cls]}"
        if "function_type" in node:
            return layer, "a function stored as Python bytecode, which loading would run"
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            fn = (node.get("config") or {}).get("function") if isinstance(node.get("config"), dict) else None
            if not isinstance(fn, str) or not _is_safe_tf_function(fn):
                return layer, f"{cls} calling tf.{fn}, which is not a tensor computation this toolkit admits"
        module = node.get("module")
        if isinstance(module, str) and "class_name" in node:
            top = module.split(".")[0]
            if top == "builtins":
                name = node.get("config") if cls == "function" else cls
                if not (isinstance(name, str) and _keras_builtin_function(name)):
                    return layer, f"a reference to Python's builtins.{name}"
            elif top not in SAFE_MODULES:
                return layer, f"a reference to code in module {module!r} ({cls})"
    return None


def _walk(obj, layer: str) -> Iterator[tuple[dict, str]]:
    """Every dict in a config, with the name of the layer it belongs to (iteratively: configs are deep)."""
    stack = [(obj, layer)]
    while stack:
        node, name = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                cfg = node.get("config")
                inner = cfg.get("name") if isinstance(cfg, dict) else None
                name = str(node.get("name") or inner or name or node["class_name"])
            yield node, name
            stack.extend((v, name) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, name) for v in node)


def _json(text, path: Path, what: str):
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ResnetEdgeError(f"cannot read {path}: its {what} is not text; is it a Keras model file?")
    if len(text) > MAX_CONFIG_BYTES:
        raise ResnetEdgeError(f"refusing {path}: its {what} is {len(text):,} bytes (more than {MAX_CONFIG_BYTES >> 20} MB)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ResnetEdgeError(f"cannot read {path}: its {what} is not valid JSON; the file is damaged") from None


def configs(path: Path) -> Iterator[tuple[str, object]]:
    """``(what, parsed JSON)`` for every config a Keras model file holds, read without Keras."""
    if path.is_dir():
        meta = path / "keras_metadata.pb"
        if not meta.is_file():
            raise UnsafeModelError(f"refusing {path}: a SavedModel without keras_metadata.pb cannot be checked for "
                                   f"code before loading; {_trust_hint(path)}")
        if meta.stat().st_size > MAX_CONFIG_BYTES:
            raise ResnetEdgeError(f"refusing {path}: keras_metadata.pb is larger than {MAX_CONFIG_BYTES >> 20} MB")
        from tf_keras.protobuf import saved_metadata_pb2

        saved = saved_metadata_pb2.SavedMetadata()
        try:
            saved.ParseFromString(meta.read_bytes())
        except Exception:  # protobuf's DecodeError and friends
            raise ResnetEdgeError(f"cannot read {meta}: not a valid Keras metadata file; the SavedModel is damaged") from None
        for node in saved.nodes:
            yield f"keras_metadata.pb node {node.node_path}", _json(node.metadata, path, "keras_metadata.pb")
    elif zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                for name in ("config.json", "metadata.json"):
                    try:
                        info = z.getinfo(name)
                    except KeyError:
                        if name == "config.json":
                            raise ResnetEdgeError(f"cannot read {path}: no config.json inside; is it a .keras model?") from None
                        continue
                    if info.file_size > MAX_CONFIG_BYTES:
                        raise ResnetEdgeError(f"refusing {path}: its {name} is {info.file_size:,} bytes uncompressed")
                    with z.open(info) as fh:
                        yield name, _json(fh.read(MAX_CONFIG_BYTES + 1), path, name)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ResnetEdgeError(f"cannot read {path} as a .keras archive ({exc}); the file is damaged") from None
    else:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                found = False
                for key in ("model_config", "training_config"):
                    if key in f.attrs:
                        found = True
                        yield key, _json(f.attrs[key], path, key)
        except OSError:
            hint = ("; for a .tflite use `resnet-edge eval` (accuracy) or `resnet-edge bench` (latency)"
                    if str(path).lower().endswith(".tflite") else "; is it a .keras/.h5 file written by tf_keras?")
            raise ResnetEdgeError(f"cannot load {path} as a Keras model: it is neither a .keras archive nor an HDF5 "
                                  f"file{hint}") from None
        if not found:
            raise ResnetEdgeError(f"cannot load {path} as a Keras model: the HDF5 file holds no model config "
                                  "(weights only?); save the whole model with model.save()")


def check_path_kind(path: Path) -> None:
    """A model path must be a regular file (or a SavedModel directory): never a FIFO, device or socket,
    which would block or read without end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ResnetEdgeError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ResnetEdgeError(f"cannot open {path}: {exc.strerror or exc}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise ResnetEdgeError(f"{path} is not a regular file (a FIFO, device or socket); give a model file")


def check_model_file(path: str | os.PathLike, trust: bool = False) -> set[str]:
    """Refuse a Keras model file whose config carries code (see the module docstring), unless ``trust``.
    Returns the class names its config uses (empty when trusted: nothing was read).

    Raises :class:`UnsafeModelError` naming the layer, or :class:`ResnetEdgeError` for a file that is
    not a readable Keras model.
    """
    path = Path(path)
    check_path_kind(path)
    classes: set[str] = set()
    if trust:
        return classes
    for what, config in configs(path):
        hit = find_code(config)
        if hit:
            layer, why = hit
            shown = layer if len(layer) <= 80 else layer[:77] + "..."
            raise UnsafeModelError(f"refusing {path}: layer {shown!r} in its {what} is {why}; {_trust_hint(path)}")
        classes.update(node["class_name"] for node, _ in _walk(config, "") if isinstance(node.get("class_name"), str))
    return classes


def uses_tfmot(classes: set[str]) -> bool:
    """Whether a config needs tensorflow-model-optimization's objects to load (QAT, pruning wrappers)."""
    return any(c.startswith(("Quantize", "PruneLowMagnitude")) or c.endswith("QuantizeConfig") for c in classes)
