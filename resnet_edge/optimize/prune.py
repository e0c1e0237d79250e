"""Magnitude pruning (unstructured or M:N), prune-preserving QAT and weight clustering with tfmot.

These shrink the compressed file; they do not make a dense CPU kernel faster (XNNPACK runs the zeros).
For latency, see :mod:`resnet_edge.optimize.channels`, which removes whole filters.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from resnet_edge.errors import ConfigError

SCHEDULES = ("polynomial", "constant")


def parse_structure(text: str | None) -> tuple[int, int] | None:
    """'2:4' -> (2, 4); None stays None. M < N, both positive."""
    if text is None:
        return None
    try:
        m, n = (int(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--structure must look like M:N (e.g. 2:4), got {text!r}") from None
    if not 0 < m < n:
        raise ConfigError(f"--structure M:N needs 0 < M < N, got {text!r}")
    return m, n


def prunable_layers(model, skip: tuple[str, ...] = ()) -> list[str]:
    """Names of the Conv2D/Dense layers to prune. ``skip`` takes layer names and the words ``first``
    (the stem convolution) and ``last`` (the classifier)."""
    from resnet_edge._tf import keras

    weighted = [layer.name for layer in model.layers
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.trainable]
    names = set(model_layer.name for model_layer in model.layers)
    skipped = set()
    for s in skip:
        if s == "first":
            skipped.add(weighted[0])
        elif s == "last":
            skipped.add(weighted[-1])
        elif s in names:
            skipped.add(s)
        else:
            raise ConfigError(f"--skip {s!r}: not a layer of this model; use first, last or layer names such as conv1_conv")
    return [n for n in weighted if n not in skipped]


def kernel_sparsity(model, names: list[str] | None = None) -> list[dict]:
    """Fraction of exact zeros in every Conv2D/Dense kernel (after strip_pruning)."""
    from resnet_edge._tf import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.trainable and (names is None or layer.name in names):
            k = layer.kernel.numpy()
            rows.append({"layer": layer.name, "weights": int(k.size), "sparsity": float((k == 0).mean())})
    return rows


def check_m_by_n(kernel: np.ndarray, m: int, n: int) -> bool:
    """Whether every block of N consecutive input-channel weights holds at most M non-zeros (how tfmot
    and sparse kernels lay out M:N sparsity: along the input dimension of each output filter)."""
    if kernel.ndim == 4:  # H, W, Cin, Cout -> blocks along Cin for every (h, w, cout)
        k = np.moveaxis(kernel, 2, -1).reshape(-1, kernel.shape[2])
    else:  # Dense: Cin, Cout -> blocks along Cin
        k = kernel.T
    cin = k.shape[-1]
    usable = cin - cin % n
    blocks = k[:, :usable].reshape(k.shape[0], -1, n)
    return bool(((blocks != 0).sum(axis=-1) <= m).all())


def prune(
    model_path: str | Path,
    data,
    out: str | Path,
    *,
    sparsity: float = 0.5,
    schedule: str = "polynomial",
    structure: str | None = None,
    skip: tuple[str, ...] = (),
    epochs: int = 2,
    lr: float = 1e-2,
    batch_size: int = 128,
    limit: int | None = None,
    pqat: bool = False,
    clusters: int | None = None,
    verbose: int = 2,
    trust: bool = False,
) -> dict:
    """Prune (or, with ``clusters``, cluster) ``model_path``, fine-tune, strip, and write ``out`` + manifest.

    Side effects: writes ``out`` and ``out``'s ``.json``; the source model is untouched. With ``pqat``
    the pruned model then gets prune-preserving QAT (at QAT's gentle rate, 1e-4) and ``out`` holds the QAT
    model (reload it in
    :func:`resnet_edge._tfmot.quantize_scope`); the manifest then also reports the zeros that
    survive in the converted int8 TFLite weights.
    """
    from resnet_edge._tf import keras
    from resnet_edge.build import check_keras_path, save_keras, versions
    from resnet_edge.convert import convert_and_check, to_tflite
    from resnet_edge.evaluate import check_classes
    from resnet_edge.optimize.common import (accuracy, fine_tune, gzip_size, load_for_tfmot, now, outputs_logits,
                                             read_manifest)
    from resnet_edge._tfmot import tfmot
    from resnet_edge.optimize.qat import QAT_LR, quantize

    if clusters is None and not 0 < sparsity < 1:
        raise ConfigError(f"--sparsity must be between 0 and 1 (exclusive), got {sparsity}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if clusters is not None and clusters < 2:
        raise ConfigError(f"--clusters must be at least 2, got {clusters}")
    m_by_n = parse_structure(structure)
    if epochs < 1:
        raise ConfigError("--epochs must be at least 1: pruning happens while fine-tuning")
    check_keras_path(out, h5_only=pqat)
    model = load_for_tfmot(model_path, trust=trust)
    check_classes(model, data, model_path)
    targets = prunable_layers(model, tuple(skip))
    mot = tfmot()
    t0 = time.perf_counter()
    before = accuracy(model, data, "val", limit)
    float_tflite_before = to_tflite(model, "float32")
    steps = epochs * -(-min(len(data.train), limit or len(data.train)) // batch_size)
    logits = outputs_logits(model)

    if clusters is not None:
        cl = mot.clustering.keras
        init = cl.CentroidInitialization.KMEANS_PLUS_PLUS

        def wrap(layer):
            return cl.cluster_weights(layer, number_of_clusters=clusters, cluster_centroids_init=init) if layer.name in targets else layer

        wrapped = keras.models.clone_model(model, clone_function=wrap)
        history = fine_tune(wrapped, data, epochs=epochs, lr=lr, batch_size=batch_size, limit=limit, verbose=verbose,
                            from_logits=logits)
        stripped = cl.strip_clustering(wrapped)
        method = {"method": "clustering", "clusters": clusters}
    else:
        sp = mot.sparsity.keras
        frequency = max(1, steps // 20)
        if schedule == "polynomial":
            sched = sp.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                       end_step=max(1, int(steps * 0.7)), frequency=frequency)
        else:
            sched = sp.ConstantSparsity(sparsity, begin_step=0, frequency=frequency)
        kwargs = {"pruning_schedule": sched}
        if m_by_n:
            kwargs["sparsity_m_by_n"] = m_by_n

        def wrap(layer):
            return sp.prune_low_magnitude(layer, **kwargs) if layer.name in targets else layer

        wrapped = keras.models.clone_model(model, clone_function=wrap)
        history = fine_tune(wrapped, data, epochs=epochs, lr=lr, batch_size=batch_size, limit=limit, verbose=verbose,
                            from_logits=logits, callbacks=[sp.UpdatePruningStep()])
        stripped = sp.strip_pruning(wrapped)
        method = {"method": "magnitude", "target_sparsity": sparsity if not m_by_n else (1 - m_by_n[0] / m_by_n[1]),
                  "schedule": schedule, "structure": structure, "frequency": frequency}
    after = accuracy(stripped, data, "val", limit)
    layers = kernel_sparsity(stripped, targets)
    if clusters is not None:
        for row in layers:
            row["unique_values"] = int(len(np.unique(stripped.get_layer(row["layer"]).kernel.numpy())))
    if m_by_n:
        for row in layers:
            row["m_by_n_ok"] = check_m_by_n(stripped.get_layer(row["layer"]).kernel.numpy(), *m_by_n)
    float_tflite_after = to_tflite(stripped, "float32")
    total_weights = sum(r["weights"] for r in layers)
    from resnet_edge.arch.keras_model import count_keras
    manifest = {
        "kind": "keras-model",
        "optimization": method["method"] if not pqat else "pruning+pqat",
        "created": now(),
        "source": {"path": str(model_path), "manifest": read_manifest(model_path).get("file")},
        "spec": read_manifest(model_path).get("spec"),
        "data": data.info(),
        "settings": {**method, "skip": list(skip), "epochs": epochs, "lr": lr, "batch_size": batch_size, "limit": limit},
        "accuracy": {"split": "val", "before": before, "after": after},
        "sparsity": sum(r["sparsity"] * r["weights"] for r in layers) / total_weights,
        "counts": {"before": count_keras(model).to_dict(), "after": count_keras(stripped).to_dict(),
                   "nonzero_params_after": int(sum(int((w != 0).sum()) for w in stripped.get_weights()))},
        "layers": layers,
        "gzip_bytes": {"float32_tflite_before": gzip_size(float_tflite_before),
                       "float32_tflite_after": gzip_size(float_tflite_after),
                       "float32_tflite_raw": len(float_tflite_after)},
        "history": history,
        "versions": versions(),
        "trained": True,
    }
    result_model = stripped
    if pqat:
        if clusters is not None:
            raise ConfigError("--pqat keeps pruning zeros; it does not combine with --clusters here")
        from resnet_edge.convert import representative_samples

        q = quantize(stripped, scheme="pqat", calibration=representative_samples(stripped, data, 256))
        manifest["pqat_history"] = fine_tune(q, data, epochs=epochs, lr=QAT_LR, batch_size=batch_size, limit=limit,
                                             verbose=verbose, from_logits=logits)
        int8, figures = convert_and_check(q, data, "int8", io="int8", split="val", limit=limit)
        from resnet_edge.tflite.model import weight_sparsity

        manifest["accuracy"]["pqat_keras"] = accuracy(q, data, "val", limit)
        manifest["accuracy"]["int8_tflite"] = figures["tflite_accuracy"]
        manifest["int8_tflite"] = {**figures, "weight_sparsity": {k: v for k, v in weight_sparsity(int8).items() if k != "per_op"},
                                   "gzip_bytes": gzip_size(int8)}
        result_model = q
    manifest["seconds"] = round(time.perf_counter() - t0, 1)
    return save_keras(result_model, out, manifest, h5_only=pqat)

