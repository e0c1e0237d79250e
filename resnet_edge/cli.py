"""The ``resnet-edge`` command line: a thin layer that parses options, calls the library and prints.

Every user error is a :class:`~resnet_edge.errors.ResnetEdgeError` raised by the library; the group
below turns it into one line on stderr and exit code 1, without a traceback. Host-side modules
(TensorFlow) are imported inside the commands that need them, so ``--help``, ``models`` and the
edge-side commands start fast and run without TensorFlow.
"""

from __future__ import annotations

import sys

import click

from resnet_edge import __version__
from resnet_edge.errors import ResnetEdgeError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Group(click.Group):
    """A click group that reports library errors as one clean line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ResnetEdgeError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None


def _triple(name: str):
    """Click callback: 'a,b,c' -> (a, b, c) floats."""

    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            parts = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"expected three numbers separated by commas, got {value!r}") from None
        if len(parts) != 3:
            raise click.BadParameter(f"expected three numbers (R,G,B), got {len(parts)}")
        return parts

    return parse


def _echo_json_or(obj, as_json: bool, human) -> None:
    from resnet_edge.ui import emit

    emit(obj, as_json, human, click.echo)


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="resnet-edge")
def cli():
    """resnet-edge: the ResNets of He et al. (2015), from the paper to Raspberry Pis and phones.

    \b
    Start with:
      resnet-edge models                  the family, with parameters and MACs
      resnet-edge build --depth 18        a ResNet-18 as a Keras model
    """


@cli.command()
@click.option("--family", type=click.Choice(["imagenet", "cifar"]), help="Only this family.")
@click.option("--plain/--residual", "plain", default=None, help="Only plain nets / only ResNets.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(family, plain, as_json):
    """List every network in the registry with parameters, MACs and default input size.

    MACs are multiply-accumulates of the convolutions and the classifier at the default input size
    (Table 1 calls them FLOPs). The "paper" column quotes the paper's own figure where it gives one.
    """
    from resnet_edge.arch import spec as S
    from resnet_edge.ui import si, table

    rows = []
    for name in S.list_models(family=family, plain=plain):
        spec = S.default_spec(name)
        counts = S.count(spec)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "depth": spec.depth,
                "block": spec.block,
                "stages": "-".join(map(str, spec.stage_blocks)),
                "shortcut": "none" if spec.plain else spec.shortcut,
                "input_size": spec.input_size,
                "classes": spec.classes,
                "params": counts.trainable_params,
                "macs": counts.macs,
                "paper": S.paper_reference(spec),
            }
        )

    def human(rows):
        shown = [{**r, "params": si(r["params"]), "macs": si(r["macs"]), "input_size": f"{r['input_size']}x{r['input_size']}"} for r in rows]
        cols = [("name", "name"), ("family", "family"), ("block", "block"), ("stages", "blocks"),
                ("shortcut", "shortcut"), ("params", "params"), ("macs", "MACs"), ("input_size", "input"),
                ("paper", "paper")]
        return table(shown, cols, right={"params", "macs"})

    _echo_json_or(rows, as_json, human)


@cli.command()
@click.option("--depth", "-d", type=int, help="Network depth: 18/34/50/101/152 (ImageNet) or 6n+2 (CIFAR).")
@click.option("--model", "-m", "model_name", help="A registry name instead of --depth (see `resnet-edge models`).")
@click.option("--family", type=click.Choice(["imagenet", "cifar"]), help="Default: ImageNet for Table 1 depths, else CIFAR.")
@click.option("--plain", is_flag=True, help="The plain counterpart: same layers, no shortcuts.")
@click.option("--shortcut", type=click.Choice(["A", "B", "C"], case_sensitive=False),
              help="A: zero-padded identity (CIFAR default); B: projection where the shape changes (ImageNet default); C: all projections.")
@click.option("--variant", type=click.Choice(["v1", "v1.5"]), default="v1", show_default=True,
              help="Bottleneck stride on the first 1x1 (v1, the paper) or on the 3x3 (v1.5).")
@click.option("--input-size", type=int, help="Square input side in pixels. Default: 224 (ImageNet), 32 (CIFAR).")
@click.option("--classes", type=int, help="Number of classes. Default: 1000 (ImageNet), 10 (CIFAR).")
@click.option("--raw-input", type=click.Choice(["float32", "uint8"]),
              help="Build normalization into the model: it then takes raw 0..255 pixels of this dtype.")
@click.option("--mean", callback=_triple("mean"), help="Per-channel mean for --raw-input, in 0..255 units (R,G,B). Default: ImageNet's.")
@click.option("--std", callback=_triple("std"), help="Per-channel std for --raw-input, in 0..255 units (R,G,B). Default: ImageNet's.")
@click.option("--logits", is_flag=True, help="End with logits instead of softmax probabilities.")
@click.option("--force", is_flag=True, help="Allow an input so small that the last stage sees a 1x1 map.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Output file (.keras or .h5). Default: NAME.keras.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(depth, model_name, family, plain, shortcut, variant, input_size, classes, raw_input, mean, std, logits,
          force, out, as_json):
    """Build a ResNet (or plain net) of the paper as a Keras model and write it atomically.

    Writes OUT and its manifest OUT.json (recipe, parameters, MACs, sha256). The weights are freshly
    initialized: train the model before trusting any accuracy figure.
    """
    from resnet_edge.arch.spec import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve

    if (mean or std) and not raw_input:
        raise click.UsageError("--mean/--std describe built-in normalization: add --raw-input float32 or uint8")
    preprocess = Preprocess(mean or IMAGENET_MEAN, std or IMAGENET_STD, raw_input) if raw_input else None
    spec = resolve(
        depth,
        model=model_name,
        family=family,
        plain=plain or None,
        shortcut=shortcut,
        variant=variant,
        input_size=input_size,
        classes=classes,
        preprocess=preprocess,
        classifier_activation=None if logits else "softmax",
        force=force,
    )
    out = out or f"{spec.name}.keras"
    if not as_json:
        click.echo(f"Building {spec.name} ...", err=True)
    from resnet_edge.build import build as build_model

    summary = build_model(spec, out)
    _echo_json_or(summary, as_json, _build_human)


def _build_human(s: dict) -> str:
    from resnet_edge.ui import human_bytes, key_values, si

    spec, c = s["spec"], s["counts"]
    shortcut = "none (plain)" if spec["plain"] else spec["shortcut"]
    stages = "-".join(str(n) for n in s["stages"])
    size = spec["input_size"]
    pre = spec.get("preprocess")
    pairs = [
        ("model", s["name"]),
        ("family", f"{spec['family']}, {s['block']} blocks {stages}, shortcut {shortcut}"
                   + (f", {spec['variant']}" if s["block"] == "bottleneck" else "")),
        ("input", f"{size}x{size}x3 {s['input']['dtype']}" + (f" raw pixels, normalized inside (mean {pre['mean']}, std {pre['std']})" if pre else "")),
        ("classes", f"{spec['classes']} ({spec['classifier_activation'] or 'logits'})"),
        ("parameters", f"{c['trainable_params']:,} trainable, {c['total_params']:,} total"),
        ("MACs", f"{si(c['macs'])}" + (f"  (paper: {s['paper']})" if s.get("paper") else "")),
        ("layers", f"{c['conv_layers']} conv + 1 dense; {s['layers']} Keras layers"),
    ]
    if "file" in s:
        f = s["file"]
        pairs.append(("written", f"{f['path']} ({human_bytes(f['bytes'])}, sha256 {f['sha256'][:12]}...) + manifest"))
    pairs.append(("note", "weights are untrained: accuracy means nothing until you train it"))
    return key_values(pairs)


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="resnet-edge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
