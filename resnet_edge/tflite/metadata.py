"""What an app needs, inside the ``.tflite``: labels, input normalization and the model's recipe.

Stored as a model metadata entry named ``resnet_edge`` holding UTF-8 JSON, next to the converter's own
entries (``min_runtime_version``, ``CONVERSION_METADATA``). Any flatbuffer reader can get it; this module
reads and writes it without TensorFlow. (The TFLite Support "TFLITE_METADATA" schema for Android's Task
Library is a different, heavier format; apps using resnet-edge's runtime read this entry.)
"""

from __future__ import annotations

import json

import numpy as np

from resnet_edge.tflite.model import InvalidModelError, read, schema

ENTRY = "resnet_edge"


def embed(model: bytes, info: dict) -> bytes:
    """Return ``model`` with ``info`` (JSON-serializable) stored as the ``resnet_edge`` metadata entry
    (replacing an earlier one), sealed with the content checksum of :mod:`resnet_edge.tflite.integrity`
    (``info`` gets its ``content_sha256`` key)."""
    import flatbuffers

    from resnet_edge.tflite import integrity

    info = {**info, integrity.KEY: integrity.PLACEHOLDER}
    s = schema()
    m, _ = read(model)
    data = np.frombuffer(json.dumps(info, sort_keys=True).encode(), dtype=np.uint8)
    earlier = [md for md in (m.metadata or []) if _name(md) == ENTRY]
    if earlier:  # replace the entry's data in its own buffer: an orphaned old copy would stay in the file
        m.buffers[earlier[0].buffer].data = data
        m.metadata = [md for md in m.metadata if _name(md) != ENTRY or md is earlier[0]]
    else:
        buf = s.BufferT()
        buf.data = data
        m.buffers.append(buf)
        entry = s.MetadataT()
        entry.name = ENTRY
        entry.buffer = len(m.buffers) - 1
        m.metadata = list(m.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return integrity.seal(bytes(builder.Output()))


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
