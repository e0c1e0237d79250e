"""The ResNet family of He et al. (2015) as data, with an exact parameter and MAC counter.

Pure Python (no TensorFlow): the registry, ``resnet-edge models`` and every count here run on any
machine. The Keras builder (:mod:`resnet_edge.arch.keras_model`) turns the same :func:`plan` into
layers, so the count and the model cannot drift apart; the tests hold both against the paper and
against Keras's own count.

* ImageNet family (Table 1): 7x7/2 stem and 3x3/2 max pool, four stages of 64/128/256/512 channels
  (x4 at the output of bottleneck blocks), basic blocks for 18/34 and bottlenecks for 50/101/152.
* CIFAR family (Section 4.2): depth = 6n + 2, a 3x3 stem of 16 filters, three stages of 16/32/64
  filters on 32/16/8 maps, n basic blocks per stage.
* Shortcuts (Section 3.3): A = identity, zero-padded channels and stride-2 subsampling where the shape
  changes (parameter-free; the paper's CIFAR choice); B = projection (1x1 conv + BN) only where the shape
  changes (the paper's ImageNet choice); C = projection on every block. A *plain* net drops the
  shortcuts and keeps every other layer.
* ``variant``: "v1" puts a bottleneck's stride on its first 1x1 convolution, as the paper does; "v1.5"
  puts it on the 3x3 (most deployed ResNet-50s). Same parameters, about 6% more MACs.

Convolutions use "same" padding (output size = ceil(input / stride)), which TFLite runs as one
CONV_2D without a separate PAD op.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from resnet_edge.errors import ConfigError, UnknownModelError

FAMILIES = ("imagenet", "cifar")
SHORTCUTS = ("A", "B", "C")
VARIANTS = ("v1", "v1.5")

#: Table 1: block type and blocks per stage (conv2_x .. conv5_x).
IMAGENET_TABLE: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
#: The CIFAR depths the paper trains (Table 6); any 6n + 2 builds.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)

#: The paper's own figures, for reports and tests: Table 1 "FLOPs" (multiply-adds, 224x224) and
#: Table 6 parameter counts of the CIFAR ResNets.
PAPER_IMAGENET_MACS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
PAPER_CIFAR_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6, 1202: 19.4e6}

DEFAULT_INPUT = {"imagenet": 224, "cifar": 32}
DEFAULT_CLASSES = {"imagenet": 1000, "cifar": 10}
DEFAULT_SHORTCUT = {"imagenet": "B", "cifar": "A"}
#: ImageNet mean/std in 0..255 pixel units (the usual torchvision/Keras values).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Preprocess:
    """Normalization built into the model, so a deployed model takes raw pixels (0..255).

    ``input_dtype`` is the dtype of the model input: "uint8" lets an app feed camera bytes as they are.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_dtype: str = "float32"

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("--mean and --std take three values (R,G,B), e.g. --mean 123.7,116.3,103.5")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"--std values must be positive, got {','.join(map(str, self.std))}")
        if self.input_dtype not in ("float32", "uint8"):
            raise ConfigError(f"input dtype must be float32 or uint8, got {self.input_dtype}")


@dataclass(frozen=True)
class ResNetSpec:
    """Everything that defines one network. Build it with :func:`resolve` (which validates)."""

    family: str
    depth: int
    plain: bool = False
    shortcut: str = "B"
    variant: str = "v1"
    input_size: int = 224
    classes: int = 1000
    preprocess: Preprocess | None = None
    classifier_activation: str | None = "softmax"
    #: Inner channels of every block, in order (None = the paper's widths). A basic block has one inner
    #: width (its first conv), a bottleneck two (its 1x1 and 3x3). Channel pruning sets this.
    inner_widths: tuple[tuple[int, ...], ...] | None = None
    #: Channels of each stage's residual stream (its blocks' outputs, its projection; None = the paper's: the
    #: stage's width, four times it in a bottleneck). Where the stem writes into the first stage's stream (CIFAR
    #: ResNets, ResNet-18/34, not with shortcut C) its filters follow. Channel pruning of the stream sets this.
    stream_widths: tuple[int, ...] | None = None

    @property
    def block(self) -> str:
        return IMAGENET_TABLE[self.depth][0] if self.family == "imagenet" else "basic"

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        if self.family == "imagenet":
            return IMAGENET_TABLE[self.depth][1]
        n = (self.depth - 2) // 6
        return (n, n, n)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return IMAGENET_WIDTHS if self.family == "imagenet" else CIFAR_WIDTHS

    @property
    def total_stride(self) -> int:
        return 32 if self.family == "imagenet" else 4

    @property
    def name(self) -> str:
        """Registry-style name plus suffixes for non-default options: ``resnet50``, ``plain20``,
        ``resnet20_B``, ``resnet50_v1.5``, ``resnet50_cifar``."""
        name = f"{'plain' if self.plain else 'resnet'}{self.depth}"
        if self.family != default_family(self.depth):
            name += f"_{self.family}"
        if not self.plain and self.shortcut != DEFAULT_SHORTCUT[self.family]:
            name += f"_{self.shortcut}"
        if self.variant != "v1" and self.block == "bottleneck":
            name += f"_{self.variant}"
        return name

    def to_dict(self) -> dict:
        """A JSON-ready recipe; :func:`spec_from_dict` reads it back."""
        d = dataclasses.asdict(self)
        if self.inner_widths is not None:
            d["inner_widths"] = [list(w) for w in self.inner_widths]
        if self.stream_widths is not None:
            d["stream_widths"] = list(self.stream_widths)
        else:
            d.pop("stream_widths")  # the manifests of networks with the paper's stream stay as they were
        d["name"] = self.name
        return d

    def replace(self, **changes) -> "ResNetSpec":
        return dataclasses.replace(self, **changes)


def spec_from_dict(d: dict) -> ResNetSpec:
    """Inverse of :meth:`ResNetSpec.to_dict` (unknown keys such as ``name`` are ignored)."""
    fields = {f.name for f in dataclasses.fields(ResNetSpec)}
    kw = {k: v for k, v in d.items() if k in fields}
    if kw.get("preprocess"):
        p = kw["preprocess"]
        kw["preprocess"] = Preprocess(tuple(p["mean"]), tuple(p["std"]), p.get("input_dtype", "float32"))
    if kw.get("inner_widths") is not None:
        kw["inner_widths"] = tuple(tuple(w) for w in kw["inner_widths"])
    if kw.get("stream_widths") is not None:
        kw["stream_widths"] = tuple(int(w) for w in kw["stream_widths"])
    return ResNetSpec(**kw)


def default_family(depth: int) -> str:
    """ImageNet for the depths of Table 1, CIFAR otherwise (50 and 152 are also 6n+2: ask for
    ``family="cifar"`` to get the CIFAR net of that depth)."""
    return "imagenet" if depth in IMAGENET_TABLE else "cifar"


def _depth_help() -> str:
    imagenet = ", ".join(map(str, IMAGENET_TABLE))
    cifar = ", ".join(map(str, CIFAR_DEPTHS))
    return f"ImageNet depths are {imagenet} (Table 1); CIFAR depths are 6n+2 ({cifar}, ...)"


def resolve(
    depth: int | None = None,
    *,
    model: str | None = None,
    family: str | None = None,
    plain: bool | None = None,
    shortcut: str | None = None,
    variant: str = "v1",
    input_size: int | None = None,
    classes: int | None = None,
    preprocess: Preprocess | None = None,
    classifier_activation: str | None = "softmax",
    force: bool = False,
) -> ResNetSpec:
    """Validate options and return a :class:`ResNetSpec`; raise :class:`ConfigError` (one line) if invalid.

    Give either ``model`` (a registry name such as "resnet50" or "plain20") or ``depth``. Unset options
    take the family's defaults (ImageNet: 224x224, 1000 classes, shortcut B; CIFAR: 32x32, 10 classes,
    shortcut A). ``force`` admits an input so small that the last stage sees a 1x1 map.
    """
    if model is not None:
        entry = get(model)
        if depth is not None and depth != entry.depth:
            raise ConfigError(f"--model {model} has depth {entry.depth}, not {depth}; give one of --model and --depth")
        if family is not None and family != entry.family:
            raise ConfigError(f"--model {model} is in the {entry.family} family, not {family}")
        depth, family = entry.depth, entry.family
        plain = entry.plain if plain is None else (plain or entry.plain)
    if depth is None:
        raise ConfigError("give --depth (e.g. --depth 18) or --model (see `resnet-edge models`)")
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; valid families: {', '.join(FAMILIES)}")
    if family is None:
        if depth not in IMAGENET_TABLE and not _is_cifar_depth(depth):
            raise ConfigError(f"depth {depth} is not a ResNet of the paper: {_depth_help()}")
        family = default_family(depth)
    if family == "imagenet" and depth not in IMAGENET_TABLE:
        hint = "; for a 6n+2 depth use --family cifar" if _is_cifar_depth(depth) else ""
        raise ConfigError(
            f"ImageNet ResNet depth must be one of {', '.join(map(str, IMAGENET_TABLE))} (Table 1), got {depth}{hint}"
        )
    if family == "cifar" and not _is_cifar_depth(depth):
        raise ConfigError(
            f"CIFAR ResNet depth must be 6n+2 ({', '.join(map(str, CIFAR_DEPTHS))}, ...), got {depth}"
        )
    shortcut = (shortcut or DEFAULT_SHORTCUT[family]).upper()
    if shortcut not in SHORTCUTS:
        raise ConfigError(f"unknown shortcut option {shortcut!r}; valid: A (zero-pad), B (projection where the shape changes), C (all projections)")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; valid: v1 (stride on the first 1x1, the paper) or v1.5 (stride on the 3x3)")
    input_size = DEFAULT_INPUT[family] if input_size is None else int(input_size)
    classes = DEFAULT_CLASSES[family] if classes is None else int(classes)
    if classes < 2:
        raise ConfigError(f"--classes must be at least 2, got {classes}")
    spec = ResNetSpec(
        family=family,
        depth=depth,
        plain=bool(plain),
        shortcut=shortcut,
        variant=variant,
        input_size=input_size,
        classes=classes,
        preprocess=preprocess,
        classifier_activation=classifier_activation,
    )
    check_input_size(spec, force=force)
    return spec


def check_input_size(spec: ResNetSpec, *, force: bool = False) -> None:
    """The last stage must see at least a 2x2 map (1x1 with ``force``); say what to use otherwise."""
    s = spec.input_size
    stride = spec.total_stride
    minimum = stride if force else 2 * stride
    if s >= minimum:
        return
    final = max(1, math.ceil(s / stride))
    if spec.family == "imagenet":
        cifar_hint = (
            "; for small images such as CIFAR's 32x32 use the CIFAR family (--family cifar, e.g. --model resnet20)"
        )
        why = f"the ImageNet stem and stages shrink the image {stride}x, leaving a {final}x{final} map"
        raise ConfigError(
            f"input {s}x{s} is too small for the ImageNet family: {why}; use --input-size {2 * stride} or more"
            + cifar_hint
            + ("" if force or s < stride else ", or --force")
        )
    raise ConfigError(
        f"input {s}x{s} is too small for the CIFAR family (it shrinks the image {stride}x); use --input-size {minimum} or more"
        + ("" if force or s < stride else ", or --force")
    )


def _is_cifar_depth(depth: int) -> bool:
    return depth >= 8 and (depth - 2) % 6 == 0


# ---------------------------------------------------------------------------------------------------
# The plan: every convolution of the network, in order. Builder and counter both read it.


@dataclass(frozen=True)
class Conv:
    """One convolution followed by BatchNorm (and ReLU unless it ends a block)."""

    name: str  # layer-name prefix, e.g. "conv2_block1_1"; the layers are <name>_conv, <name>_bn, <name>_relu
    kernel: int
    stride: int
    filters: int


@dataclass(frozen=True)
class Block:
    """A residual block (or its plain counterpart)."""

    name: str  # "conv2_block1"
    in_channels: int
    out_channels: int
    stride: int
    convs: tuple[Conv, ...]
    #: "identity", "pad" (option A where the shape changes), "projection", or None (plain network)
    shortcut: str | None
    projection: Conv | None = None

    @property
    def stage(self) -> int:
        """The residual stage this block is in, from 0 (``conv2_*``)."""
        return int(self.name[4]) - 2


@dataclass(frozen=True)
class Plan:
    stem: Conv
    stem_pool: bool
    blocks: tuple[Block, ...]
    features: int
    #: Whether the stem's output is the first stage's residual stream (no projection in between: CIFAR ResNets,
    #: ResNet-18/34, not with shortcut C), so that the stem's filters are that stream's channels.
    stem_writes_stream: bool = False


def plan(spec: ResNetSpec) -> Plan:
    """Expand a spec into its convolutions, named as in Keras Applications (``conv2_block1_1``)."""
    stem = Conv("conv1", 7, 2, 64) if spec.family == "imagenet" else Conv("conv1", 3, 1, 16)
    blocks: list[Block] = []
    bottleneck = spec.block == "bottleneck"
    expansion = BOTTLENECK_EXPANSION if bottleneck else 1
    streams = tuple(w * expansion for w in spec.stage_widths)
    stem_writes_stream = stem.filters == streams[0] and (spec.plain or spec.shortcut != "C")
    if spec.stream_widths is not None:
        if len(spec.stream_widths) != len(spec.stage_blocks) or min(spec.stream_widths) < 1:
            raise ConfigError(f"stream_widths needs {len(spec.stage_blocks)} widths of at least 1 (one per stage), "
                              f"got {list(spec.stream_widths)}")
        if stem_writes_stream:  # the stem follows the first stage's stream
            stem = dataclasses.replace(stem, filters=spec.stream_widths[0])
        streams = spec.stream_widths
    channels = stem.filters
    inner = iter(spec.inner_widths) if spec.inner_widths is not None else None
    n_blocks = sum(spec.stage_blocks)
    if spec.inner_widths is not None and len(spec.inner_widths) != n_blocks:
        raise ConfigError(f"inner_widths has {len(spec.inner_widths)} entries; {spec.name} has {n_blocks} blocks")
    for stage_index, (n, width) in enumerate(zip(spec.stage_blocks, spec.stage_widths)):
        stage = stage_index + 2
        for b in range(1, n + 1):
            stride = 2 if (b == 1 and stage_index > 0) else 1
            out = streams[stage_index]
            name = f"conv{stage}_block{b}"
            widths = next(inner) if inner is not None else ((width, width) if bottleneck else (width,))
            if bottleneck:
                s1, s2 = (stride, 1) if spec.variant == "v1" else (1, stride)
                convs = (
                    Conv(f"{name}_1", 1, s1, widths[0]),
                    Conv(f"{name}_2", 3, s2, widths[1]),
                    Conv(f"{name}_3", 1, 1, out),
                )
            else:
                convs = (Conv(f"{name}_1", 3, stride, widths[0]), Conv(f"{name}_2", 3, 1, out))
            reshape = stride != 1 or channels != out
            if spec.plain:
                shortcut, projection = None, None
            elif spec.shortcut == "C" or (reshape and spec.shortcut == "B"):
                shortcut, projection = "projection", Conv(f"{name}_0", 1, stride, out)
            elif reshape:
                if out < channels:
                    raise ConfigError(f"{spec.name}: stage {stage} narrows the residual stream from {channels} to {out} "
                                      "channels, which shortcut A (zero padding) cannot do; keep each stage's stream "
                                      "at least as wide as the one before, or use shortcut B")
                shortcut, projection = "pad", None
            else:
                shortcut, projection = "identity", None
            blocks.append(Block(name, channels, out, stride, convs, shortcut, projection))
            channels = out
    return Plan(stem=stem, stem_pool=spec.family == "imagenet", blocks=tuple(blocks), features=channels,
                stem_writes_stream=stem_writes_stream)


def keep_per_stage(keep, stages: int, what: str = "--channels") -> tuple[float, ...]:
    """One keep ratio for every stage, or one per stage (a list as long as the network has stages)."""
    ratios = tuple(float(k) for k in keep) if isinstance(keep, (list, tuple)) else (float(keep),) * stages
    if len(ratios) != stages:
        raise ConfigError(f"{what} per stage needs {stages} ratios (one for each stage), got {len(ratios)}")
    if not all(0 < k <= 1 for k in ratios):
        raise ConfigError(f"{what} must be in (0, 1], got {', '.join(f'{k:g}' for k in ratios)}")
    return ratios


def kept_channels(channels: int, ratio: float) -> int:
    """How many of ``channels`` a keep ``ratio`` keeps (rounded, at least one): the one rule for a network thinned
    (channel pruning) and one built thin (:func:`thinned`), so that both have the same shape."""
    return max(1, int(round(channels * ratio)))


def thinned(spec: ResNetSpec, keep=1.0, stream=None) -> ResNetSpec:
    """``spec`` with each stage's inner widths kept at ``keep`` and its residual stream at ``stream`` (one ratio, or
    one per stage; None or all 1: the paper's stream), rounded as channel pruning rounds them, so that a network
    built thin (a search candidate, a recipe's ``model.keep``) has the shape :func:`resnet_edge.optimize.channels.thin`
    gives the whole one. A stream that shortcut A would have to narrow: ConfigError."""
    stages = len(spec.stage_blocks)
    keep = keep_per_stage(keep, stages, "keep")
    p = plan(spec.replace(inner_widths=None, stream_widths=None))
    out = spec.replace(inner_widths=tuple(tuple(kept_channels(c.filters, keep[b.stage]) for c in b.convs[:-1])
                                          for b in p.blocks))
    ratios = keep_per_stage(1.0 if stream is None else stream, stages, "stream")
    if any(r != 1 for r in ratios):
        full = {b.stage: b.out_channels for b in p.blocks}
        out = out.replace(stream_widths=tuple(kept_channels(full[i], r) for i, r in enumerate(ratios)))
        plan(out)  # shortcut A cannot narrow the stream
    return out


@dataclass(frozen=True)
class Counts:
    """Parameters and multiply-accumulates (MACs) of a network.

    MACs count convolutions and the classifier (as Table 1's "FLOPs", which are multiply-adds);
    BatchNorm, ReLU, additions and pooling are left out, as in the paper.
    """

    trainable_params: int
    total_params: int
    macs: int
    conv_layers: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def count(spec: ResNetSpec) -> Counts:
    """Count parameters and MACs of ``spec`` from its plan, without building anything."""
    p = plan(spec)
    size = spec.input_size
    trainable = nontrainable = macs = convs = 0

    def conv(c: Conv, cin: int, size_in: int) -> int:
        nonlocal trainable, nontrainable, macs, convs
        size_out = math.ceil(size_in / c.stride)
        weights = c.kernel * c.kernel * cin * c.filters
        trainable += weights + 2 * c.filters  # kernel (no bias) + BN gamma, beta
        nontrainable += 2 * c.filters  # BN moving mean, variance
        macs += weights * size_out * size_out
        convs += 1
        return size_out

    size = conv(p.stem, 3, size)
    if p.stem_pool:
        size = math.ceil(size / 2)
    channels = p.stem.filters
    for block in p.blocks:
        size_in, cin = size, channels
        for c in block.convs:
            size = conv(c, cin, size)
            cin = c.filters
        if block.projection is not None:
            conv(block.projection, channels, size_in)
        if block.shortcut == "pad" and block.stride > 1:
            nontrainable += channels  # the frozen 1x1 depthwise subsampling of option A (weight 1)
        channels = block.out_channels
    trainable += p.features * spec.classes + spec.classes
    macs += p.features * spec.classes
    return Counts(trainable, trainable + nontrainable, macs, convs)


def paper_reference(spec: ResNetSpec) -> str:
    """The paper's figure for this network, as text, or "" when the paper gives none."""
    if spec.plain or spec.classes != DEFAULT_CLASSES[spec.family] or spec.input_size != DEFAULT_INPUT[spec.family]:
        return ""
    if spec.family == "imagenet" and spec.variant == "v1":
        return f"{PAPER_IMAGENET_MACS[spec.depth] / 1e9:.1f} GMACs (Table 1)"
    if spec.family == "cifar" and spec.shortcut == "A" and spec.depth in PAPER_CIFAR_PARAMS:
        return f"{PAPER_CIFAR_PARAMS[spec.depth] / 1e6:g}M params (Table 6)"
    return ""


# ---------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    depth: int
    plain: bool = False


def _entries() -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for family, depths in (("imagenet", IMAGENET_TABLE), ("cifar", CIFAR_DEPTHS)):
        for plain in (False, True):
            for depth in depths:
                name = f"{'plain' if plain else 'resnet'}{depth}"
                out[name] = Entry(name, family, depth, plain)
    return out


REGISTRY: dict[str, Entry] = _entries()


def list_models(family: str | None = None, plain: bool | None = None) -> list[str]:
    """Registry names, ImageNet first, each family by depth."""
    return [
        e.name
        for e in REGISTRY.values()
        if (family is None or e.family == family) and (plain is None or e.plain == plain)
    ]


def get(name: str) -> Entry:
    """Look up a registry name (case-insensitive, ``resnet-18`` and ``resnet_18`` accepted)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key in REGISTRY:
        return REGISTRY[key]
    raise UnknownModelError(f"unknown model {name!r}; valid models: {', '.join(REGISTRY)}")


def default_spec(name: str, **options) -> ResNetSpec:
    """The registry model ``name`` with its family's defaults (or the given options)."""
    return resolve(model=name, **options)
