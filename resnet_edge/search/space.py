"""The search space, from the family (never hand-listed): depth (the family that fits the data), a keep ratio per
stage for the convolutions inside the blocks, and the quantization mode. A candidate's latency does not depend on
its weights, so it is measured untrained."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from resnet_edge.errors import ConfigError

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS = (18, 34, 50)
KEEPS = (0.25, 0.5, 0.75, 1.0)
MODES = ("int8", "float16", "int16x8")


@dataclass(frozen=True)
class Candidate:
    depth: int
    keep: tuple[float, ...]  # per stage
    mode: str

    @property
    def key(self) -> str:
        """The candidate's name and the hash of its architecture (the store's name for its measurements)."""
        arch = json.dumps({"depth": self.depth, "keep": list(self.keep), "mode": self.mode}, sort_keys=True)
        return f"resnet{self.depth}-k{'-'.join(f'{k:g}' for k in self.keep)}-{self.mode}-" + \
            hashlib.sha256(arch.encode()).hexdigest()[:10]

    def to_dict(self) -> dict:
        return {"depth": self.depth, "keep": list(self.keep), "mode": self.mode, "key": self.key}


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

    def candidates(self) -> list[Candidate]:
        return [Candidate(d, keep, m) for d in self.depths for keep in itertools.product(self.keeps, repeat=self.stages)
                for m in self.modes]


def check_choices(depths=None, keeps=None, modes=None) -> None:
    """What can be checked of --depths, --widths and --modes without the data."""
    bad = [d for d in depths or () if d not in CIFAR_DEPTHS + IMAGENET_DEPTHS]
    if bad:
        raise ConfigError(f"--depths {','.join(map(str, bad))}: the search takes CIFAR depths "
                          f"{', '.join(map(str, CIFAR_DEPTHS))} (32 px data) or ImageNet {', '.join(map(str, IMAGENET_DEPTHS))}")
    if any(not 0.05 <= k <= 1.0 for k in keeps or ()):
        raise ConfigError(f"--widths are keep ratios between 0.05 and 1, got {','.join(map(str, keeps))}")
    bad = [m for m in modes or () if m not in MODES]
    if bad:
        raise ConfigError(f"--modes {','.join(bad)}: choose from {', '.join(MODES)}")


def family_for(image_size: int | None) -> str:
    """The family that fits the data: CIFAR ResNets for images up to 32 px, ImageNet ResNets above."""
    return "cifar" if (image_size or 32) <= 32 else "imagenet"


def space_for(image_size: int | None, depths=None, keeps=None, modes=None) -> Space:
    """The space for data of ``image_size``: CIFAR ResNets up to 32 px, ImageNet ResNet-18/34/50 above."""
    check_choices(depths, keeps, modes)
    family = family_for(image_size)
    allowed = CIFAR_DEPTHS if family == "cifar" else IMAGENET_DEPTHS
    depths = depths or allowed
    bad = [d for d in depths if d not in allowed]
    if bad:
        raise ConfigError(f"--depths {','.join(map(str, bad))}: {family} data ({image_size} px) searches "
                          f"{', '.join(map(str, allowed))}")
    keeps, modes = keeps or KEEPS, modes or MODES
    return Space(family, tuple(depths), tuple(sorted(set(keeps))), tuple(modes), 3 if family == "cifar" else 4)


def spec_of(candidate: Candidate, base):
    """The network of ``candidate``: ``base`` (the data's spec at that depth) with each stage's inner widths kept."""
    from resnet_edge.arch.spec import plan

    widths = []
    for block in plan(base).blocks:
        stage = int(block.name[4]) - 2
        k = candidate.keep[stage]
        widths.append(tuple(max(1, int(round(c.filters * k))) for c in block.convs[:-1]))
    return base.replace(inner_widths=tuple(widths))


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
