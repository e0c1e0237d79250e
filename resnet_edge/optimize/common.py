"""What the optimization commands share: loading a model tfmot accepts, fine-tuning, accuracy, sizes."""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import zipfile
from pathlib import Path

from resnet_edge.errors import ResnetEdgeError


def keras_version_of_file(path: Path) -> str | None:
    """The Keras version recorded in a ``.keras`` archive (None for other formats or if absent)."""
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except (KeyError, ValueError):
        return None


def load_for_tfmot(path: str | Path, trust: bool = False):
    """Load a tf_keras model for tensorflow-model-optimization (QAT .h5 files too); refuse Keras 3 files
    with a clear line."""
    from resnet_edge.arch.keras_model import load_model

    path = Path(path)
    version = keras_version_of_file(path) if path.exists() else None
    if version and version.startswith("3"):
        raise ResnetEdgeError(
            f"{path} was saved by Keras {version}; tensorflow-model-optimization needs Keras 2 (tf_keras): "
            "save it with tf_keras (TF_USE_LEGACY_KERAS=1) or rebuild it with `resnet-edge build`/`train`"
        )
    return load_model(path, trust=trust)


def check_keras2(model) -> None:
    """Refuse an in-memory Keras 3 model (tfmot rejects it deep inside with an obscure error)."""
    from resnet_edge._tf import keras

    if not isinstance(model, keras.Model):
        raise ResnetEdgeError(
            f"got a {type(model).__module__}.{type(model).__name__}; tensorflow-model-optimization needs a tf_keras "
            "(Keras 2) model: import tf_keras, or set TF_USE_LEGACY_KERAS=1 before importing TensorFlow"
        )


def read_manifest(path: str | Path) -> dict:
    """The sidecar manifest of a model (empty when there is none; a stale one is refused)."""
    from resnet_edge.io import read_manifest as read

    return read(path)


def outputs_logits(model) -> bool:
    """Whether the model ends in logits (no softmax on its last layer)."""
    return model.layers[-1].get_config().get("activation") != "softmax"


def accuracy(model, data, split: str = "val", limit: int | None = None) -> float:
    from resnet_edge.evaluate import predict

    scores, labels = predict(model, data, split, limit=limit)
    return float((scores.argmax(axis=1) == labels).mean())


def fine_tune(model, data, *, epochs: int, lr: float, batch_size: int, limit: int | None = None, callbacks=(),
              seed: int = 0, verbose: int = 2, from_logits: bool = False) -> list[dict]:
    """SGD (momentum 0.9) at a constant low rate on the augmented training split; one seeded dataset per
    epoch, as in :mod:`resnet_edge.train`. Returns per-epoch loss and accuracy."""
    from resnet_edge._tf import keras
    from resnet_edge.data.pipeline import make_dataset

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )
    size = int(model.input_shape[1])
    history = []
    for epoch in range(epochs):
        ds = make_dataset(data, "train", input_size=size, batch_size=batch_size, training=True, seed=seed, epoch=epoch,
                          limit=limit)
        fit = model.fit(ds, epochs=1, verbose=verbose, callbacks=list(callbacks))
        history.append({"epoch": epoch + 1, "loss": float(fit.history["loss"][-1]), "acc": float(fit.history["acc"][-1])})
    return history


def gzip_size(data: bytes) -> int:
    """Size after gzip -9: what sparsity and clustering buy in a compressed download."""
    return len(gzip.compress(data, compresslevel=9))


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
