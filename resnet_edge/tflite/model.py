"""Read a ``.tflite`` flatbuffer without TensorFlow, with LiteRT's generated schema module.

:func:`read` checks the file before anything else touches it (size, the ``TFL3`` identifier, that the
flatbuffer's tables and buffers lie inside the file) and returns LiteRT's object-API ``ModelT``. A
runtime is never given a file that failed these checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_edge.errors import MissingDependencyError, ResnetEdgeError

FILE_IDENTIFIER = b"TFL3"


class InvalidModelError(ResnetEdgeError):
    """A file that is not a readable TFLite model."""


def schema():
    """LiteRT's generated flatbuffer schema (``ai_edge_litert.schema_py_generated``)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise MissingDependencyError("reading .tflite files needs ai-edge-litert: pip install ai-edge-litert") from None
    return schema_py_generated


def load_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.exists():
        raise InvalidModelError(f"model file not found: {path}")
    if path.is_dir():
        raise InvalidModelError(f"{path} is a directory; give a .tflite file")
    return path.read_bytes()


def read(model: bytes | str | os.PathLike, name: str | None = None):
    """Verify and parse a model; return ``(ModelT, bytes)``. Raises :class:`InvalidModelError`."""
    data = model if isinstance(model, (bytes, bytearray)) else load_bytes(model)
    label = name or (str(model) if not isinstance(model, (bytes, bytearray)) else "the model")
    if len(data) < 16:
        raise InvalidModelError(f"{label} is not a TFLite model: only {len(data)} bytes")
    if data[4:8] != FILE_IDENTIFIER:
        raise InvalidModelError(f"{label} is not a TFLite model (no 'TFL3' flatbuffer identifier); was it truncated or is it another format?")
    root = int.from_bytes(data[0:4], "little")
    if root >= len(data):
        raise InvalidModelError(f"{label} is truncated: its root table lies beyond the end of the file")
    s = schema()
    try:
        m = s.ModelT.InitFromPackedBuf(bytes(data), 0)
    except Exception:  # the generated code raises IndexError/struct.error/... on a damaged buffer
        raise InvalidModelError(f"{label} is truncated or damaged: its flatbuffer cannot be parsed; convert or copy it again") from None
    _check(m, data, label)
    return m, bytes(data)


def _check(m, data: bytes, label: str) -> None:
    if not m.subgraphs:
        raise InvalidModelError(f"{label} has no subgraph")
    buffers = m.buffers or []
    for b in buffers:
        if b.offset and (b.offset + b.size > len(data)):
            raise InvalidModelError(f"{label} is truncated: a weight buffer lies beyond the end of the file")
    for g in m.subgraphs:
        n = len(g.tensors or [])
        for t in g.tensors or []:
            if t.buffer >= len(buffers):
                raise InvalidModelError(f"{label} is damaged: a tensor points at a missing buffer")
        for op in g.operators or []:
            if op.opcodeIndex >= len(m.operatorCodes or []):
                raise InvalidModelError(f"{label} is damaged: an operator has an unknown opcode")
            for i in list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else []):
                if i >= n:
                    raise InvalidModelError(f"{label} is damaged: an operator refers to a missing tensor")


_OP_NAMES: dict[int, str] | None = None
_TYPE_NAMES: dict[int, str] | None = None


def op_name(m, opcode_index: int) -> str:
    global _OP_NAMES
    if _OP_NAMES is None:
        _OP_NAMES = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    code = m.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema().BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode(errors="replace")
    return _OP_NAMES.get(builtin, f"OP_{builtin}")


def type_name(t: int) -> str:
    global _TYPE_NAMES
    if _TYPE_NAMES is None:
        _TYPE_NAMES = {v: k.lower() for k, v in vars(schema().TensorType).items() if not k.startswith("_")}
    return _TYPE_NAMES.get(t, f"type{t}")


NUMPY = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
         "int32": np.int32, "int64": np.int64, "bool": np.bool_}


@dataclass
class Weight:
    op: str
    tensor: str
    dtype: str
    values: np.ndarray


def buffer_array(m, data: bytes, tensor) -> np.ndarray | None:
    """The constant data of ``tensor`` as a numpy array (None if it has none)."""
    buf = m.buffers[tensor.buffer]
    raw = None
    if buf.data is not None and len(buf.data):
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
    elif buf.offset and buf.size:
        raw = data[buf.offset:buf.offset + buf.size]
    if raw is None:
        return None
    dtype = NUMPY.get(type_name(tensor.type))
    if dtype is None:
        return None
    arr = np.frombuffer(raw, dtype=dtype)
    shape = list(tensor.shape) if tensor.shape is not None else [arr.size]
    return arr.reshape(shape) if int(np.prod(shape)) == arr.size else arr


WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def weights(m, data: bytes) -> list[Weight]:
    """The filter tensors of every convolution and fully connected op."""
    out = []
    g = m.subgraphs[0]
    for op in g.operators or []:
        name = op_name(m, op.opcodeIndex)
        if name in WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
            t = g.tensors[op.inputs[1]]
            values = buffer_array(m, data, t)
            if values is not None:
                out.append(Weight(name, (t.name or b"").decode(errors="replace"), type_name(t.type), values))
    return out


def weight_sparsity(model: bytes | str | os.PathLike) -> dict:
    """Share of exact zeros in the conv/FC filters of a ``.tflite`` (for int8 weights, quantized zero)."""
    m, data = read(model)
    ws = weights(m, data)
    total = sum(w.values.size for w in ws)
    zeros = sum(int((w.values == 0).sum()) for w in ws)
    return {
        "weights": int(total),
        "zeros": int(zeros),
        "sparsity": float(zeros / total) if total else 0.0,
        "dtypes": sorted({w.dtype for w in ws}),
        "per_op": [{"tensor": w.tensor, "op": w.op, "sparsity": float((w.values == 0).mean())} for w in ws],
    }
