"""The figures of a classifier's scores, computed in one place: ``evaluate`` (a Keras model), ``eval`` (a
``.tflite``, here or on a device) and ``convert``'s parity report them with the same keys.

* :func:`scores_report`: ``n``, ``top1``, ``top5`` (top-k accuracy with k = min(5, classes), ``top_k`` says
  which), ``per_class`` (images and accuracy of each class), ``confusions`` (the most frequent (true,
  predicted) pairs) and ``confusion_matrix`` (rows: true class, columns: predicted);
* :func:`agreement`: how two sets of scores for the same inputs differ (LiteRT's inference_diff idea):
  ``n``, ``top1_agreement``, ``max_abs_diff``, ``mean_abs_diff``.

Plain numpy (probabilities or logits, and integer labels): the edge side uses it without TensorFlow.
"""

from __future__ import annotations

import numpy as np

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.ui import safe_text

#: How many (true, predicted) pairs a report names; the confusion matrix holds them all.
TOP_CONFUSIONS = 5


def scores_report(scores: np.ndarray, labels: np.ndarray, classes: list[str],
                  top_confusions: int = TOP_CONFUSIONS) -> dict:
    """Top-1/top-5 accuracy, per-class accuracy, the most frequent confusions and the confusion matrix.
    Ties go to the first class, as ``argmax``. Raises :class:`ResnetEdgeError` for no examples."""
    scores = np.asarray(scores)
    y = np.asarray(labels).astype(np.int64)
    if scores.ndim != 2 or len(scores) == 0:
        raise ResnetEdgeError("no examples to evaluate")
    k = min(5, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    pred = top[:, 0]
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = []
    for c in range(n):
        total = int(confusion[c].sum())
        per_class.append({"class": safe_text(classes[c], 60), "n": total,
                          "accuracy": float(confusion[c, c] / total) if total else None})
    off = [(int(confusion[t, p]), t, p) for t in range(n) for p in range(n) if t != p and confusion[t, p]]
    off.sort(key=lambda item: (-item[0], item[1], item[2]))
    return {"n": int(len(y)), "top1": float((pred == y).mean()), "top5": float((top == y[:, None]).any(1).mean()),
            "top_k": k, "per_class": per_class,
            "confusions": [{"true": safe_text(classes[t], 60), "predicted": safe_text(classes[p], 60), "count": c}
                           for c, t, p in off[:top_confusions]],
            "confusion_matrix": confusion.tolist()}


def agreement(a: np.ndarray, b: np.ndarray, step: float | None = None) -> dict:
    """Top-1 agreement and the max/mean absolute difference of two score arrays for the same inputs. ``step``: the
    size of one quantization step of integer scores (an int8 model's output, dequantized): then also the largest
    difference in steps, how many of the scores differ and on how many inputs."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    out = {"n": int(len(a)), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
           "max_abs_diff": float(diff.max()) if diff.size else 0.0, "mean_abs_diff": float(diff.mean()) if diff.size else 0.0}
    if step:
        steps = np.rint(diff / step).astype(np.int64)  # dequantized integers: the differences are whole steps
        out.update({"step": float(step), "max_diff_steps": int(steps.max()) if steps.size else 0,
                    "scores_differing": int((steps > 0).sum()), "scores": int(steps.size),
                    "inputs_differing": int((steps.reshape(len(a), -1) > 0).any(1).sum()) if steps.size else 0})
    return out


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy alone."""
    return float((np.asarray(scores).argmax(1) == np.asarray(labels)).mean())
