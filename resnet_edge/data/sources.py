"""Data sources, as numpy arrays or file lists, split into train/validation/test (no TensorFlow here).

A source is named by a string, as on the command line:

* ``digits``: the real handwritten digits scikit-learn ships (1,797 images, 8x8, 10 classes, offline),
  scaled to 0..255, upscaled to 32x32 (bilinear) and repeated over 3 channels. A fixed, seeded,
  stratified split: 70% train, 10% validation, 20% test.
* ``cifar10:DIR``: the CIFAR-10 "python version" batches (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``) that users download themselves. These are pickles: they are read with
  a restricted unpickler that admits only the numpy types they contain, so a tampered file is refused
  instead of running code. The validation split is a seeded, stratified 10% of the training batches.
* ``folder:DIR``: one sub-folder per class holding JPEG/PNG files (ImageNet style). If DIR has ``train/``
  and ``val/`` sub-folders they are used as they are (``test/`` too, else validation doubles as test);
  otherwise the files are split 70/10/20 like digits. Unreadable images are skipped and counted, or
  refused with ``strict=True``.

Every source records its per-channel mean and std (0..255 units, from the training split) so that
training and conversion can put normalization inside the model.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.ui import safe_text

# Image suffixes and evaluation resizing (training's pipeline, eval here and eval on a device): below
# CIFAR_STYLE_BELOW pixels a plain resize, else the shorter side to size / EVAL_CROP and a centered crop.
# They live in the edge runner, which must stand alone on a device.
from resnet_edge.harness import CIFAR_STYLE_BELOW, EVAL_CROP, IMAGE_SUFFIXES  # noqa: F401

SPLIT_SEED = 0


class DataError(ResnetEdgeError):
    """A data source that is missing, malformed or not what it claims to be."""


@dataclass
class Split:
    """One split: labels plus either decoded images (uint8, N x H x W x 3) or image file paths."""

    y: np.ndarray
    x: np.ndarray | None = None
    files: list[str] | None = None

    def __len__(self) -> int:
        return int(len(self.y))

    def take(self, n: int | None) -> "Split":
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return Split(self.y[:n], None if self.x is None else self.x[:n], None if self.files is None else self.files[:n])


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    #: Side of the stored images for in-memory sources (a model must take exactly this size);
    #: None for image folders, whose images are resized to the model's input.
    image_size: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: Horizontal flips keep the label (not for digits, where a flip changes the meaning).
    flip: bool = True
    skipped: list[str] = field(default_factory=list)
    #: Why each skipped file was skipped (a FIFO, too many pixels, cut off, ...), by path.
    skipped_why: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; valid: train, val, test")
        return getattr(self, name)

    def info(self) -> dict:
        """What a manifest records about the data."""
        return {
            "source": self.name,
            "classes": list(self.classes),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "image_size": self.image_size,
            "mean": [round(float(m), 4) for m in self.mean],
            "std": [round(float(s), 4) for s in self.std],
            "flip": self.flip,
            "skipped_images": len(self.skipped),
        }

    def subset(self, n: int | None) -> "Dataset":
        """The same source with at most ``n`` examples per split (for smoke tests)."""
        if n is None:
            return self
        return dataclasses.replace(
            self, train=self.train.take(n), val=self.val.take(n), test=self.test.take(n)
        )


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N x H x W x 3), in 0..255 units."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return tuple(flat.mean(axis=0).tolist()), tuple(np.maximum(flat.std(axis=0), 1e-3).tolist())


def stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """Indices of a seeded split that keeps each class's share in every part (sizes per class rounded)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        bounds = np.round(np.cumsum(fractions) / sum(fractions) * len(idx)).astype(int)
        start = 0
        for i, end in enumerate(bounds):
            parts[i].extend(idx[start:end].tolist())
            start = end
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


# ---------------------------------------------------------------------------------------------------
# digits


DIGITS_FILE = "datasets/data/digits.csv.gz"  # inside scikit-learn's package folder: 1,797 rows of 64 pixels + label


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(images 1797x8x8 float 0..16, labels)``, the arrays of
    ``sklearn.datasets.load_digits()``, read from the file scikit-learn ships without importing
    scikit-learn (its import alone takes 1.5-3 s; this takes about 20 ms)."""
    import gzip
    import importlib.util

    try:
        spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    except (ImportError, ValueError):  # pragma: no cover
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits data set needs scikit-learn: pip install 'resnet-edge[host]'")
    path = Path(list(spec.submodule_search_locations)[0]) / DIGITS_FILE
    try:
        with gzip.open(path, "rb") as f:
            text = f.read(4 * 2 ** 20 + 1)  # about 340 kB; bounded all the same
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read scikit-learn's digits ({path}): {exc}; reinstall scikit-learn") from None
    try:
        data = np.loadtxt(text.decode("ascii").splitlines(), delimiter=",", ndmin=2)
    except (ValueError, UnicodeDecodeError):
        data = np.zeros((0, 0))
    if len(text) > 4 * 2 ** 20 or data.shape != (1797, 65):
        raise DataError(f"scikit-learn's digits ({path}) are not 1,797 rows of 65 numbers; reinstall scikit-learn")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def load_digits(size: int = 32) -> Dataset:
    from PIL import Image

    images, target = digits_arrays()
    pixels = np.clip(np.round(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    up = np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in pixels])
    x = np.repeat(up[..., None], 3, axis=-1)
    y = target.astype(np.int64)
    train, val, test = stratified_split(y, (0.7, 0.1, 0.2))
    mean, std = channel_stats(x[train])
    return Dataset(
        "digits",
        [str(c) for c in range(10)],
        Split(y[train], x[train]),
        Split(y[val], x[val]),
        Split(y[test], x[test]),
        image_size=size,
        mean=mean,
        std=std,
        flip=False,
    )


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 python batches

CIFAR_LAYOUT = "DIR/data_batch_1 .. data_batch_5, DIR/test_batch and DIR/batches.meta (cifar-10-python.tar.gz, extracted)"


class _RestrictedUnpickler(pickle.Unpickler):
    """Admit only what the CIFAR batches contain: dicts, lists, bytes, ints and numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def read_cifar_pickle(path: Path) -> dict:
    """Read one CIFAR batch with the restricted unpickler; bytes keys become str."""
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"refusing {path}: {exc}; this is not a genuine CIFAR-10 batch (re-download it)") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"cannot read {path} as a CIFAR-10 batch ({type(exc).__name__}: {exc}); expected {CIFAR_LAYOUT}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch (a dict was expected); expected {CIFAR_LAYOUT}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{path} has no {exc.args[0]!r} entry; expected a CIFAR-10 batch ({CIFAR_LAYOUT})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: data of shape {data.shape} with {len(labels)} labels; CIFAR-10 batches hold N x 3072 uint8 rows")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(directory: str | os.PathLike) -> Dataset:
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"CIFAR-10 directory not found: {root}; expected {CIFAR_LAYOUT}")
    if not (root / "test_batch").exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train_files = sorted(root.glob("data_batch_*"))
    if not train_files or not (root / "test_batch").exists():
        raise DataError(f"{root} is not a CIFAR-10 python-version folder; expected {CIFAR_LAYOUT}")
    xs, ys = zip(*(_cifar_arrays(f) for f in train_files))
    x, y = np.concatenate(xs), np.concatenate(ys)
    x_test, y_test = _cifar_arrays(root / "test_batch")
    names = [str(i) for i in range(int(max(y.max(), y_test.max())) + 1)]
    if (root / "batches.meta").exists():
        meta = read_cifar_pickle(root / "batches.meta")
        label_names = meta.get("label_names")
        if label_names:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in label_names]
    if y.max() >= len(names) or y.min() < 0:
        raise DataError(f"{root}: labels outside 0..{len(names) - 1}")
    train, val = stratified_split(y, (0.9, 0.1))
    mean, std = channel_stats(x[train])
    return Dataset(
        f"cifar10:{directory}", names, Split(y[train], x[train]), Split(y[val], x[val]), Split(y_test, x_test),
        image_size=32, mean=mean, std=std,
    )


# ---------------------------------------------------------------------------------------------------
# image folders

FOLDER_LAYOUT = "DIR/<class>/<image>.jpg|.png (one sub-folder per class), optionally under DIR/train and DIR/val"


def _usable(path, strict: bool, skipped: list[str], reasons: dict[str, str], decode: bool = False):
    """The image at ``path`` (decoded when ``decode``; else only checked: type, header, pixel count before
    decoding, :func:`~resnet_edge.harness.open_image`), or None when it cannot be used: then it is
    counted in ``skipped`` with why in ``reasons``, or with ``strict`` refused."""
    from resnet_edge.harness import BadImage, open_image

    try:
        img = open_image(str(path), decode=decode)
        return img if decode else True
    except BadImage as exc:
        if strict:
            raise DataError(exc.refusal(safe_text(path, 200))) from None
        skipped.append(str(path))
        reasons[str(path)] = str(exc)
        return None


def _scan(root: Path, classes: list[str] | None, strict: bool, skipped: list[str],
          reasons: dict[str, str]) -> tuple[list[str], list[str], np.ndarray]:
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        extra = sorted(set(found) - set(classes))
        raise DataError(f"{root} has class folders {extra} that train/ does not have; every split needs the same classes")
    files, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if f.is_dir() and not f.is_symlink():
                continue
            if not _usable(f, strict, skipped, reasons):  # a FIFO, a link to /dev/zero, a broken link, a bomb
                continue
            files.append(str(f))
            labels.append(label)
    return classes, files, np.asarray(labels, dtype=np.int64)


def load_folder(directory: str | os.PathLike, strict: bool = False, stats_images: int = 256) -> Dataset:
    from PIL import Image

    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}; expected {FOLDER_LAYOUT}")
    skipped: list[str] = []
    reasons: dict[str, str] = {}
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes, f_train, y_train = _scan(root / "train", None, strict, skipped, reasons)
        _, f_val, y_val = _scan(root / "val", classes, strict, skipped, reasons)
        if (root / "test").is_dir():
            _, f_test, y_test = _scan(root / "test", classes, strict, skipped, reasons)
        else:
            f_test, y_test = f_val, y_val
    else:
        classes, files, y = _scan(root, None, strict, skipped, reasons)
        train, val, test = stratified_split(y, (0.7, 0.1, 0.2))
        f_train, f_val, f_test = ([files[i] for i in idx] for idx in (train, val, test))
        y_train, y_val, y_test = y[train], y[val], y[test]
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a classifier needs at least 2 ({FOLDER_LAYOUT})")
    if not f_train and not f_val:
        raise DataError(f"{root} has no readable .jpg/.png images in its class folders (expected {FOLDER_LAYOUT})")
    if not f_train or not f_val:
        found = len(f_train) + len(f_val) + (0 if f_test is f_val else len(f_test))
        raise DataError(f"{root} has {found} readable images, too few to leave any for {'training' if not f_train else 'validation'}; "
                        "give at least 10 per class, or train/ and val/ folders")
    # Mean/std from a seeded sample of training images, each reduced to 64x64 (the statistics hardly depend on size).
    pick = np.random.default_rng(SPLIT_SEED).permutation(len(f_train))[:stats_images]
    sample = []
    for i in pick:  # decoded whole: a file that is cut off is counted as skipped (or fails with --strict) here
        img = _usable(f_train[i], strict, skipped, reasons, decode=True)
        if img is not None:
            sample.append(np.asarray(img.resize((64, 64), Image.BILINEAR)))
    if not sample:
        raise DataError(f"{root}: none of the training images could be decoded (expected {FOLDER_LAYOUT})")
    sample = np.stack(sample)
    mean, std = channel_stats(sample)
    return Dataset(
        f"folder:{directory}", classes, Split(y_train, files=f_train), Split(y_val, files=f_val),
        Split(y_test, files=f_test), image_size=None, mean=mean, std=std, skipped=skipped, skipped_why=reasons,
    )


# ---------------------------------------------------------------------------------------------------
# registry

SOURCES: dict[str, tuple[str, Callable[..., Dataset]]] = {
    "digits": ("scikit-learn's 8x8 handwritten digits, upscaled to 32x32x3 (bundled, offline)", lambda arg, strict: load_digits()),
    "cifar10": ("CIFAR-10 python-version batches: cifar10:DIR", lambda arg, strict: load_cifar10(arg)),
    "folder": ("an image folder, one sub-folder per class: folder:DIR", lambda arg, strict: load_folder(arg, strict=strict)),
}


def load(source: str, strict: bool = False) -> Dataset:
    """Load a data source by its command-line name (``digits``, ``cifar10:DIR``, ``folder:DIR``)."""
    kind, _, arg = source.partition(":")
    if kind not in SOURCES:
        valid = "; ".join(f"{k} ({v[0]})" for k, v in SOURCES.items())
        raise DataError(f"unknown data source {source!r}; valid: {valid}")
    if kind != "digits" and not arg:
        raise DataError(f"give a directory: --data {kind}:DIR")
    if kind == "digits" and arg:
        raise DataError("digits takes no argument: --data digits")
    return SOURCES[kind][1](arg, strict)
