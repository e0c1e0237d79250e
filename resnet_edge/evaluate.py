"""Accuracy of a Keras model on a data split: top-1, top-5, per class, and what gets confused (host side).

The figures are :func:`resnet_edge.metrics.scores_report`'s, which ``eval`` reports for a ``.tflite`` too, with
the same keys. :func:`keras_reference` is what ``eval --compare`` hands the edge side's evaluation: the Keras
model's scores for the very inputs the ``.tflite`` got.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_edge.errors import ConfigError, ResnetEdgeError
from resnet_edge.metrics import scores_report


def check_classes(model, data, path) -> None:
    """A model must predict as many classes as the data has."""
    classes_out = int(model.output_shape[-1])
    if classes_out != data.num_classes:
        raise ResnetEdgeError(
            f"{path} predicts {classes_out} classes but {data.name} has {data.num_classes}; use it on the data it was trained for"
        )


def predict(model, data, split: str = "test", batch_size: int = 256, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of ``split``, fed as the model takes them (see :func:`model_inputs`)."""
    from resnet_edge.data.pipeline import model_inputs

    scores, labels = [], []
    for x, y in model_inputs(model, data, split, batch_size, limit):
        scores.append(model(x, training=False).numpy())
        labels.append(y.numpy())
    return np.concatenate(scores), np.concatenate(labels)


def evaluate(model_path: str | Path, data, split: str = "test", batch_size: int = 256, limit: int | None = None,
             trust: bool = False) -> dict:
    """Load a Keras model (``trust``: without checking it for code) and report
    :func:`~resnet_edge.metrics.scores_report`'s figures on ``split`` of ``data``."""
    from resnet_edge.arch.keras_model import load_model

    model = load_model(model_path, trust=trust)
    check_classes(model, data, model_path)
    scores, labels = predict(model, data, split, batch_size, limit)
    result = scores_report(scores, labels, data.classes)
    result.update({"model": str(model_path), "data": data.name, "split": split})
    return result


def keras_reference(path: str | Path, trust: bool = False):
    """A function ``x -> (scores, name)``: the Keras model at ``path``'s scores for ``x`` (float inputs in the
    form the ``.tflite`` took them), loaded when first called. The model must take inputs of ``x``'s shape."""
    from resnet_edge.arch.keras_model import load_model

    def scores(x: np.ndarray) -> tuple[np.ndarray, str]:
        model = load_model(path, trust=trust)
        if len(model.inputs) != 1 or tuple(model.input_shape[1:]) != tuple(x.shape[1:]):
            raise ConfigError(f"{path} takes {list(model.input_shape)}, the .tflite's inputs are {list(x.shape)}: "
                              "compare a .tflite with the Keras model it was converted from")
        dtype = model.inputs[0].dtype
        feed = np.clip(np.round(x), 0, 255).astype(np.uint8) if str(getattr(dtype, "name", dtype)) == "uint8" else x
        out = np.concatenate([np.asarray(model(feed[i:i + 64], training=False), np.float32)
                              for i in range(0, len(x), 64)])
        return out, str(path)

    return scores
