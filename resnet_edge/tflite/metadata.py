"""What an app needs, inside the ``.tflite``: labels, input normalization and the model's recipe.

Stored as a model metadata entry named ``resnet_edge`` holding UTF-8 JSON, next to the converter's own
entries (``min_runtime_version``, ``CONVERSION_METADATA``). Any flatbuffer reader can get it; this module
reads and writes it without TensorFlow. (The TFLite Support "TFLITE_METADATA" schema for Android's Task
Library is a different, heavier format; apps using resnet-edge's runtime read this entry.)
"""

from __future__ import annotations

import json

import numpy as np

from resnet_edge.tflite.model import read, schema

ENTRY = "resnet_edge"


def embed(model: bytes, info: dict) -> bytes:
    """Return ``model`` with ``info`` (JSON-serializable) stored as the ``resnet_edge`` metadata entry
    (replacing an earlier one)."""
    import flatbuffers

    s = schema()
    m, _ = read(model)
    m.metadata = [md for md in (m.metadata or []) if _name(md) != ENTRY]
    buf = s.BufferT()
    buf.data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    m.buffers.append(buf)
    entry = s.MetadataT()
    entry.name = ENTRY
    entry.buffer = len(m.buffers) - 1
    m.metadata.append(entry)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


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
            raw = data[b.offset:b.offset + b.size]
        else:
            raw = b""
        out[_name(md)] = raw
    return out


def read_info(model: bytes) -> dict | None:
    """The ``resnet_edge`` entry as a dict, or None when the model has none."""
    raw = entries(model).get(ENTRY)
    return json.loads(raw.decode()) if raw else None


def min_runtime_version(model: bytes) -> str | None:
    """The converter's ``min_runtime_version`` entry: the oldest TFLite runtime whose kernels support
    every op version in the model."""
    raw = entries(model).get("min_runtime_version")
    return raw.split(b"\0")[0].decode() if raw else None
