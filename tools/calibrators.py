#!/usr/bin/env python
"""int8 accuracy with resnet-edge's calibrator against TensorFlow's (figures, not a test).

Two trained models, as users make them: the README's main job (ResNet-20, 15 epochs on the bundled digits)
and a model trained on an image folder (the same digits written out as PNG files, one sub-folder per class,
``--data folder:DIR``). Each is converted to int8 with ``--calibrator resnet-edge`` (the default) and
``--calibrator tensorflow``, at 100 calibration images (the default) and at 32, and evaluated by
``resnet-edge eval`` on the test images; the Keras model's accuracy on the same images is the reference.

    python tools/calibrators.py --out runs/calibrators
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cli(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "resnet_edge", *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"resnet-edge {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def write_folder(root: Path) -> Path:
    """The digits' train/val/test splits as PNG files under ``root``."""
    from PIL import Image

    from resnet_edge.data import load

    digits = load("digits")
    for name in ("train", "val", "test"):
        split = digits.split(name)
        for i, (x, y) in enumerate(zip(split.x, split.y)):
            folder = root / name / str(int(y))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(folder / f"{i}.png")
    return root


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/calibrators", show_default=True)
def main(epochs, out):
    from resnet_edge.harness import machine
    from resnet_edge.ui import table

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    folder = write_folder(out / "digits_png")
    cases = {"ResNet-20, digits": "digits", "ResNet-20, image folder": f"folder:{folder}"}
    rows = []
    for name, source in cases.items():
        run = out / name.split(", ")[1].replace(" ", "_")
        if not (run / "model.keras").exists():
            print(f"training {name}", file=sys.stderr)
            cli("train", "--model", "resnet20", "--data", source, "--epochs", str(epochs), "--out", str(run),
                *(["--input-size", "32"] if source.startswith("folder:") else []))
        keras = cli("evaluate", str(run / "model.keras"), "--data", source)["top1"]
        for calibration in (100, 32):
            for calibrator in ("resnet-edge", "tensorflow"):
                target = run / f"int8_{calibrator}_{calibration}.tflite"
                print(f"{name}: {calibrator}, {calibration} images", file=sys.stderr)
                cli("convert", str(run / "model.keras"), "--int8", "--data", source, "--calibration", str(calibration),
                    "--calibrator", calibrator, "--out", str(target))
                report = cli("eval", str(target), "--data", source)
                rows.append({"model": name, "images": str(calibration), "calibrator": calibrator,
                             "keras": f"{keras:.2%}", "int8": f"{report['top1']:.2%}",
                             "drop": f"{100 * (keras - report['top1']):+.2f}", "n": str(report["n"])})
    m = machine()
    print(f"{m['cpu']} ({', '.join(m['isa'])}); test split; int8 top-1 by `resnet-edge eval`, Keras by `evaluate`")
    print(table(rows, [("model", "model"), ("images", "calibration images"), ("calibrator", "calibrator"),
                       ("keras", "Keras top-1"), ("int8", "int8 top-1"), ("drop", "drop (points)"), ("n", "images")],
                right={"images", "keras", "int8", "drop", "n"}))
    (out / "calibrators.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
