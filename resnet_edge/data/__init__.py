"""Data: sources as arrays or file lists (:mod:`.sources`, no TensorFlow) and tf.data pipelines with the
paper's augmentation (:mod:`.pipeline`, host side)."""

from resnet_edge.data.sources import DataError, Dataset, Split, load  # noqa: F401
