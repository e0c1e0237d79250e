"""Published ImageNet weights into our networks (host side): Keras Applications' ResNet50/101/152 ``.h5``
files and torchvision's ResNet-18..152 state dicts as ``.safetensors`` (timm publishes torchvision's
ImageNet weights so, e.g. ``resnet18.tv_in1k``).

Keras Applications' ResNets are the paper's v1 networks under the same layer names as ours, with two
differences that the loading removes exactly:

* their convolutions carry a bias, ours do not (a BatchNormalization follows each). ``BN(Wx + b)`` with
  moving mean ``m`` equals ``BN'(Wx)`` with moving mean ``m - b``, so the bias is folded into the mean;
* they take caffe-style input: BGR, minus the ImageNet mean per channel, not scaled. Our model takes raw
  RGB pixels and normalizes inside, with that mean (in RGB order) and std 1; the first convolution's input
  channels are reversed instead of the image's. The model therefore takes raw 0..255 RGB pixels, converted
  or not.

torchvision's ResNets are the "v1.5" networks (a bottleneck's stride on its 3x3 convolution) and take
(x / 255 - mean) / std with ImageNet's per-channel mean and std, built in here as (x - 255 mean) / (255 std).
Their kernels are OIHW and become HWIO, the classifier's [out, in] becomes [in, out], and their
BatchNormalization epsilon (1e-5, ours 1.001e-5) is made exact by the moving variance.

A weights file is read with h5py or safetensors (data only: nothing in it runs, nothing is unpickled), each
tensor's shape and type are checked against the network before any is read, and the model gets its weights
only when every one fits: a wrong, partial or foreign file is one line naming the first tensor that does not
fit, never a half-loaded model.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_edge.errors import ConfigError, ResnetEdgeError

#: Keras Applications' caffe preprocessing: these means are subtracted from B, G, R.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: Blocks per stage of the files Keras Applications publishes.
KERAS_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
MAX_WEIGHTS_BYTES = 4 << 30


class WeightsError(ResnetEdgeError):
    """A weights file that does not fit the network, or is not one we read."""


@dataclass
class WeightsFile:
    path: Path
    format: str  # "keras-applications" | "torchvision"
    depth: int
    variant: str
    classes: int | None  # None: a file without the classifier ("notop")
    mean: tuple[float, float, float]  # the model's built-in normalization, RGB, 0..255 units
    std: tuple[float, float, float]

    def identity(self) -> dict:
        """What a manifest records of the file: its name, sha256 and format."""
        from resnet_edge.io import sha256_file

        return {"file": self.path.name, "sha256": sha256_file(self.path), "format": self.format}


def _regular(path: Path) -> None:
    """A weights file must be a regular file of a sane size (a FIFO would block the reader, a device never end)."""
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"{path} is not a regular file (a directory, FIFO or device); give a weights file")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise WeightsError(f"{path} is {path.stat().st_size:,} bytes, more than any ResNet's weights")


def _h5(path: Path):
    import h5py

    _regular(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise WeightsError(f"{path} is not an HDF5 file: give a Keras Applications weights file "
                           "(resnet50_weights_tf_dim_ordering_tf_kernels.h5 and the like)") from None
    try:
        _only_inside(f, path)
    except BaseException:
        f.close()
        raise
    return f


#: The most objects a weights file may hold (ResNet-152's has about 1,600 groups and datasets).
MAX_H5_OBJECTS = 100_000


def _only_inside(f, path: Path) -> None:
    """Refuse an HDF5 file whose data is not all inside it: a dataset with external raw storage (its bytes
    in another file, /etc/passwd say), a virtual dataset (mapped from other files), an external link, a
    soft link (Keras never writes one; a loop of them makes h5py fail) or a user-defined link. Names are
    walked without following any link."""
    import h5py

    seen: set = set()
    count = 0
    todo = [("", f)]
    while todo:
        prefix, group = todo.pop()
        for name in group:
            count += 1
            if count > MAX_H5_OBJECTS:
                raise WeightsError(f"{path} holds more than {MAX_H5_OBJECTS:,} objects: not a weights file")
            full = f"{prefix}/{name}"
            shown = full[:120]
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise WeightsError(f"{path}: {shown} is an external link into another file ({str(link.filename)[:80]}); "
                                   "weights are read only from data stored inside the file itself")
            if not isinstance(link, h5py.HardLink):
                raise WeightsError(f"{path}: {shown} is a {'soft' if isinstance(link, h5py.SoftLink) else 'user-defined'} "
                                   "link; a Keras weights file holds none: refused")
            obj = group[name]
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    raise WeightsError(f"{path}: {shown} is a virtual dataset (mapped from other files); weights are "
                                       "read only from data stored inside the file itself")
                if obj.external:
                    raise WeightsError(f"{path}: {shown} keeps its data in an external file "
                                       f"({str(obj.external[0][0])[:80]}); weights are read only from data stored "
                                       "inside the file itself")
            elif isinstance(obj, h5py.Group):
                info = h5py.h5o.get_info(obj.id)
                key = getattr(info, "token", None) or info.addr
                if key not in seen:  # a group hard-linked twice is walked once
                    seen.add(key)
                    todo.append((full, obj))


def _check_classes(path: Path, classes: int | None) -> None:
    if classes is not None and not 1 <= classes <= MAX_CLASSES:
        raise WeightsError(f"{path}: its classifier has {classes:,} classes; at most {MAX_CLASSES:,} are supported "
                           "(as --classes)")


def _names(attr) -> list[str]:
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in list(attr)[:100_000]]


def describe(path: str | os.PathLike) -> WeightsFile:
    """What a weights file holds (format, depth, variant, classes) and the normalization it implies."""
    with _damaged(path):
        return _describe(Path(path))


@contextlib.contextmanager
def _damaged(path):
    """What h5py or safetensors raise on a damaged file, as one line naming it."""
    try:
        yield
    except (KeyError, OSError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise WeightsError(f"{path} is damaged: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}") from None


def _describe(path: Path) -> WeightsFile:
    if path.suffix.lower() == ".safetensors":
        return _describe_torchvision(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise WeightsError(f"{path.name}: weights are read from Keras Applications .h5 files and torchvision/timm "
                           ".safetensors files (a .pth/.pt file is a pickle, which could run code: convert it to "
                           ".safetensors with the safetensors package first)")
    with _h5(path) as f:
        if "layer_names" not in f.attrs:
            hint = " (a whole saved model, not a weights file)" if "model_config" in f.attrs else ""
            raise WeightsError(f"{path} is not a Keras Applications weights file{hint}: it has no layer_names")
        layers = _names(f.attrs["layer_names"])
        if "conv1_conv" not in layers:
            raise WeightsError(f"{path} is not a Keras Applications ResNet weights file: it has no conv1_conv layer")
        if "post_bn" in layers or any(n.endswith("_preact_bn") for n in layers):
            raise WeightsError(f"{path} is a ResNetV2 (pre-activation) file; resnet-edge builds the paper's original "
                               "networks: use resnet50/101/152_weights_tf_dim_ordering_tf_kernels.h5")
        blocks = []
        for stage in range(2, 6):
            found = {int(m.group(1)) for n in layers if (m := re.fullmatch(rf"conv{stage}_block(\d+)_1_conv", n))}
            blocks.append(max(found) if found else 0)
        depth = KERAS_DEPTHS.get(tuple(blocks))
        if depth is None:
            raise WeightsError(f"{path} has {'-'.join(map(str, blocks))} blocks per stage, not Keras Applications' "
                               "ResNet50 (3-4-6-3), ResNet101 (3-4-23-3) or ResNet152 (3-8-36-3); a ResNetV2 or "
                               "another network's file?")
        classes = None
        if "predictions" in layers and "predictions" in f:
            shapes = [d.shape for d in _h5_layer(f["predictions"]).values()]
            classes = int(shapes[-1][0]) if shapes and len(shapes[-1]) == 1 else None
            _check_classes(path, classes)
    rgb_mean = tuple(reversed(CAFFE_MEAN_BGR))
    return WeightsFile(path, "keras-applications", depth, "v1", classes, rgb_mean, (1.0, 1.0, 1.0))



# ---------------------------------------------------------------- torchvision (.safetensors)

#: Blocks per stage -> depth, for basic and bottleneck blocks.
TORCH_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34, ("bottleneck", (3, 4, 6, 3)): 50,
                ("bottleneck", (3, 4, 23, 3)): 101, ("bottleneck", (3, 8, 36, 3)): 152}
TORCH_DTYPES = {"F32", "F16", "F64"}
TORCHVISION_EPSILON = 1e-5


#: What a ResNet state dict can hold: ResNet-152's has 932 tensors and a header of about 90 kB.
MAX_TENSORS = 4096
MAX_HEADER_BYTES = 4 << 20
#: As --classes: a classifier of more classes is refused (a zero-byte [N, 0] tensor could claim any N).
MAX_CLASSES = 1_000_000
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def _safetensors_header(path: Path) -> dict:
    """The header of a .safetensors file, read and checked before the library sees it: at most
    :data:`MAX_HEADER_BYTES`, at most :data:`MAX_TENSORS` tensors, each of a known type, a sane shape
    and exactly the bytes its shape needs, inside the file."""
    import json
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path} is not a readable .safetensors file (only {len(head)} bytes)")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise WeightsError(f"{path} is not a readable .safetensors file: its header claims {n:,} bytes (a "
                               f"ResNet's is about 100 kB; limit {MAX_HEADER_BYTES:,})")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WeightsError(f"{path} is not a readable .safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} is not a readable .safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    if len(header) > MAX_TENSORS:
        raise WeightsError(f"{path} holds {len(header):,} tensors; a ResNet state dict holds at most about 1,000 "
                           f"(limit {MAX_TENSORS:,})")
    data = size - 8 - n
    for name, t in header.items():
        shown = str(name)[:80]
        ok = isinstance(t, dict) and t.get("dtype") in _ITEMSIZE and isinstance(t.get("shape"), list) \
            and len(t["shape"]) <= 8 and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 31
                                             for d in t["shape"]) \
            and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2 \
            and all(isinstance(o, int) and not isinstance(o, bool) for o in t["data_offsets"])
        if not ok:
            raise WeightsError(f"{path}: the header entry of {shown} is damaged")
        count = 1
        for d in t["shape"]:
            count *= d
        start, end = t["data_offsets"]
        if not 0 <= start <= end <= data or end - start != count * _ITEMSIZE[t["dtype"]]:
            raise WeightsError(f"{path}: {shown} ({t['dtype']} {t['shape']}) does not match its {end - start:,} bytes "
                               "in the file: damaged")
    return header


def _safetensors(path: Path):
    try:
        from safetensors import safe_open
    except ImportError:
        raise WeightsError("reading .safetensors needs the safetensors package: pip install safetensors") from None
    _regular(path)
    _safetensors_header(path)
    try:
        return safe_open(str(path), framework="numpy")
    except Exception as exc:  # the library's own error types vary: a damaged header is one line all the same
        raise WeightsError(f"{path} is not a readable .safetensors file ({str(exc).splitlines()[0][:120]})") from None


def _describe_torchvision(path: Path) -> WeightsFile:
    with _safetensors(path) as f:
        keys = list(f.keys())[:100_000]
        if "conv1.weight" not in keys or "bn1.running_mean" not in keys:
            raise WeightsError(f"{path} is not a torchvision/timm ResNet state dict: it has no conv1.weight and "
                               "bn1.running_mean")
        blocks = []
        for stage in range(1, 5):
            found = {int(m.group(1)) for k in keys if (m := re.fullmatch(rf"layer{stage}\.(\d+)\.conv1\.weight", k))}
            blocks.append(max(found) + 1 if found else 0)
        kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
        depth = TORCH_DEPTHS.get((kind, tuple(blocks)))
        if depth is None:
            raise WeightsError(f"{path} has {kind} blocks {'-'.join(map(str, blocks))} per stage: not torchvision's "
                               "ResNet-18/34/50/101/152")
        classes = int(f.get_slice("fc.weight").get_shape()[0]) if "fc.weight" in keys else None
        _check_classes(path, classes)
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD

    # a basic block has one stride, on its first 3x3, in both variants: v1 names that network here
    variant = "v1.5" if kind == "bottleneck" else "v1"
    return WeightsFile(path, "torchvision", depth, variant, classes, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))


def _torch_name(ours: str) -> str | None:
    """torchvision's prefix for our layer name (conv3_block2_1_conv -> layer2.1.conv1)."""
    if ours == "conv1_conv":
        return "conv1"
    if ours == "conv1_bn":
        return "bn1"
    if ours == "predictions":
        return "fc"
    m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", ours)
    if not m:
        return None
    stage, block, i, kind = int(m.group(1)) - 1, int(m.group(2)) - 1, int(m.group(3)), m.group(4)
    prefix = f"layer{stage}.{block}."
    if i == 0:
        return prefix + ("downsample.0" if kind == "conv" else "downsample.1")
    return prefix + (f"conv{i}" if kind == "conv" else f"bn{i}")


class _TorchLayer:
    """A layer's tensors in a state dict, under our names and in our layouts (read only when asked)."""

    KEYS = {"Conv2D": {"kernel": "weight"}, "Dense": {"kernel": "weight", "bias": "bias"},
            "BatchNormalization": {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                                   "moving_variance": "running_var"}}

    def __init__(self, f, prefix: str, kind: str, keys: set):
        self.f, self.prefix, self.kind = f, prefix, kind
        self.names = {ours: f"{prefix}.{theirs}" for ours, theirs in self.KEYS[kind].items() if f"{prefix}.{theirs}" in keys}
        if kind == "Conv2D" and f"{prefix}.bias" in keys:
            self.names["bias"] = f"{prefix}.bias"

    def __contains__(self, key):
        return key in self.names

    def keys(self):
        return self.names.keys()

    def __iter__(self):
        return iter(self.names)

    def __getitem__(self, key):
        return _TorchTensor(self.f, self.names[key], self.kind, key)


class _TorchTensor:
    def __init__(self, f, name: str, kind: str, key: str):
        self.f, self.name, self.kind, self.key = f, name, kind, key
        sl = f.get_slice(name)
        raw = tuple(int(d) for d in sl.get_shape())
        self.dtype_name = sl.get_dtype()
        if kind == "Conv2D" and key == "kernel" and len(raw) == 4:
            raw = (raw[2], raw[3], raw[1], raw[0])  # OIHW -> HWIO
        elif kind == "Dense" and key == "kernel" and len(raw) == 2:
            raw = (raw[1], raw[0])
        self.shape = raw

    @property
    def dtype(self):
        return np.dtype("float32") if self.dtype_name in TORCH_DTYPES else np.dtype("int64")

    def __getitem__(self, _):
        v = np.asarray(self.f.get_tensor(self.name))
        if self.kind == "Conv2D" and self.key == "kernel":
            v = v.transpose(2, 3, 1, 0)
        elif self.kind == "Dense" and self.key == "kernel":
            v = v.T
        return v


# ---------------------------------------------------------------- loading (both formats)


def load_into(model, wf: WeightsFile, new_classifier: bool = False) -> dict:
    """Set every weight of ``model`` (our network of ``wf``'s depth and variant, built with its
    normalization) from ``wf``: all or none. ``new_classifier`` keeps the model's own fresh classifier
    (another number of classes). Returns counts of what was loaded."""
    with _damaged(wf.path):
        return _load_into(model, wf, new_classifier)


@dataclass(frozen=True)
class Slot:
    """A layer that takes weights: its name, its kind (Conv2D, BatchNormalization, Dense) and the shapes
    of its weights in our order (a Keras model's, or the plan's without building anything)."""

    name: str
    kind: str
    shapes: tuple


def slots_of(model) -> list[Slot]:
    """The layers of a built model that take weights from a file."""
    out = []
    for layer in model.layers:
        ours = layer.get_weights()
        if not ours or layer.name == "preprocess" or (not layer.trainable and "subsample" in layer.name):
            continue
        out.append(Slot(layer.name, layer.__class__.__name__, tuple(tuple(w.shape) for w in ours)))
    return out


def slots_for(spec) -> list[Slot]:
    """The same layers from the family's plan (pure Python: no TensorFlow)."""
    from resnet_edge.arch.spec import plan

    p = plan(spec)

    def conv(c, cin):
        return [Slot(f"{c.name}_conv", "Conv2D", ((c.kernel, c.kernel, cin, c.filters),)),
                Slot(f"{c.name}_bn", "BatchNormalization", ((c.filters,),) * 4)]

    out = conv(p.stem, 3)
    for b in p.blocks:
        cin = b.in_channels
        for c in b.convs:
            out += conv(c, cin)
            cin = c.filters
        if b.projection is not None:
            out += conv(b.projection, b.in_channels)
    return out + [Slot("predictions", "Dense", ((p.features, spec.classes), (spec.classes,)))]


def check_file(wf: WeightsFile, new_classifier: bool = False) -> dict:
    """Check every tensor of ``wf`` (names, shapes, types, NaN, extra or missing ones) against the family's
    plan for its depth and variant, before TensorFlow loads: the same checks as :func:`load_into`, in a
    second or two instead of after the network is built. Returns the counts load_into would report."""
    from resnet_edge.arch.spec import resolve

    spec = resolve(wf.depth, family="imagenet", variant=wf.variant, classes=wf.classes or 1000)
    with _damaged(wf.path):
        planned = _planned(slots_for(spec), wf, new_classifier or wf.classes is None)
    return {"layers": len(planned), "tensors": sum(len(v) for _, v in planned)}


def _load_into(model, wf: WeightsFile, new_classifier: bool) -> dict:
    from resnet_edge.arch.keras_model import BN_EPSILON

    torch = wf.format == "torchvision"
    planned = _planned(slots_of(model), wf, new_classifier)
    layers = {layer.name: layer for layer in model.layers}
    values = {slot.name: v for slot, v in planned}
    for slot, v in planned:
        kind = slot.kind
        if kind == "Conv2D" and "bias" in v:  # BN(Wx + b) = BN'(Wx) with the mean moved by b
            bn = values.get(slot.name[: -len("_conv")] + "_bn")
            if bn is None:
                raise WeightsError(f"{wf.path.name}: {slot.name} has a bias but no BatchNormalization follows it here")
            bn["moving_mean"] = bn["moving_mean"] - v.pop("bias")
        if kind == "BatchNormalization" and torch:  # their epsilon, exactly
            v["moving_variance"] = v["moving_variance"] + np.float32(TORCHVISION_EPSILON - BN_EPSILON)
    if not torch:  # caffe input is BGR: reverse the first convolution's input channels instead of the image's
        values["conv1_conv"]["kernel"] = values["conv1_conv"]["kernel"][:, :, ::-1, :].copy()
    order = {"Conv2D": ["kernel"], "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
             "Dense": ["kernel", "bias"]}
    for slot, v in planned:
        layers[slot.name].set_weights([v[k] for k in order[slot.kind]])
    return {"layers": len(planned), "tensors": sum(len(v) for _, v in planned),
            "classifier": "new" if new_classifier else "loaded"}


def _planned(slots: list[Slot], wf: WeightsFile, new_classifier: bool) -> list[tuple[Slot, dict]]:
    """Every slot's tensors from the file, checked (all or none): the file is read here."""
    torch = wf.format == "torchvision"
    with (_safetensors(wf.path) if torch else _h5(wf.path)) as f:
        available = set(f.keys()) if torch else {n for n in _names(f.attrs["layer_names"]) if n in f}
        planned, used = [], set()
        for layer in slots:
            if layer.name == "predictions" and new_classifier:
                used |= {"fc.weight", "fc.bias"}
                continue
            if torch:
                prefix = _torch_name(layer.name)
                arrays = _TorchLayer(f, prefix, layer.kind, available) if prefix else None
                if arrays is not None and not arrays.names:
                    arrays = None
                where = prefix or layer.name
            else:
                arrays = _h5_layer(f[layer.name]) if layer.name in available else None
                where = layer.name
            if arrays is None:
                raise WeightsError(f"{wf.path.name} has no weights for {where} ({layer.name} here): it is not a "
                                   f"{wf.format} ResNet-{wf.depth} file, or it was cut")
            planned.append((layer, _fit(layer, arrays, wf.path.name)))
            if torch:
                used |= set(arrays.names.values()) | {f"{prefix}.num_batches_tracked"}
        if torch:
            extra = sorted(available - used)
            if extra:
                raise WeightsError(f"{wf.path.name} holds tensors that a torchvision ResNet-{wf.depth} does not: "
                                   f"{', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    return planned


def _h5_layer(group) -> dict:
    """A Keras weights group's datasets by their short names (kernel, bias, gamma, ...), unread."""
    return {name.split("/")[-1].split(":")[0]: group[name] for name in _names(group.attrs.get("weight_names", []))
            if name in group}


def _fit(layer: Slot, arrays, file_name: str) -> dict:
    """The file's tensors for ``layer``, checked against ours (names, shapes, types) before any is read."""
    kind = layer.kind
    needed = {"Conv2D": ["kernel"], "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"],
              "Dense": ["kernel", "bias"]}.get(kind)
    if needed is None:
        raise WeightsError(f"cannot load weights into {layer.name} ({kind})")
    shapes = dict(zip(needed, layer.shapes))
    optional = {}
    if kind == "Conv2D":
        optional["bias"] = (layer.shapes[0][-1],)  # Keras Applications' convolutions have one; folded below
    out = {}
    for key in needed + [k for k in optional if k in arrays]:
        if key not in arrays:
            raise WeightsError(f"{file_name}: {layer.name}/{key} is missing")
        d = arrays[key]
        tensor = f"{d.name} ({layer.name}/{key} here)" if isinstance(d, _TorchTensor) else f"{layer.name}/{key}"
        want = shapes.get(key) or optional[key]
        if tuple(d.shape) != tuple(want):
            raise WeightsError(f"{file_name}: {tensor} has shape {tuple(d.shape)}, the network expects "
                               f"{tuple(want)}: a file for another depth, variant or number of classes")
        if getattr(d, "dtype_name", None) not in (None, *TORCH_DTYPES) or d.dtype.kind != "f":
            raise WeightsError(f"{file_name}: {tensor} holds {getattr(d, 'dtype_name', d.dtype)}, not "
                               "floating-point weights")
        out[key] = np.asarray(d[()], dtype=np.float32)
        if not np.isfinite(out[key]).all():
            raise WeightsError(f"{file_name}: {tensor} holds NaN or infinite values")
    extra = set(arrays) - set(needed) - set(optional)
    if extra:
        raise WeightsError(f"{file_name}: {layer.name} has tensors the network does not: {', '.join(sorted(extra))[:120]}")
    return out


# ---------------------------------------------------------------- --weights imagenet: files already here

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
#: Keras Applications' published files and their MD5s (with the classifier, without), as tf_keras lists them.
KERAS_FILES = {
    50: ("resnet50", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    101: ("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    152: ("resnet152", "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
TIMM_URL = "https://huggingface.co/timm/resnet{depth}.tv_in1k"


@dataclass(frozen=True)
class WeightsChoice:
    """The network a weights file makes: its depth and variant, the classes (the file's unless others are
    asked for: then the classifier is new), the normalization the weights were trained with, and a warning
    about the file (a checksum that differs from the published one)."""

    file: WeightsFile
    depth: int
    variant: str
    classes: int
    preprocess: object  # arch.spec.Preprocess
    new_classifier: bool
    warning: str | None = None


def choose(path: str | os.PathLike, depth: int | None = None, variant: str | None = None, classes: int | None = None,
           raw_input: str | None = None) -> WeightsChoice:
    """The weights at ``path`` (``imagenet``: the published file for ``depth`` and ``variant`` from the weight
    folders), described and checked tensor by tensor against the network's plan before TensorFlow loads;
    :class:`ResnetEdgeError` in one line when the file is not for ``depth`` or ``variant``."""
    from resnet_edge.arch.spec import Preprocess

    warning = None
    if str(path) == "imagenet":
        if depth is None:
            raise ConfigError("--weights imagenet needs --depth (18, 34, 50, 101 or 152)")
        path, warning = imagenet_file(depth, variant)
    wf = describe(path)
    if depth is not None and depth != wf.depth:
        raise ConfigError(f"{Path(path).name} holds ResNet-{wf.depth} weights, not ResNet-{depth}: "
                              f"drop --depth or give --depth {wf.depth}")
    if variant is not None and variant != wf.variant:
        raise ConfigError(f"{Path(path).name} is a {wf.variant} network ({wf.format}), not {variant}")
    new_classifier = wf.classes is None or (classes is not None and classes != wf.classes)
    check_file(wf)  # every tensor against the plan, before TensorFlow loads and before anything is written
    return WeightsChoice(wf, wf.depth, wf.variant, classes or wf.classes or 1000,
                         Preprocess(wf.mean, wf.std, raw_input or "float32"), new_classifier, warning)


def weight_folders() -> list[Path]:
    """Where ``--weights imagenet`` looks: ``$RESNET_EDGE_WEIGHTS``, then the Keras cache (``~/.keras/models``)."""
    folders = [Path(os.environ["RESNET_EDGE_WEIGHTS"])] if os.environ.get("RESNET_EDGE_WEIGHTS") else []
    return folders + [Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"]


def imagenet_file(depth: int, variant: str | None) -> tuple[Path, str | None]:
    """The published ImageNet weights for ResNet-``depth`` already on this machine (nothing is downloaded):
    Keras Applications' file for 50/101/152 (the paper's v1), torchvision's (timm's ``resnet{depth}.tv_in1k``)
    for 18/34 or ``variant`` v1.5. Returns the path and a warning (a Keras file whose MD5 is not the
    published one), or raises :class:`WeightsError` naming the file to get and where from."""
    folders = weight_folders()
    if depth in KERAS_FILES and variant != "v1.5":
        stem, top, notop = KERAS_FILES[depth]
        names = {f"{stem}_weights_tf_dim_ordering_tf_kernels.h5": top,
                 f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5": notop}
        for folder in folders:
            for name, md5 in names.items():
                if (folder / name).is_file():
                    return folder / name, _md5_warning(folder / name, md5)
        name = next(iter(names))
        raise WeightsError(f"no ImageNet weights for ResNet-{depth} here (nothing is downloaded): get {name} from "
                           f"{KERAS_BASE_URL}{name} and put it in {' or '.join(str(f) for f in folders)}")
    if depth not in (18, 34, 50, 101, 152):
        raise WeightsError(f"published ImageNet weights exist for ResNet-18/34/50/101/152, not ResNet-{depth}")
    name = f"resnet{depth}.tv_in1k.safetensors"
    hub = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    candidates = [folder / name for folder in folders]
    candidates += sorted(hub.glob(f"models--timm--resnet{depth}.tv_in1k/snapshots/*/model.safetensors"))
    for path in candidates:
        if path.is_file():
            return path, None
    raise WeightsError(f"no ImageNet weights for ResNet-{depth} ({'v1.5, ' if depth >= 50 else ''}torchvision's) here "
                       f"(nothing is downloaded): get model.safetensors from {TIMM_URL.format(depth=depth)}, save it as "
                       f"{name} in {' or '.join(str(f) for f in folders)}")


def _md5_warning(path: Path, md5: str) -> str | None:
    import hashlib

    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() == md5:
        return None
    return (f"{path.name} is not the file Keras Applications publishes (MD5 {h.hexdigest()[:12]}..., published "
            f"{md5[:12]}...): another or a damaged download; its weights are loaded as they are")
