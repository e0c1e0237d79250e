"""The search space, from the family (never hand-listed): depth (the family that fits the data), a keep ratio per
stage for the convolutions inside the blocks and (``--streams``) one for each stage's residual stream, the input
resolution (image folders, whose images are resized), the
quantization mode (QAT int8 among them) and the runtime that runs it on the device. A candidate's latency does not
depend on its weights, so it is measured untrained."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from resnet_edge.errors import ConfigError

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS = (18, 34, 50)
KEEPS = (0.25, 0.5, 0.75, 1.0)
#: Quantization modes: int8 and int16x8 calibrated on training images, float16, and qat (int8 after
#: quantization-aware training: the trained network fine-tuned with fake quantization, then converted).
MODES = ("int8", "float16", "int16x8", "qat")
#: The modes whose model is integer-only (``--io int8|uint8`` takes nothing else).
INTEGER_MODES = ("int8", "qat")
#: Runtimes a candidate may be timed on: LiteRT (XNNPACK; what MediaPipe and the Task Library run) and OpenVINO's CPU
#: plugin reading the same .tflite (x86 devices that have it).
RUNTIMES = ("litert", "openvino")
SIZES = (16, 1024)  # the input resolutions the search takes, in px


@dataclass(frozen=True)
class Candidate:
    depth: int
    keep: tuple[float, ...]  # per stage
    mode: str
    size: int | None = None  # the input resolution; None: the data's own (or the family's)
    runtime: str = "litert"
    stream: tuple[float, ...] | None = None  # the keep ratio of each stage's residual stream; None: all of it

    def __post_init__(self):
        if self.stream is not None and all(r == 1 for r in self.stream):
            object.__setattr__(self, "stream", None)  # the whole stream is the default: one name for one network

    @property
    def key(self) -> str:
        """The candidate's name and the hash of what it is (the store's name for its measurements): a size and a
        runtime other than LiteRT are named only when given, so the names of the first searches stay."""
        what = {"depth": self.depth, "keep": list(self.keep), "mode": self.mode}
        what.update({"size": self.size} if self.size is not None else {})
        what.update({"runtime": self.runtime} if self.runtime != "litert" else {})
        what.update({"stream": list(self.stream)} if self.stream is not None else {})
        return (f"resnet{self.depth}" + (f"-s{self.size}" if self.size is not None else "")
                + f"-k{'-'.join(f'{k:g}' for k in self.keep)}"
                + (f"-r{'-'.join(f'{k:g}' for k in self.stream)}" if self.stream is not None else "") + f"-{self.mode}"
                + (f"-{self.runtime}" if self.runtime != "litert" else "") + "-"
                + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10])

    @property
    def trained_as(self) -> tuple:
        """What training sees of the candidate: two candidates that differ only in the mode or the runtime train the
        same float network (its weights are converted in each mode, :mod:`resnet_edge.search.shipped`)."""
        return (self.depth, self.keep, self.stream, self.size)

    def to_dict(self) -> dict:
        return {"depth": self.depth, "keep": list(self.keep), "stream": list(self.stream) if self.stream else None,
                "mode": self.mode, "size": self.size, "runtime": self.runtime, "key": self.key}


def parse_list(text: str | None, kind, what: str) -> tuple | None:
    """``"20,56"`` -> (20, 56); None stays None. One line naming the option otherwise."""
    if text is None:
        return None
    try:
        out = tuple(kind(x.strip()) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{what} is a comma-separated list, got {text!r}") from None
    if not out:
        raise ConfigError(f"--{what} is empty")
    return out


@dataclass(frozen=True)
class Space:
    family: str
    depths: tuple[int, ...]
    keeps: tuple[float, ...]
    modes: tuple[str, ...]
    stages: int
    sizes: tuple[int | None, ...] = (None,)
    runtimes: tuple[str, ...] = ("litert",)
    streams: tuple[float, ...] = (1.0,)

    def candidates(self) -> list[Candidate]:
        """Every candidate of the space; those whose stream would narrow where shortcut A cannot (see
        :func:`spec_of`) are left out by the search."""
        return [Candidate(d, keep, m, size, rt, stream) for d in self.depths for size in self.sizes
                for keep in itertools.product(self.keeps, repeat=self.stages)
                for stream in itertools.product(self.streams, repeat=self.stages) for m in self.modes
                for rt in self.runtimes]


def check_choices(depths=None, keeps=None, modes=None, sizes=None, runtimes=None, streams=None) -> None:
    """What can be checked of --depths, --widths, --modes, --sizes, --runtimes and --streams without the data."""
    bad = [d for d in depths or () if d not in CIFAR_DEPTHS + IMAGENET_DEPTHS]
    if bad:
        raise ConfigError(f"--depths {','.join(map(str, bad))}: the search takes CIFAR depths "
                          f"{', '.join(map(str, CIFAR_DEPTHS))} (32 px data) or ImageNet {', '.join(map(str, IMAGENET_DEPTHS))}")
    if any(not 0.05 <= k <= 1.0 for k in keeps or ()):
        raise ConfigError(f"--widths are keep ratios between 0.05 and 1, got {','.join(map(str, keeps))}")
    if any(not 0.05 <= k <= 1.0 for k in streams or ()):
        raise ConfigError(f"--streams are keep ratios between 0.05 and 1, got {','.join(map(str, streams))}")
    bad = [m for m in modes or () if m not in MODES]
    if bad:
        raise ConfigError(f"--modes {','.join(bad)}: choose from {', '.join(MODES)}")
    bad = [str(x) for x in sizes or () if not SIZES[0] <= x <= SIZES[1]]
    if bad:
        raise ConfigError(f"--sizes {','.join(bad)}: input resolutions are {SIZES[0]} to {SIZES[1]} px")
    bad = [str(x) for x in sizes or () if 32 < x < 64]
    if bad:
        raise ConfigError(f"--sizes {','.join(bad)}: above 32 px images are searched with the ImageNet family, whose stem "
                          "and stages shrink them 32x: give 64 px or more (or up to 32 for the CIFAR family)")
    if sizes and family_for(min(sizes)) != family_for(max(sizes)):
        raise ConfigError(f"--sizes {','.join(map(str, sizes))} mixes the CIFAR family (up to 32 px) and the ImageNet "
                          "one (above): search one of them at a time")
    bad = [r for r in runtimes or () if r not in RUNTIMES]
    if bad:
        raise ConfigError(f"--runtimes {','.join(bad)}: choose from {', '.join(RUNTIMES)}")


def check_epochs(epochs: int, max_epochs: int | None) -> None:
    """A training budget (``--max-epochs``) smaller than one trial's ``--epochs`` would let no trial finish."""
    if max_epochs is not None and max_epochs < epochs:
        raise ConfigError(f"--max-epochs {max_epochs} is less than one trial's --epochs {epochs}: no trial could finish; "
                          "give a larger --max-epochs or fewer --epochs")


def check_io(io: str, modes) -> None:
    """An integer input and output (``--io int8|uint8``) exists only for a full-integer model: every mode searched must
    be int8, since any candidate may win."""
    if io != "float32" and not set(modes or MODES) <= set(INTEGER_MODES):
        raise ConfigError(f"--io {io} is for full-integer models: give --modes int8 (or int8,qat) with it (the winner "
                          "may be any mode searched)")


def check_jobs(jobs: int, local: bool) -> None:
    """``--jobs`` trains beside the device's timings: only for a device elsewhere (``local``: it is this machine)."""
    if jobs > 1 and local:
        raise ConfigError(f"--jobs {jobs} trains beside the device's timings, and the device is this machine: its "
                          "timings would carry the training's load; give a device elsewhere (--target ssh://...), "
                          "or leave --jobs out")


def family_for(image_size: int | None) -> str:
    """The family that fits the data: CIFAR ResNets for images up to 32 px, ImageNet ResNets above."""
    return "cifar" if (image_size or 32) <= 32 else "imagenet"


def space_for(image_size: int | None, depths=None, keeps=None, modes=None, sizes=None, runtimes=None,
              streams=None) -> Space:
    """The space for data of ``image_size`` (None: an image folder, resized to any ``sizes``): CIFAR ResNets up to
    32 px, ImageNet ResNet-18/34/50 above; the residual stream keeps its width unless ``streams`` are given."""
    check_choices(depths, keeps, modes, sizes, runtimes, streams)
    if sizes and image_size is not None:
        raise ConfigError(f"--sizes: these images are all {image_size}x{image_size} (the data is not resized); "
                          "input resolution is searched on an image folder (folder:DIR)")
    family = family_for(min(sizes) if sizes else image_size)
    allowed = CIFAR_DEPTHS if family == "cifar" else IMAGENET_DEPTHS
    depths = depths or allowed
    bad = [d for d in depths if d not in allowed]
    if bad:
        raise ConfigError(f"--depths {','.join(map(str, bad))}: {family} data ({image_size} px) searches "
                          f"{', '.join(map(str, allowed))}")
    keeps, modes = keeps or KEEPS, modes or MODES
    return Space(family, tuple(depths), tuple(sorted(set(keeps))), tuple(modes), 3 if family == "cifar" else 4,
                 tuple(sorted(set(sizes))) if sizes else (None,), tuple(runtimes) if runtimes else ("litert",),
                 tuple(sorted(set(streams))) if streams else (1.0,))


def spec_of(candidate: Candidate, base):
    """The network of ``candidate``: ``base`` (the data's spec at that depth) with each stage's inner widths and
    residual stream kept as :func:`resnet_edge.optimize.channels.thin` keeps them (:func:`resnet_edge.arch.spec.thinned`;
    a recipe's ``model.keep`` and ``model.stream`` build the same). A stream narrower than the stage's before it, with
    shortcut A: ConfigError."""
    from resnet_edge.arch.spec import thinned

    return thinned(base, candidate.keep, candidate.stream)


def features(spec) -> list[float]:
    """What the latency model sees of a network: 1, and the MACs (in millions) of the stem and of each stage,
    and the number of blocks (each adds ops whose cost is not in its MACs)."""
    import math

    from resnet_edge.arch.spec import plan

    p = plan(spec)
    size = spec.input_size
    out = {"stem": 0.0}
    size_out = math.ceil(size / p.stem.stride)
    out["stem"] = p.stem.kernel ** 2 * 3 * p.stem.filters * size_out ** 2 / 1e6
    size = math.ceil(size_out / 2) if p.stem_pool else size_out
    channels = p.stem.filters
    for block in p.blocks:
        stage = block.name[:5]
        cin = channels
        for c in block.convs:
            size = math.ceil(size / c.stride)
            out[stage] = out.get(stage, 0.0) + c.kernel ** 2 * cin * c.filters * size ** 2 / 1e6
            cin = c.filters
        if block.projection is not None:
            out[stage] += block.projection.kernel ** 2 * channels * block.projection.filters * size ** 2 / 1e6
        channels = block.out_channels
    return [1.0, *out.values(), float(len(p.blocks))]
