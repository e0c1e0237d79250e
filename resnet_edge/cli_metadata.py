"""``resnet-edge metadata``: the standard metadata that app frameworks read, added to any image classifier
``.tflite`` (:mod:`resnet_edge.tflite.apps`). No TensorFlow."""

from __future__ import annotations

import click

from resnet_edge.cli import _echo_json_or, _numbers, app_metadata_pairs, cli


@cli.command()
@click.argument("model_path", metavar="MODEL.tflite", type=click.Path(dir_okay=False))
@click.option("--labels", "labels_path", type=click.Path(dir_okay=False),
              help="Class names, one per line in the order of the scores (default: the model's own, if any).")
@click.option("--mean", callback=_numbers((1, 3)), help="What the framework subtracts from a pixel (0..255): one value or one "
                                                "per channel. With --std. Default: what the model already says.")
@click.option("--std", "std_", callback=_numbers((1, 3)), help="What the framework divides by after --mean.")
@click.option("--name", help="Model name (default: the model's own, or the file name).")
@click.option("--description", help="What the model does.")
@click.option("--model-version", "version", help="The model's version.")
@click.option("--author", help="Author, shown by Android Studio and the frameworks' tools.")
@click.option("--license", "license_", help="License of the model.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write here instead of replacing MODEL.tflite.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def metadata(model_path, labels_path, mean, std_, name, description, version, author, license_, out, as_json):
    """Add or replace the standard TFLite Metadata of an image classifier, so that MediaPipe's and the
    Task Library's ImageClassifier (and Android Studio's model binding) can use it.

    \b
    Examples:
      resnet-edge metadata someone_elses.tflite --labels labels.txt --mean 127.5 --std 127.5
      resnet-edge metadata runs/r20/model_int8.tflite --author "Team" --license Apache-2.0
    --mean/--std say what a pixel p becomes before it enters the model, (p - mean) / std. A uint8 input
    needs none: frameworks feed its pixels as they are, and its quantization must say so. Every tensor,
    weight and other metadata entry is kept; a model of resnet-edge keeps its own entry and checksum (and
    its manifest is updated with it). The file is replaced atomically.
    """
    from resnet_edge.tflite.apps import set_app_metadata

    texts = {"name": name, "description": description, "version": version, "author": author, "license": license_}
    r = set_app_metadata(model_path, out=out, labels_path=labels_path, mean=mean, std_=std_, texts=texts)
    _echo_json_or(r, as_json, _human)


def _human(r: dict) -> str:
    from resnet_edge.ui import key_values, safe_text

    pairs = [("wrote", ", ".join(safe_text(p, 300) for p in r["written"])),
             ("labels", r["labels_from"]), ("normalization", r["normalization_from"])]
    pairs += app_metadata_pairs(r["app_metadata"])
    pairs += [("warning", w) for w in r["warnings"]]
    return key_values(pairs)
