"""Read a ``.tflite`` flatbuffer without TensorFlow, with LiteRT's generated schema module.

:func:`read` checks the file before anything else touches it and returns LiteRT's object-API
``ModelT``. A file from elsewhere is hostile until proven otherwise, so the checks cover every index
and size that the readers here (and a runtime) use: the ``TFL3`` identifier, buffers inside the file,
tensor, buffer, opcode and subgraph indices in range, constant data of the size its shape and type
say, shapes without negative sides, no tensor larger than :data:`MAX_TENSOR_BYTES`, and the constants
from which a runtime computes output shapes (``PAD`` paddings, ``RESHAPE`` shapes, ``TILE`` multiples,
...) within the same bound, so that one flipped bit cannot make a runtime allocate gigabytes. A
runtime is never given a file that failed these checks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from resnet_edge.errors import MissingDependencyError, ResnetEdgeError
from resnet_edge.ui import safe_text

FILE_IDENTIFIER = b"TFL3"
#: Flatbuffers address at most 2 GB; a bigger .tflite keeps its weights outside, which we do not read.
MAX_MODEL_BYTES = 2 << 30
#: The biggest tensor a model may declare or make a runtime compute (an image classifier's largest
#: activation at 224x224, batch 1, is a few MB).
MAX_TENSOR_BYTES = 1 << 30

#: Bytes per element of each TensorType (schema enum value -> size); 0.5 for packed 4-bit.
ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2, 17: 0.5,
                 18: 2}


class InvalidModelError(ResnetEdgeError):
    """A file that is not a readable TFLite model."""


def schema():
    """LiteRT's generated flatbuffer schema (``ai_edge_litert.schema_py_generated``)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise MissingDependencyError("reading .tflite files needs ai-edge-litert: pip install ai-edge-litert") from None
    return schema_py_generated


def load_bytes(path: str | os.PathLike, limit: int = MAX_MODEL_BYTES, what: str = "model file",
               give: str = "a .tflite file") -> bytes:
    """The bytes of a model file (``what``, e.g. "labels file"): a regular file of at most ``limit`` bytes
    (:func:`resnet_edge.io.read_regular`); anything else is :class:`InvalidModelError`, saying to ``give``
    something else."""
    from resnet_edge.io import read_regular

    return read_regular(path, limit, what, give, InvalidModelError)


def pack(m, size: int = 0) -> bytes:
    """A ``ModelT`` (as :func:`read` gives it, changed or not) written back as a ``.tflite`` flatbuffer;
    ``size``: the bytes expected (the builder starts that large instead of growing to it)."""
    import flatbuffers

    builder = flatbuffers.Builder(size + 4096)
    builder.Finish(m.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


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
    try:
        _check(m, data, label)
    except InvalidModelError:
        raise
    except Exception as exc:  # a field of an unexpected type: damaged all the same
        raise InvalidModelError(f"{label} is damaged: {type(exc).__name__} while checking its structure") from None
    return m, bytes(data)


def _show(values: list) -> str:
    """A list from a file, bounded for a message: at most 8 values."""
    return "[" + ", ".join(map(str, values[:8])) + (", ...]" if len(values) > 8 else "]")


def _damaged(label: str, what: str) -> InvalidModelError:
    return InvalidModelError(f"{label} is damaged: {what}; convert or copy it again")


def _ints(v) -> list[int]:
    return [] if v is None else [int(i) for i in v]


def elements(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _check(m, data: bytes, label: str) -> None:
    if not m.subgraphs:
        raise InvalidModelError(f"{label} has no subgraph")
    buffers = m.buffers or []
    codes = m.operatorCodes or []
    for b in buffers:
        if b.offset and (b.offset + b.size > len(data)):
            raise InvalidModelError(f"{label} is truncated: a weight buffer lies beyond the end of the file")
    for md in m.metadata or []:
        if not 0 <= md.buffer < len(buffers):
            raise _damaged(label, f"a metadata entry points at buffer {md.buffer} of {len(buffers)}")
    for sd in m.signatureDefs or []:
        if not 0 <= sd.subgraphIndex < len(m.subgraphs):
            raise _damaged(label, "a signature points at a missing subgraph")
        n = len(m.subgraphs[sd.subgraphIndex].tensors or [])
        for t in list(sd.inputs or []) + list(sd.outputs or []):
            if not 0 <= t.tensorIndex < n:
                raise _damaged(label, "a signature points at a missing tensor")
    for g in m.subgraphs:
        tensors = g.tensors or []
        n = len(tensors)
        for t in tensors:
            _check_tensor(t, buffers, data, label)
        for i in _ints(g.inputs) + _ints(g.outputs):
            if not 0 <= i < n:
                raise _damaged(label, f"a subgraph input or output refers to tensor {i} of {n}")
        for op in g.operators or []:
            if not 0 <= op.opcodeIndex < len(codes):
                raise _damaged(label, "an operator has an unknown opcode")
            for i in _ints(op.inputs) + _ints(op.outputs) + _ints(op.intermediates):
                if not -1 <= i < n:
                    raise _damaged(label, "an operator refers to a missing tensor")
            _check_shape_constants(m, g, op, data, label)


def _check_tensor(t, buffers, data: bytes, label: str) -> None:
    if not 0 <= t.buffer < len(buffers):
        raise _damaged(label, "a tensor points at a missing buffer")
    shape = _ints(t.shape)
    if any(d < 0 for d in shape):
        raise _damaged(label, f"a tensor has a negative side {_show(shape)}")
    size = ELEMENT_BYTES.get(t.type)
    count = elements(shape)
    if size is not None and count * size > MAX_TENSOR_BYTES:
        raise _damaged(label, f"a tensor of shape {_show(shape)} would take {count * size:,} bytes (limit {MAX_TENSOR_BYTES:,})")
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) > 1:
        if q.zeroPoint is not None and len(q.zeroPoint) not in (1, len(q.scale)):
            raise _damaged(label, "a tensor has per-channel scales and zero points of different lengths")
        if not 0 <= q.quantizedDimension < max(1, len(shape)) or (shape and shape[q.quantizedDimension] != len(q.scale)):
            raise _damaged(label, "a tensor's per-channel quantization does not match its shape")
    b = buffers[t.buffer]
    have = len(b.data) if b.data is not None else (b.size if b.offset else 0)
    if have and size is not None and t.sparsity is None and have != math.ceil(count * size):
        raise _damaged(label, f"a constant tensor of shape {_show(shape)} holds {have:,} bytes instead of {math.ceil(count * size):,}")


#: Ops whose output shape a runtime computes from a constant input: op -> index of that input.
SHAPE_INPUTS = {"PAD": 1, "PADV2": 1, "MIRROR_PAD": 1, "RESHAPE": 1, "TILE": 1, "BROADCAST_TO": 1, "FILL": 0,
                "RESIZE_BILINEAR": 1, "RESIZE_NEAREST_NEIGHBOR": 1}


def _check_shape_constants(m, g, op, data: bytes, label: str) -> None:
    """A constant from which a runtime computes an output shape must keep that output within
    :data:`MAX_TENSOR_BYTES` (one flipped bit in a PAD's paddings once asked for gigabytes)."""
    name = op_name(m, op.opcodeIndex)
    k = SHAPE_INPUTS.get(name)
    inputs = _ints(op.inputs)
    if k is None or len(inputs) <= k or inputs[k] < 0:
        return
    values = buffer_array(m, data, g.tensors[inputs[k]])
    if values is None or values.dtype.kind not in "iu":
        return
    v = values.astype(np.int64).ravel()
    src = _ints(g.tensors[inputs[0]].shape) if inputs[0] >= 0 else []
    if name in ("PAD", "PADV2", "MIRROR_PAD"):
        if (v < 0).any() or len(v) != 2 * len(src):
            raise _damaged(label, f"{name} has invalid paddings {_show(v.tolist())}")
        shape = [d + int(v[2 * i]) + int(v[2 * i + 1]) for i, d in enumerate(src)]
    elif name == "TILE":
        if (v < 0).any() or len(v) != len(src):
            raise _damaged(label, f"TILE has invalid multiples {_show(v.tolist())}")
        shape = [d * int(x) for d, x in zip(src, v)]
    elif name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        if (v <= 0).any() or len(v) != 2 or len(src) != 4:
            raise _damaged(label, f"{name} has an invalid size {_show(v.tolist())}")
        shape = [src[0], int(v[0]), int(v[1]), src[3]]
    else:  # RESHAPE, BROADCAST_TO, FILL: the constant is the output shape (-1 once, for RESHAPE)
        if (v < -1).any():
            raise _damaged(label, f"{name} has an invalid shape {_show(v.tolist())}")
        shape = [max(int(x), 1) for x in v]
    if elements(shape) * 4 > MAX_TENSOR_BYTES:
        raise _damaged(label, f"{name} would make a tensor of shape {_show(shape)} ({elements(shape) * 4:,} bytes)")


_OP_NAMES: dict[int, str] | None = None
_TYPE_NAMES: dict[int, str] | None = None


def op_name(m, opcode_index: int) -> str:
    global _OP_NAMES
    if _OP_NAMES is None:
        _OP_NAMES = {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}
    code = m.operatorCodes[opcode_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema().BuiltinOperator.CUSTOM:
        return safe_text(code.customCode or b"CUSTOM", 64)  # text from the file: escaped and bounded
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
    """The constant data of ``tensor`` as a numpy array (None if it has none, or if its type has no
    fixed element size)."""
    buf = m.buffers[tensor.buffer]
    raw = None
    if buf.data is not None and len(buf.data):
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
    elif buf.offset and buf.size:
        raw = data[buf.offset:buf.offset + buf.size]
    if raw is None:
        return None
    dtype = NUMPY.get(type_name(tensor.type))
    if dtype is None or len(raw) % np.dtype(dtype).itemsize:
        return None
    arr = np.frombuffer(raw, dtype=dtype)
    shape = _ints(tensor.shape) or [arr.size]
    return arr.reshape(shape) if elements(shape) == arr.size else arr


WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def weights(m, data: bytes) -> list[Weight]:
    """The filter tensors of every convolution and fully connected op."""
    out = []
    g = m.subgraphs[0]
    for op in g.operators or []:
        name = op_name(m, op.opcodeIndex)
        inputs = _ints(op.inputs)
        if name in WEIGHT_OPS and len(inputs) > 1 and inputs[1] >= 0:
            t = g.tensors[inputs[1]]
            values = buffer_array(m, data, t)
            if values is not None:
                out.append(Weight(name, safe_text(t.name or b""), type_name(t.type), values))
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
