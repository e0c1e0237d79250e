"""What a search trial is worth: the accuracy of the model it would ship, not of the float network it trained.

A candidate's float network trains the same whatever its mode; what reaches the device differs: int8 and int16x8
calibrated on training images, float16 halved, QAT int8 fine-tuned with fake quantization first
(:mod:`resnet_edge.optimize.qat`, a fifth of the float epochs, at least one). So a trial's value is the validation
accuracy of its converted ``.tflite`` (the images the float training validated on), and the trial that wins is the
one whose shipped model is best. The float training is done once per network: candidates that differ only in mode
or runtime convert the same trained weights (:attr:`resnet_edge.search.space.Candidate.trained_as`).

Each figure is kept beside the trained model (``shipped-<mode>-<split>.json``), so a search run again reads it back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

#: A QAT candidate fine-tunes with fake quantization for this share of its float epochs (at least one).
QAT_SHARE = 5


def qat_epochs(epochs: int) -> int:
    """The QAT fine-tuning epochs of a candidate trained ``epochs`` in float."""
    return max(1, epochs // QAT_SHARE)


def converted_as(mode: str) -> str:
    """The converter's mode for a search mode (``qat`` converts its QAT model to full int8)."""
    return "int8" if mode == "qat" else mode


def model_file(mode: str, folder: Path) -> Path:
    """The Keras model a candidate of ``mode`` converts: the QAT one for ``qat``, else the float one."""
    return folder / ("qat.h5" if mode == "qat" else "model.keras")


def shipped(mode: str, folder: Path, data, *, epochs: int, batch_size: int, limit: int | None,
            split: str = "val") -> dict:
    """The accuracy on ``split`` of the trained network in ``folder`` converted in ``mode`` (after QAT for ``qat``):
    ``{"mode", "split", "accuracy", "keras_accuracy", "n", "seconds"[, "qat_epochs"][, "read_back"]}`` (``read_back``:
    worked out before, read from its file). On ``val`` the images are the
    ones the training validated on (``limit`` caps them as it capped the training's); the test split is whole."""
    from resnet_edge.io import atomic_write_bytes

    folder = Path(folder)
    path = folder / f"shipped-{mode}-{split}.json"
    try:
        got = json.loads(path.read_text())
        if isinstance(got, dict) and isinstance(got.get("accuracy"), (int, float)):
            return {**got, "read_back": True}
    except (OSError, ValueError):
        pass
    from resnet_edge.arch.keras_model import load_model
    from resnet_edge.convert import convert_and_check

    t0 = time.monotonic()
    if mode == "qat" and not model_file(mode, folder).exists():
        from resnet_edge.optimize.qat import qat

        qat(folder / "model.keras", data, model_file(mode, folder), epochs=qat_epochs(epochs), batch_size=batch_size,
            limit=limit, verbose=0)
    model = load_model(model_file(mode, folder))
    _, info = convert_and_check(model, data.subset(limit) if limit and split == "val" else data, converted_as(mode),
                                split=split)
    result = {"mode": mode, "split": split, "accuracy": info["tflite_accuracy"],
              "keras_accuracy": info["keras_accuracy"], "n": info["n"], "seconds": round(time.monotonic() - t0, 1),
              **({"qat_epochs": qat_epochs(epochs)} if mode == "qat" else {})}
    atomic_write_bytes(path, json.dumps(result).encode())
    return result


__all__ = ["QAT_SHARE", "converted_as", "model_file", "qat_epochs", "shipped"]
