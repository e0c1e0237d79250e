"""What an app needs, inside the ``.tflite``: labels, input normalization and the model's recipe.

Stored as a model metadata entry named ``resnet_edge`` holding UTF-8 JSON, next to the converter's own
entries (``min_runtime_version``, ``CONVERSION_METADATA``). Any flatbuffer reader can get it; this module
reads and writes it without TensorFlow. The standard ``TFLITE_METADATA`` entry that app frameworks read
(MediaPipe, the Task Library) is :mod:`resnet_edge.tflite.standard`; :func:`rewrite` sets either.
"""

from __future__ import annotations

import json

import numpy as np

from resnet_edge.tflite.model import InvalidModelError, pack, read, schema

ENTRY = "resnet_edge"


def embed(model: bytes, info: dict) -> bytes:
    """Return ``model`` with ``info`` (JSON-serializable) stored as the ``resnet_edge`` metadata entry
    (replacing an earlier one), sealed with the content checksum of :mod:`resnet_edge.tflite.integrity`
    (``info`` gets its ``content_sha256`` key). Standard metadata and its appended files are kept."""
    return rewrite(model, info=info)


def rewrite(model: bytes, *, info: dict | None = None, standard: bytes | None = None,
            files: dict[str, bytes] | None = None) -> bytes:
    """Return ``model`` with our ``resnet_edge`` entry set to ``info`` and/or the standard ``TFLITE_METADATA``
    entry set to ``standard`` (a ``ModelMetadata`` flatbuffer, :mod:`resnet_edge.tflite.standard`) with
    ``files`` (the associated files it names) appended in a zip; every other entry, tensor and weight is
    kept. Repacking the flatbuffer would drop a zip appended after it, so the files already appended are
    carried over unless ``standard`` replaces them. A model with our entry is sealed again, after its
    checksum was verified (a damaged model is never sealed as if it were whole)."""
    from resnet_edge.tflite import integrity
    from resnet_edge.tflite import standard as std

    m, _ = read(model)
    carried = dict(files or {}) if standard is not None else std.packed_files(model)
    if info is None and ENTRY in entries(model):
        integrity.verify(model)
        info = read_info(model)
    if info is not None:
        info = {**info, integrity.KEY: integrity.PLACEHOLDER}
        _set_entry(m, ENTRY, json.dumps(info, sort_keys=True).encode())
    if standard is not None:
        _set_entry(m, std.ENTRY, standard)
    out = std.append_files(pack(m, len(model)), carried)
    return integrity.seal(out) if info is not None else out


def _set_entry(m, name: str, raw: bytes) -> None:
    """Set metadata entry ``name`` of a ``ModelT`` to ``raw``, in its own buffer (an orphaned old copy would
    stay in the file)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    earlier = [md for md in (m.metadata or []) if _name(md) == name]
    if earlier:
        m.buffers[earlier[0].buffer].data = data
        m.metadata = [md for md in m.metadata if _name(md) != name or md is earlier[0]]
        return
    buf = schema().BufferT()
    buf.data = data
    m.buffers.append(buf)
    entry = schema().MetadataT()
    entry.name = name
    entry.buffer = len(m.buffers) - 1
    m.metadata = list(m.metadata or []) + [entry]


def _name(md) -> str:
    name = md.name
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def entries(model: bytes) -> dict[str, bytes]:
    """Every metadata entry of a model, by name, as raw bytes."""
    m, data = read(model)
    out = {}
    for md in m.metadata or []:
        b = m.buffers[md.buffer]
        if b.data is not None and len(b.data):
            raw = np.asarray(b.data, dtype=np.uint8).tobytes()
        elif b.offset:
            raw = data[b.offset:b.offset + b.size]  # inside the file: read() checked it
        else:
            raw = b""
        out[_name(md)] = raw
    return out


class BadMetadataError(InvalidModelError):
    """A ``resnet_edge`` metadata entry that is not UTF-8 JSON."""


#: Our entry is a few kB; more is damage.
MAX_INFO_BYTES = 16 << 20


def read_info(model: bytes) -> dict | None:
    """The ``resnet_edge`` entry as a dict, or None when the model has none. Raises
    :class:`BadMetadataError` (one line) when the entry is not UTF-8 JSON describing an object."""
    raw = entries(model).get(ENTRY)
    if not raw:
        return None
    if len(raw) > MAX_INFO_BYTES:
        raise BadMetadataError(f"the model's {ENTRY} metadata is {len(raw):,} bytes; it is damaged")
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadMetadataError(f"the model's {ENTRY} metadata is not UTF-8 JSON: the file is damaged; "
                               "convert or copy it again") from None
    if not isinstance(info, dict):
        raise BadMetadataError(f"the model's {ENTRY} metadata is not a JSON object: the file is damaged")
    return info


def min_runtime_version(model: bytes) -> str | None:
    """The converter's ``min_runtime_version`` entry: the oldest TFLite runtime whose kernels support
    every op version in the model."""
    raw = entries(model).get("min_runtime_version")
    return raw.split(b"\0")[0].decode("utf-8", errors="replace")[:32] if raw else None
