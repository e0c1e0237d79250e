"""Accuracy of a Keras model on a data split: top-1, top-5, per class, and what gets confused (host side).

The metric functions take plain numpy arrays (probabilities or logits, and labels), so the edge side's
TFLite evaluation reports the very same figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_edge.errors import ResnetEdgeError


def metrics(scores: np.ndarray, labels: np.ndarray, classes: list[str], top_k: int = 5) -> dict:
    """Top-1, top-k, per-class accuracy, confusion matrix and the most confused pairs."""
    scores = np.asarray(scores)
    labels = np.asarray(labels).astype(np.int64)
    n, c = scores.shape
    if n == 0:
        raise ResnetEdgeError("no examples to evaluate")
    k = min(top_k, c)
    pred = scores.argmax(axis=1)
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = []
    for i, name in enumerate(classes):
        total = int(confusion[i].sum())
        per_class.append({"class": name, "n": total, "accuracy": (float(confusion[i, i] / total) if total else None)})
    off = [(int(confusion[i, j]), i, j) for i in range(c) for j in range(c) if i != j and confusion[i, j]]
    confused = [{"true": classes[i], "predicted": classes[j], "count": cnt} for cnt, i, j in sorted(off, reverse=True)[:10]]
    return {
        "n": int(n),
        "top1": float((pred == labels).mean()),
        f"top{k}": float((topk == labels[:, None]).any(axis=1).mean()),
        "top_k": k,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "most_confused": confused,
    }


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
    """Load a Keras model (``trust``: without checking it for code) and report :func:`metrics` on ``split``
    of ``data``."""
    from resnet_edge.arch.keras_model import load_model

    model = load_model(model_path, trust=trust)
    check_classes(model, data, model_path)
    scores, labels = predict(model, data, split, batch_size, limit)
    result = metrics(scores, labels, data.classes)
    result.update({"model": str(model_path), "data": data.name, "split": split})
    return result
