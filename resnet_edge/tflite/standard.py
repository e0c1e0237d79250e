"""The standard TFLite Metadata that app frameworks read: MediaPipe Tasks, the TFLite Task Library and
Android Studio's ML model binding.

The standard is the ``TFLITE_METADATA`` entry of a model: a ``ModelMetadata`` flatbuffer (file identifier
``M001``) of the published ``metadata_schema.fbs`` (shipped in the mediapipe and tflite-support wheels),
plus the files it names (``labels.txt``) in a zip appended after the model's flatbuffer. Our own
``resnet_edge`` entry (:mod:`resnet_edge.tflite.metadata`) stays beside it: our runtime and reports read
that one.

No maintained package writes this format and installs beside TensorFlow 2.21 and on a device without it
(tflite-support pins protobuf < 4; mediapipe 1.2.3's writers need a compiled module its wheel lacks; 0.10.21
pins numpy < 2), so this module builds and reads the subset of the schema an image classifier uses with
the ``flatbuffers`` runtime directly. The field slots below follow the schema's field order (a union takes
two slots: its type, then its value); ``tests/test_app_metadata.py`` checks them against the published
``.fbs`` and reads what we write with the schema's generated code and with both frameworks.

Reading is for hostile files: every offset and length is checked against the buffer, lists are capped,
text is bounded, and the appended zip is read with size limits (no member is decompressed beyond
:data:`MAX_FILE_BYTES`).
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from dataclasses import dataclass, field

from resnet_edge.errors import ResnetEdgeError

ENTRY = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
#: Every field we write was in the schema's first version (the fields added later are not used).
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"

#: Field slots of the tables we use, in the order of ``metadata_schema.fbs`` (schema 1.5.0).
SLOTS = {
    "ModelMetadata": ("name", "description", "version", "subgraph_metadata", "author", "license", "associated_files",
                      "min_parser_version"),
    "SubGraphMetadata": ("name", "description", "input_tensor_metadata", "output_tensor_metadata", "associated_files",
                         "input_process_units", "output_process_units", "input_tensor_groups", "output_tensor_groups",
                         "custom_metadata"),
    "TensorMetadata": ("name", "description", "dimension_names", "content", "process_units", "stats",
                       "associated_files"),
    "Content": ("content_properties_type", "content_properties", "range"),
    "ImageProperties": ("color_space", "default_size"),
    "ImageSize": ("width", "height"),
    "ProcessUnit": ("options_type", "options"),
    "NormalizationOptions": ("mean", "std"),
    "Stats": ("max", "min"),
    "AssociatedFile": ("name", "description", "type", "locale", "version"),
}
#: Union members, by their type value (0 is NONE).
CONTENT_PROPERTIES = ("NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties")
PROCESS_UNIT_OPTIONS = ("NONE", "NormalizationOptions", "ScoreCalibrationOptions", "ScoreThresholdingOptions",
                        "BertTokenizerOptions", "SentencePieceTokenizerOptions", "RegexTokenizerOptions")
COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
FILE_TYPES = ("UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS", "TENSOR_AXIS_SCORE_CALIBRATION",
              "VOCABULARY", "SCANN_INDEX_FILE")

#: Bounds for what we read from a file: the metadata flatbuffer, one associated file, list lengths, text.
MAX_METADATA_BYTES = 16 << 20
MAX_FILE_BYTES = 64 << 20
MAX_FILES = 256
MAX_ITEMS = 64
MAX_TEXT = 4096
#: The most labels an image classifier here may name (ImageNet-21k has 21,841).
MAX_LABELS = 100_000


def slot(table: str, name: str) -> int:
    return SLOTS[table].index(name)


class BadStandardMetadataError(ResnetEdgeError):
    """A ``TFLITE_METADATA`` entry, or its appended zip of associated files, that cannot be read."""


@dataclass
class ImageClassifierMetadata:
    """What the standard metadata of an image classifier says (one input image, one score vector)."""

    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    input_name: str = "image"
    input_description: str = ""
    color_space: str = "RGB"
    #: NormalizationOptions: what the framework does to a pixel p before feeding it, (p - mean) / std (None:
    #: unknown, and no NormalizationOptions are written).
    mean: list[float] | None = field(default_factory=lambda: [0.0])
    std: list[float] | None = field(default_factory=lambda: [1.0])
    #: The range of the values the input tensor takes (per channel, or one for all; empty: not written).
    input_min: list[float] = field(default_factory=lambda: [0.0])
    input_max: list[float] = field(default_factory=lambda: [255.0])
    output_name: str = "probability"
    output_description: str = ""
    labels: list[str] | None = None


# ---------------------------------------------------------------- writing


def encode(meta: ImageClassifierMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer (``M001``) for ``meta``."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def text(s: str | None):
        return b.CreateString(s) if s else None

    def floats(values):
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(float(v))
        return b.EndVector()

    def offsets(items):
        b.StartVector(4, len(items), 4)
        for o in reversed(items):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def table(name: str, fields: dict):
        """A table whose ``fields`` map a field name to ("off", offset) / ("byte", value)."""
        b.StartObject(len(SLOTS[name]))
        for key, (kind, value) in fields.items():
            if value is None:
                continue
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot(name, key), value, 0)
            else:
                b.PrependUint8Slot(slot(name, key), value, 0)
        return b.EndObject()

    def associated(name: str, description: str, kind: str):
        n, d = text(name), text(description)
        return table("AssociatedFile", {"name": ("off", n), "description": ("off", d),
                                        "type": ("byte", FILE_TYPES.index(kind))})

    # input image: content (ImageProperties), normalization, value range
    props = table("ImageProperties", {"color_space": ("byte", COLOR_SPACES.index(meta.color_space))})
    content = table("Content", {"content_properties_type": ("byte", CONTENT_PROPERTIES.index("ImageProperties")),
                                "content_properties": ("off", props)})
    units = stats = None
    if meta.mean is not None:
        mean, std = floats(meta.mean), floats(meta.std)
        norm = table("NormalizationOptions", {"mean": ("off", mean), "std": ("off", std)})
        unit = table("ProcessUnit", {"options_type": ("byte", PROCESS_UNIT_OPTIONS.index("NormalizationOptions")),
                                     "options": ("off", norm)})
        units = offsets([unit])
    if meta.input_min:
        hi, lo = floats(meta.input_max), floats(meta.input_min)
        stats = table("Stats", {"max": ("off", hi), "min": ("off", lo)})
    in_name, in_desc = text(meta.input_name), text(meta.input_description)
    image = table("TensorMetadata", {"name": ("off", in_name), "description": ("off", in_desc),
                                     "content": ("off", content), "process_units": ("off", units),
                                     "stats": ("off", stats)})
    # output scores: FeatureProperties, the labels file
    feature = table("Content", {"content_properties_type": ("byte", CONTENT_PROPERTIES.index("FeatureProperties")),
                                "content_properties": ("off", _empty_table(b))})
    files = None
    if meta.labels is not None:
        files = offsets([associated(LABELS_FILE, "The class names, one per line, in the order of the scores.",
                                    "TENSOR_AXIS_LABELS")])
    out_name, out_desc = text(meta.output_name), text(meta.output_description)
    scores = table("TensorMetadata", {"name": ("off", out_name), "description": ("off", out_desc),
                                      "content": ("off", feature), "associated_files": ("off", files)})
    inputs, outputs = offsets([image]), offsets([scores])
    subgraph = table("SubGraphMetadata", {"input_tensor_metadata": ("off", inputs),
                                          "output_tensor_metadata": ("off", outputs)})
    subgraphs = offsets([subgraph])
    strings = {k: text(getattr(meta, k)) for k in ("name", "description", "version", "author", "license")}
    parser = text(MIN_PARSER_VERSION)
    root = table("ModelMetadata", {**{k: ("off", v) for k, v in strings.items()},
                                   "subgraph_metadata": ("off", subgraphs), "min_parser_version": ("off", parser)})
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _empty_table(b) -> int:
    b.StartObject(0)
    return b.EndObject()


def labels_file(labels: list[str]) -> bytes:
    return ("\n".join(labels) + "\n").encode("utf-8")


def append_files(flatbuffer: bytes, files: dict[str, bytes]) -> bytes:
    """``flatbuffer`` with ``files`` in a zip appended after it, as the schema's own writers do (stored,
    not compressed, with offsets from the start of the file)."""
    if not files:
        return flatbuffer
    out = io.BytesIO(flatbuffer)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # no clock in the file: same input, same bytes
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


# ---------------------------------------------------------------- reading


class _Buf:
    """Bounds-checked access to a flatbuffer from a file."""

    def __init__(self, data: bytes):
        self.data = data
        self.n = len(data)

    def _need(self, pos: int, size: int) -> None:
        if pos < 0 or pos + size > self.n:
            raise BadStandardMetadataError("its TFLITE_METADATA is damaged: an offset points outside it")

    def u8(self, pos):
        self._need(pos, 1)
        return self.data[pos]

    def u16(self, pos):
        self._need(pos, 2)
        return struct.unpack_from("<H", self.data, pos)[0]

    def u32(self, pos):
        self._need(pos, 4)
        return struct.unpack_from("<I", self.data, pos)[0]

    def i32(self, pos):
        self._need(pos, 4)
        return struct.unpack_from("<i", self.data, pos)[0]


class _Table:
    def __init__(self, buf: _Buf, pos: int, kind: str):
        self.buf, self.pos, self.kind = buf, pos, kind
        vt = pos - buf.i32(pos)
        self.vt_len = buf.u16(vt)
        self.obj_len = buf.u16(vt + 2)
        if self.vt_len < 4 or self.vt_len % 2:
            raise BadStandardMetadataError("its TFLITE_METADATA is damaged: a table has an invalid layout")
        buf._need(vt, self.vt_len)
        self.vt = vt

    def _field(self, name: str) -> int | None:
        voff = 4 + 2 * slot(self.kind, name)
        if voff >= self.vt_len:
            return None
        o = self.buf.u16(self.vt + voff)
        if not o:
            return None
        if o >= self.obj_len:
            raise BadStandardMetadataError("its TFLITE_METADATA is damaged: a field lies outside its table")
        return self.pos + o

    def byte(self, name: str, default: int = 0) -> int:
        p = self._field(name)
        return default if p is None else self.buf.u8(p)

    def _target(self, name: str) -> int | None:
        p = self._field(name)
        return None if p is None else p + self.buf.u32(p)

    def table(self, name: str, kind: str) -> _Table | None:
        t = self._target(name)
        return None if t is None else _Table(self.buf, t, kind)

    def text(self, name: str) -> str | None:
        t = self._target(name)
        if t is None:
            return None
        length = self.buf.u32(t)
        self.buf._need(t + 4, length)
        return self.buf.data[t + 4:t + 4 + min(length, MAX_TEXT)].decode("utf-8", errors="replace")

    def _vector(self, name: str, size: int) -> tuple[int, int]:
        t = self._target(name)
        if t is None:
            return 0, 0
        count = self.buf.u32(t)
        self.buf._need(t + 4, count * size)
        return t + 4, count

    def floats(self, name: str) -> list[float] | None:
        start, count = self._vector(name, 4)
        if not start:
            return None
        return [struct.unpack_from("<f", self.buf.data, start + 4 * i)[0] for i in range(min(count, MAX_ITEMS))]

    def tables(self, name: str, kind: str) -> list[_Table]:
        start, count = self._vector(name, 4)
        out = []
        for i in range(min(count, MAX_ITEMS)):
            p = start + 4 * i
            out.append(_Table(self.buf, p + self.buf.u32(p), kind))
        return out


def _name(values: tuple, i: int) -> str:
    return values[i] if 0 <= i < len(values) else f"unknown({i})"


def decode(data: bytes) -> dict:
    """A ``ModelMetadata`` flatbuffer from a file, as a dict (lists capped at :data:`MAX_ITEMS`, text at
    :data:`MAX_TEXT` characters). Raises :class:`BadStandardMetadataError` (one line) when it is damaged."""
    if len(data) > MAX_METADATA_BYTES:
        raise BadStandardMetadataError(f"its TFLITE_METADATA is {len(data):,} bytes; it is damaged")
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise BadStandardMetadataError("its TFLITE_METADATA is not a ModelMetadata flatbuffer (no 'M001' identifier)")
    buf = _Buf(bytes(data))
    try:
        root = _Table(buf, buf.u32(0), "ModelMetadata")
        return {
            **{k: root.text(k) for k in ("name", "description", "version", "author", "license", "min_parser_version")},
            "associated_files": [_file(f) for f in root.tables("associated_files", "AssociatedFile")],
            "subgraphs": [{
                "name": g.text("name"),
                "inputs": [_tensor(t) for t in g.tables("input_tensor_metadata", "TensorMetadata")],
                "outputs": [_tensor(t) for t in g.tables("output_tensor_metadata", "TensorMetadata")],
                "associated_files": [_file(f) for f in g.tables("associated_files", "AssociatedFile")],
                "input_process_units": [_unit(u) for u in g.tables("input_process_units", "ProcessUnit")],
                "output_process_units": [_unit(u) for u in g.tables("output_process_units", "ProcessUnit")],
            } for g in root.tables("subgraph_metadata", "SubGraphMetadata")],
        }
    except BadStandardMetadataError:
        raise
    except (struct.error, IndexError, ValueError, RecursionError):
        raise BadStandardMetadataError("its TFLITE_METADATA is damaged: it cannot be parsed") from None


def _file(f: _Table) -> dict:
    return {"name": f.text("name"), "description": f.text("description"), "type": _name(FILE_TYPES, f.byte("type")),
            "locale": f.text("locale")}


def _unit(u: _Table) -> dict:
    kind = _name(PROCESS_UNIT_OPTIONS, u.byte("options_type"))
    out = {"type": kind}
    if kind == "NormalizationOptions":
        opts = u.table("options", "NormalizationOptions")
        if opts is not None:
            out.update(mean=opts.floats("mean"), std=opts.floats("std"))
    return out


def _tensor(t: _Table) -> dict:
    out = {"name": t.text("name"), "description": t.text("description"), "content": None,
           "process_units": [_unit(u) for u in t.tables("process_units", "ProcessUnit")], "stats": None,
           "associated_files": [_file(f) for f in t.tables("associated_files", "AssociatedFile")]}
    content = t.table("content", "Content")
    if content is not None:
        kind = _name(CONTENT_PROPERTIES, content.byte("content_properties_type"))
        out["content"] = {"type": kind}
        if kind == "ImageProperties":
            props = content.table("content_properties", "ImageProperties")
            out["content"]["color_space"] = _name(COLOR_SPACES, props.byte("color_space")) if props else "UNKNOWN"
    stats = t.table("stats", "Stats")
    if stats is not None:
        out["stats"] = {"min": stats.floats("min"), "max": stats.floats("max")}
    return out


def referenced_files(meta: dict) -> list[str]:
    """The names of the associated files a decoded ``ModelMetadata`` refers to."""
    names = [f["name"] for f in meta["associated_files"]]
    for g in meta["subgraphs"]:
        names += [f["name"] for f in g["associated_files"]]
        for t in g["inputs"] + g["outputs"]:
            names += [f["name"] for f in t["associated_files"]]
    return list(dict.fromkeys(n for n in names if n))


def packed_files(model: bytes, label: str = "the model") -> dict[str, bytes]:
    """The files in the zip appended to ``model`` ({} when there is none). Raises
    :class:`BadStandardMetadataError` when the zip is damaged, or would unpack beyond the limits."""
    if not zipfile.is_zipfile(io.BytesIO(model)):
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_FILES:
                raise BadStandardMetadataError(f"{label}'s appended zip lists {len(infos):,} files (limit {MAX_FILES}); it is damaged")
            out = {}
            for info in infos:
                if info.file_size > MAX_FILE_BYTES or info.compress_size > len(model):
                    raise BadStandardMetadataError(f"{label}'s appended zip holds {info.filename[:80]!r} of {info.file_size:,} "
                                                   f"bytes (limit {MAX_FILE_BYTES:,}); it is damaged")
                with zf.open(info) as fh:
                    data = fh.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise BadStandardMetadataError(f"{label}'s appended zip unpacks beyond its stated sizes; it is damaged")
                out[info.filename] = data
            return out
    except BadStandardMetadataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
            struct.error, UnicodeDecodeError) as exc:
        why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise BadStandardMetadataError(f"{label}'s appended zip of associated files is damaged ({why}); "
                                       "convert the model again, or rewrite its metadata with `resnet-edge metadata`") from None


def parse_labels(data: bytes, source: str) -> list[str]:
    """Class names from a labels file: one per line, UTF-8, trailing empty lines ignored."""
    if len(data) > MAX_FILE_BYTES:
        raise BadStandardMetadataError(f"{source} is {len(data):,} bytes; a labels file is at most {MAX_FILE_BYTES:,}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadStandardMetadataError(f"{source} is not UTF-8 text; save it as UTF-8, one class name per line") from None
    # Lines end at "\n" only (a "\r" before it is dropped), as the Task Library and `wc -l` count them:
    # str.splitlines() would also split at U+2028, form feed, FS or NEL, and see more classes than they do.
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > MAX_LABELS:
        raise BadStandardMetadataError(f"{source} has {len(lines):,} lines; at most {MAX_LABELS:,} classes are supported")
    return [line.strip() for line in lines]


def check_labels(labels: list[str], source: str) -> None:
    """Class names that a labels file can hold: one line each, not empty, no control characters."""
    for i, name in enumerate(labels):
        if not name.strip():
            raise BadStandardMetadataError(f"{source}: class {i} has an empty name; give every class a name")
        if not all(c.isprintable() or c == " " for c in name):  # C0/C1 controls, U+2028/9, format characters
            raise BadStandardMetadataError(f"{source}: class {i} ({name[:40]!r}) holds a line break or control "
                                           "character; a labels file has one name per line")
        if len(name) > MAX_TEXT:
            raise BadStandardMetadataError(f"{source}: class {i}'s name is {len(name):,} characters (limit {MAX_TEXT})")


def check_text(option: str, value: str) -> None:
    """A text for the metadata (name, author, ...): bounded, no control characters but line breaks and tabs."""
    from resnet_edge.errors import ConfigError

    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):  # bytes that were not UTF-8 on the command line
        raise ConfigError(f"{option} is not UTF-8 text: give it in UTF-8")
    if len(value) > MAX_TEXT or any((ord(c) < 32 and c not in "\n\t") or 127 <= ord(c) < 160 for c in value):
        raise ConfigError(f"{option} must be at most {MAX_TEXT} characters of text without control characters")


#: The smallest positive normal float32: a std below it cannot be stored in the metadata's float32 fields.
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT32_MAX = 3.4028234663852886e38


def check_normalization(mean: list[float], std: list[float]) -> None:
    """--mean/--std that the metadata's float32 fields hold, with a value range (255 - mean) / std that they
    hold too (a std of 1e-320 would be written as 0, 1e39 as infinity)."""
    from resnet_edge.errors import ConfigError

    values = list(mean) + list(std)
    if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in values) or \
            not all(s >= FLOAT32_TINY for s in std):
        raise ConfigError("--mean and --std must be numbers a float32 holds (|value| <= 3.4e38) and --std at least "
                          "1.2e-38: the metadata stores them as float32")
    ranges = [v for m, s in zip(mean * len(std) if len(mean) == 1 else mean, std * len(mean) if len(std) == 1 else std)
              for v in ((0.0 - m) / s, (255.0 - m) / s)]
    if not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in ranges):
        raise ConfigError("--mean/--std put the input beyond what a float32 holds ((255 - mean) / std over 3.4e38): "
                          "give a larger --std")


# ---------------------------------------------------------------- what the metadata must agree with


def tensor_range(dtype: str) -> tuple[float, float] | None:
    return {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0)}.get(dtype)


def input_range(dtype: str, mean: list[float], std: list[float]) -> tuple[list[float], list[float]]:
    """The values the input tensor takes when pixels 0..255 are fed as the metadata says: for float, the
    normalized range; for uint8/int8, the integer range (frameworks feed quantized inputs as they are)."""
    r = tensor_range(dtype)
    if r is not None:
        return [r[0]], [r[1]]
    return [(0.0 - m) / s for m, s in zip(mean, std)], [(255.0 - m) / s for m, s in zip(mean, std)]


def quantized_normalization(dtype: str, quant: dict | None) -> tuple[float, float] | None:
    """The (mean, std) that an integer input's quantization implies: a framework feeds pixel p as q = p
    (uint8) or q = p - 128 (int8), and the model reads q as ``scale * (q - zero_point)``, which is
    ``(p - mean) / std`` for mean = zero_point (+128 for int8) and std = 1 / scale."""
    if tensor_range(dtype) is None or not quant or quant.get("kind") != "per-tensor" or not quant.get("scale"):
        return None
    shift = 128 if dtype == "int8" else 0
    return float(quant["zero_point"] + shift), 1.0 / float(quant["scale"])


def disagreements(meta: dict, inputs: list[dict], outputs: list[dict], labels: list[str] | None) -> list[str]:
    """Where a decoded ``ModelMetadata`` disagrees with the model's tensors, one line each (empty: none).
    ``labels`` are the lines of its labels file (None when it names none)."""
    problems = []
    if not meta["subgraphs"]:
        return ["it describes no subgraph"]
    g = meta["subgraphs"][0]
    if len(g["inputs"]) != len(inputs) or len(g["outputs"]) != len(outputs):
        problems.append(f"it describes {len(g['inputs'])} input(s) and {len(g['outputs'])} output(s); the model has "
                        f"{len(inputs)} and {len(outputs)}")
    if g["inputs"] and inputs:
        problems += _input_problems(g["inputs"][0], g["input_process_units"], inputs[0])
    if g["outputs"] and outputs and labels is not None:
        n = outputs[0]["shape"][-1] if outputs[0]["shape"] else None
        if n is not None and len(labels) != n:
            problems.append(f"its labels file has {len(labels)} names but the output has {n} scores")
    return problems


def _input_problems(tm: dict, subgraph_units: list[dict], t: dict) -> list[str]:
    if t["dtype"] not in ("float32", "uint8", "int8"):
        return [f"the input is {t['dtype']}; image frameworks feed float32 or uint8"]
    problems = []
    if t["dtype"] == "int8":
        problems.append("the input is int8, which MediaPipe (1.2.3) and the Task Library (0.4.4) refuse: they take "
                        "uint8 or float32 (convert with --io uint8 for an app)")
    norm = _normalization_unit(tm, subgraph_units)
    channels = t["shape"][-1] if len(t["shape"]) == 4 else None
    if norm is None:
        if t["dtype"] == "float32":
            problems.append("the input is float32 but there are no NormalizationOptions: MediaPipe and the Task "
                            "Library refuse the model")
        return problems
    mean, std = norm.get("mean") or [], norm.get("std") or []
    if not mean or not std or len(mean) != len(std) or (channels and len(mean) not in (1, channels)):
        problems.append(f"NormalizationOptions has {len(mean)} mean and {len(std)} std values for {channels} channels")
    elif any(not math.isfinite(s) or s <= 0 for s in std) or any(not math.isfinite(m) for m in mean):
        problems.append("NormalizationOptions has a std that is not a positive number")
    else:
        implied = quantized_normalization(t["dtype"], t["quantization"])
        if implied is not None and not fits_quantization(mean, std, implied):
            problems.append(f"NormalizationOptions (mean {_short(mean)}, std {_short(std)}) disagree with the "
                            f"{t['dtype']} input's quantization, which implies mean {implied[0]:g}, std "
                            f"{implied[1]:.4g}: a framework would feed the model wrong values")
    return problems


def fits_quantization(mean: list[float], std: list[float], implied: tuple[float, float]) -> bool:
    """Whether normalization values agree with what an integer input's quantization implies (within half a
    pixel level for the mean, 0.1% for the std)."""
    return all(abs(m - implied[0]) <= 0.5 and abs(s / implied[1] - 1) <= 1e-3 for m, s in zip(mean, std))


def _short(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values[:4]) + (", ...]" if len(values) > 4 else "]")


def label_file(meta: dict, files: dict[str, bytes]) -> tuple[str | None, list[str] | None]:
    """The name of the first output's labels file and its lines (None, None when it names none; the lines are
    None when the file is not among ``files``)."""
    g = meta["subgraphs"][0] if meta["subgraphs"] else {"outputs": []}
    names = [f["name"] for t in g["outputs"][:1] for f in t["associated_files"] if f["type"] == "TENSOR_AXIS_LABELS"]
    if not names:
        return None, None
    return names[0], parse_labels(files[names[0]], names[0]) if names[0] in files else None


def _normalization_unit(tm: dict, subgraph_units: list[dict]) -> dict | None:
    return next((u for u in tm["process_units"] + subgraph_units if u["type"] == "NormalizationOptions"), None)


def summary(meta: dict, files: dict[str, bytes], labels_file: str | None, labels: list[str] | None) -> dict:
    """The part of a decoded ``ModelMetadata`` that ``inspect`` shows: name, version, author, license,
    labels (from :func:`label_file`), normalization and input range of the first input."""
    g = meta["subgraphs"][0] if meta["subgraphs"] else {"inputs": [], "input_process_units": []}
    tm = g["inputs"][0] if g["inputs"] else None
    norm = _normalization_unit(tm, g["input_process_units"]) if tm is not None else None
    return {
        **{k: meta.get(k) for k in ("name", "description", "version", "author", "license", "min_parser_version")},
        "color_space": ((tm or {}).get("content") or {}).get("color_space"),
        "normalization": {"mean": norm.get("mean"), "std": norm.get("std")} if norm else None,
        "input_range": (tm or {}).get("stats"),
        "labels_file": labels_file,
        "labels": len(labels) if labels is not None else None,
        "first_labels": labels[:10] if labels else [],
        "files": sorted(files)[:MAX_ITEMS],
    }
