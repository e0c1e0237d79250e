"""Everything a ``.tflite`` says about itself, without TensorFlow: ops, tensors, quantization, size,
sparsity, metadata, signatures, accelerator readiness, integrity.

A file from elsewhere is hostile until proven otherwise: the checksum of a model of ours is verified
first (:mod:`resnet_edge.tflite.integrity`), the flatbuffer is checked before it is read
(:func:`resnet_edge.tflite.model.read`), the runtime loads and runs it only in a child process with
memory and time limits, and every string that came from the file is escaped and bounded
(:func:`resnet_edge.ui.safe_text`) before anyone prints it.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import numpy as np

from resnet_edge.tflite import integrity
from resnet_edge.tflite import metadata as md
from resnet_edge.tflite import standard as std
from resnet_edge.tflite.model import InvalidModelError, _ints, buffer_array, load_bytes, op_name, read, type_name, weight_sparsity
from resnet_edge.ui import safe_text

#: At most this many signatures, and tensors per signature, are listed.
MAX_LISTED = 32


def clean(obj, depth: int = 0, text_limit: int = 200):
    """A JSON-like value read from a file, with every string escaped and bounded, lists cut at 1,000
    items, objects at 100 keys and nesting at 8 levels."""
    if depth > 8:
        return "..."
    if isinstance(obj, (str, bytes)):
        return safe_text(obj, text_limit)
    if isinstance(obj, dict):
        return {safe_text(k, 80): clean(v, depth + 1, text_limit) for k, v in list(obj.items())[:100]}
    if isinstance(obj, (list, tuple)):
        return [clean(v, depth + 1, text_limit) for v in obj[:1000]]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _quant(t) -> dict | None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale = np.asarray(q.scale, dtype=np.float64)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) else [0], dtype=np.int64)
    if len(scale) == 1:
        return {"kind": "per-tensor", "scale": float(scale[0]), "zero_point": int(zero[0])}
    return {"kind": "per-channel", "axis": int(q.quantizedDimension), "channels": int(len(scale)),
            "scale_min": float(scale.min()), "scale_max": float(scale.max())}


def _io(g, index) -> dict:
    t = g.tensors[index]
    return {"name": safe_text(t.name or b""), "shape": _ints(t.shape), "dtype": type_name(t.type), "quantization": _quant(t)}


INTEGER_TYPES = ("int8", "uint8", "int16")


def integer_step(m, g, index) -> float | None:
    """The size of one quantization step of output ``index``, in the units its scores are read in: its own scale
    when it is an integer tensor, the scale of the integer tensor a DEQUANTIZE turns into it when the model's
    outputs are float (an int8 model with float I/O); None for a float result (nothing counts in steps)."""
    def per_tensor_integer(i):
        t = g.tensors[i]
        q = _quant(t)
        return q["scale"] if q and q["kind"] == "per-tensor" and type_name(t.type) in INTEGER_TYPES and q["scale"] > 0 \
            else None

    own = per_tensor_integer(index)
    if own is not None:
        return own
    for op in g.operators or []:
        if index in _ints(op.outputs) and op_name(m, op.opcodeIndex) == "DEQUANTIZE" and len(_ints(op.inputs)) == 1:
            return per_tensor_integer(_ints(op.inputs)[0])
    return None


def io_tensors(model: bytes) -> tuple[list[dict], list[dict]]:
    """The first subgraph's input and output tensors (name, shape, dtype, quantization) of a checked model; each
    output also has ``integer_step`` (:func:`integer_step`)."""
    m, _ = read(model)
    g = m.subgraphs[0]
    return [_io(g, i) for i in _ints(g.inputs)], [{**_io(g, i), "integer_step": integer_step(m, g, i)}
                                                   for i in _ints(g.outputs)]


def manifest_check(path: str | os.PathLike, data: bytes) -> dict | None:
    """Whether the manifest beside ``path`` (``NAME.json``) describes this very file
    (:func:`resnet_edge.io.read_manifest`): ``{"path", "matches"}``, or None when there is none or it is
    not a model manifest. A mismatch means the model was replaced after its manifest was written (or
    the other way round)."""
    from resnet_edge.errors import ResnetEdgeError
    from resnet_edge.io import manifest_path, read_manifest

    shown = safe_text(manifest_path(path).name)
    try:
        manifest = read_manifest(path, sha256=hashlib.sha256(data).hexdigest())
    except ResnetEdgeError as exc:
        return {"path": shown, "matches": False, "why": safe_text(exc, 300)}
    return {"path": shown, "matches": True} if manifest.get("kind") == "tflite-model" else None


def read_standard(data: bytes, label: str = "the model") -> tuple[dict, dict, str | None, list[str] | None] | None:
    """The standard metadata of a model, decoded: ``(ModelMetadata as a dict, appended files, labels file
    name, its lines)``, or None when it has none. Raises
    :class:`~resnet_edge.tflite.standard.BadStandardMetadataError` when it, or its appended zip, is damaged."""
    raw = md.entries(data).get(std.ENTRY)
    if raw is None:
        return None
    meta = std.decode(raw)
    files = std.packed_files(data, label)
    missing = [n for n in std.referenced_files(meta) if n not in files]
    if missing:
        why = "holds no appended zip" if not files else "its appended zip does not hold it"
        raise std.BadStandardMetadataError(
            f"{label}'s TFLITE_METADATA names {safe_text(missing[0], 80)} but the model {why}: the file was cut or "
            "repacked by a tool that dropped it; convert again, or rewrite it with `resnet-edge metadata`")
    return (meta, files, *std.label_file(meta, files))


def app_metadata(data: bytes, inputs: list[dict], outputs: list[dict], label: str = "the model",
                 found: tuple | None = None) -> dict | None:
    """The standard metadata that app frameworks read (:mod:`resnet_edge.tflite.standard`), summarized,
    with ``problems``: where it disagrees with the model's tensors. None when the model has none.
    ``found``: what :func:`read_standard` returned for ``data``, when the caller has it already. Raises
    :class:`~resnet_edge.tflite.standard.BadStandardMetadataError` when it, or its appended zip, is damaged."""
    found = found or read_standard(data, label)
    if found is None:
        return None
    meta, files, name, labels = found
    summary = std.summary(meta, files, name, labels)
    return {**clean(summary), "problems": [safe_text(p, 300) for p in std.disagreements(meta, inputs, outputs, labels)]}


def inspect(model: bytes | str | os.PathLike, targets: tuple[str, ...] = ("cpu", "gpu", "nnapi"), name: str | None = None,
            verify: bool = True, load_check: bool = True) -> dict:
    """The full report as a dict (see :func:`resnet_edge.cli` ``inspect`` for the table).

    ``verify``: check the checksum of a model of ours and refuse a damaged one
    (:class:`~resnet_edge.tflite.integrity.DamagedModelError`). ``load_check``: load and run the model
    in LiteRT in a child process (memory- and time-limited) and raise :class:`InvalidModelError` when
    the runtime cannot; its XNNPACK partitions are the ``cpu`` readiness.
    """
    from resnet_edge.tflite.readiness import cpu_report_isolated, report

    from_path = not isinstance(model, (bytes, bytearray))
    data = load_bytes(model) if from_path else bytes(model)
    label = safe_text(name or (str(model) if from_path else "the model"))
    checked = integrity.verify(data, label) if verify else {"status": "not checked (--no-verify)"}
    m, data = read(data, label)
    g = m.subgraphs[0]
    ops = Counter(safe_text(op_name(m, op.opcodeIndex), 64) for op in g.operators or [])
    versions = {}
    for op in g.operators or []:
        n = safe_text(op_name(m, op.opcodeIndex), 64)
        versions[n] = max(versions.get(n, 0), int(m.operatorCodes[op.opcodeIndex].version))
    dtypes = Counter(type_name(t.type) for t in g.tensors or [])
    weight_bytes = 0
    per_channel = per_tensor = 0
    for t in g.tensors or []:
        arr = buffer_array(m, data, t)
        if arr is not None:
            weight_bytes += arr.nbytes
        q = _quant(t)
        if q:
            per_channel += q["kind"] == "per-channel"
            per_tensor += q["kind"] == "per-tensor"
    signatures = []
    for sd in (m.signatureDefs or [])[:MAX_LISTED]:
        signatures.append({
            "key": safe_text(sd.signatureKey or b"", 80),
            "inputs": [safe_text(t.name or b"", 80) for t in (sd.inputs or [])[:MAX_LISTED]],
            "outputs": [safe_text(t.name or b"", 80) for t in (sd.outputs or [])[:MAX_LISTED]],
        })
    sparsity = weight_sparsity(data)
    try:
        info = md.read_info(data)
    except md.BadMetadataError as exc:
        if verify:
            raise
        info = {"error": str(exc)}
    inputs, outputs = [_io(g, i) for i in _ints(g.inputs)], [_io(g, i) for i in _ints(g.outputs)]
    try:
        app = app_metadata(data, inputs, outputs, label)
    except std.BadStandardMetadataError as exc:
        if verify:
            raise
        app = {"error": str(exc)}
    runtime = None
    if load_check:
        runtime = cpu_report_isolated(data)
        if not runtime.get("loaded"):
            raise InvalidModelError(f"{label}: {runtime['error']}")
    return {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "integrity": checked,
        "manifest": manifest_check(model, data) if from_path else None,
        "size": {"weights": int(weight_bytes), "graph_and_other": int(len(data) - weight_bytes)},
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "op_versions": versions,
        "operators": sum(ops.values()),
        "tensors": len(g.tensors or []),
        "tensor_dtypes": dict(dtypes),
        "quantization": {"per_channel_tensors": per_channel, "per_tensor_tensors": per_tensor},
        "inputs": inputs,
        "outputs": outputs,
        "weight_sparsity": {k: v for k, v in sparsity.items() if k != "per_op"},
        "min_runtime_version": safe_text(md.min_runtime_version(data) or "", 32) or None,
        "metadata": clean(info) if info is not None else None,
        "app_metadata": app,
        "metadata_entries": sorted(safe_text(k, 80) for k in md.entries(data))[:MAX_LISTED],
        "signatures": signatures,
        "readiness": {t: (runtime if t == "cpu" and runtime is not None else report(data, t, isolated=True))
                      for t in targets},
    }


__all__ = ["inspect", "clean", "manifest_check", "InvalidModelError"]
