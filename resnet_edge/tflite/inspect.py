"""Everything a ``.tflite`` says about itself, without TensorFlow: ops, tensors, quantization, size,
sparsity, metadata, signatures, accelerator readiness."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from resnet_edge.tflite import metadata as md
from resnet_edge.tflite.model import buffer_array, op_name, read, type_name, weight_sparsity


def _quant(t) -> dict | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale = np.asarray(q.scale, dtype=np.float64)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.int64)
    if len(scale) == 1:
        return {"kind": "per-tensor", "scale": float(scale[0]), "zero_point": int(zero[0])}
    return {"kind": "per-channel", "axis": int(q.quantizedDimension), "channels": int(len(scale)),
            "scale_min": float(scale.min()), "scale_max": float(scale.max())}


def _io(g, index) -> dict:
    t = g.tensors[index]
    return {"name": (t.name or b"").decode(errors="replace"), "shape": [int(d) for d in (t.shape if t.shape is not None else [])],
            "dtype": type_name(t.type), "quantization": _quant(t)}


def inspect(model: bytes | str, targets: tuple[str, ...] = ("cpu", "gpu", "nnapi"), name: str | None = None) -> dict:
    """The full report as a dict (see :func:`resnet_edge.cli` ``inspect`` for the table)."""
    from resnet_edge.tflite.readiness import report

    m, data = read(model, name)
    g = m.subgraphs[0]
    ops = Counter(op_name(m, op.opcodeIndex) for op in g.operators or [])
    versions = {}
    for op in g.operators or []:
        n = op_name(m, op.opcodeIndex)
        versions[n] = max(versions.get(n, 0), int(m.operatorCodes[op.opcodeIndex].version))
    dtypes = Counter(type_name(t.type) for t in g.tensors)
    weight_bytes = 0
    per_channel = per_tensor = 0
    for t in g.tensors:
        arr = buffer_array(m, data, t)
        if arr is not None:
            weight_bytes += arr.nbytes
        q = _quant(t)
        if q:
            per_channel += q["kind"] == "per-channel"
            per_tensor += q["kind"] == "per-tensor"
    signatures = []
    for sd in m.signatureDefs or []:
        signatures.append({
            "key": (sd.signatureKey or b"").decode(errors="replace"),
            "inputs": [(t.name or b"").decode(errors="replace") for t in sd.inputs or []],
            "outputs": [(t.name or b"").decode(errors="replace") for t in sd.outputs or []],
        })
    sparsity = weight_sparsity(data)
    info = md.read_info(data)
    return {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": {"weights": int(weight_bytes), "graph_and_other": int(len(data) - weight_bytes)},
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "op_versions": versions,
        "operators": sum(ops.values()),
        "tensors": len(g.tensors),
        "tensor_dtypes": dict(dtypes),
        "quantization": {"per_channel_tensors": per_channel, "per_tensor_tensors": per_tensor},
        "inputs": [_io(g, i) for i in g.inputs],
        "outputs": [_io(g, i) for i in g.outputs],
        "weight_sparsity": {k: v for k, v in sparsity.items() if k != "per_op"},
        "min_runtime_version": md.min_runtime_version(data),
        "metadata": info,
        "metadata_entries": sorted(md.entries(data)),
        "signatures": signatures,
        "readiness": {t: report(data, t, isolated=True) for t in targets},
    }
