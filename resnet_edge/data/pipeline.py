"""tf.data pipelines with the paper's augmentation (host side).

They yield ``(images, labels)``: float32 raw pixels in 0..255 (normalization lives inside the model, see
:class:`resnet_edge.arch.spec.Preprocess`) and int64 labels.

* CIFAR-size inputs (below 96 pixels; Section 4.2): 4 pixels of zero padding on each side, a random
  crop back to the input size, and a horizontal flip where the source allows it (not for digits).
* ImageNet-size inputs (Section 3.4): a random-resized crop (scale augmentation, 8-100% of the area,
  aspect 3/4-4/3) and a flip for training; resize of the shorter side to size/0.875 and a center crop
  for evaluation.

Randomness is stateless and derived from ``(seed, epoch, example index)``: epoch ``e`` of a run sees the
same order and the same crops whether or not the run was interrupted and resumed before it.
"""

from __future__ import annotations

import numpy as np

from resnet_edge._tf import tf
from resnet_edge.data.sources import CIFAR_STYLE_BELOW, EVAL_CROP, DataError, Dataset, Split



def check_fits(data: Dataset, input_size: int) -> None:
    """In-memory sources have a fixed image size; the model must take exactly that size."""
    if data.image_size is not None and data.image_size != input_size:
        raise DataError(
            f"the model takes {input_size}x{input_size} images but {data.name} has {data.image_size}x{data.image_size}; "
            f"use a model built for {data.image_size}x{data.image_size} (for 32x32 data a CIFAR-family model such as resnet20)"
        )


def _decode(path):
    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    return img


def _eval_resize(img, size: int):
    """Shorter side to size/0.875, then a centered size x size crop (ImageNet); plain resize when small."""
    if size < CIFAR_STYLE_BELOW:
        return tf.image.resize(img, [size, size], antialias=True)
    shape = tf.cast(tf.shape(img)[:2], tf.float32)
    scale = (size / EVAL_CROP) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    img = tf.image.resize(img, new, antialias=True)
    return tf.image.resize_with_crop_or_pad(img, size, size)


def _augment(img, seed, size: int, flip: bool):
    """Training augmentation of one image (uint8 or float, any size) with a stateless seed."""
    img = tf.cast(img, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    if size < CIFAR_STYLE_BELOW:
        if img.shape[0] != size or img.shape[1] != size:
            img = tf.image.resize(img, [size, size], antialias=True)
        img = tf.pad(img, [[4, 4], [4, 4], [0, 0]])
        img = tf.image.stateless_random_crop(img, [size, size, 3], seed=seeds[0])
    else:
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(img),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seeds[0],
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        img = tf.slice(img, begin, extent)
        img = tf.image.resize(img, [size, size], antialias=True)
    if flip:
        img = tf.image.stateless_random_flip_left_right(img, seed=seeds[1])
    return img


def make_dataset(
    data: Dataset,
    split: str | Split,
    *,
    input_size: int,
    batch_size: int,
    training: bool = False,
    seed: int = 0,
    epoch: int = 0,
    limit: int | None = None,
) -> "tf.data.Dataset":
    """Batches of ``split`` for a model with ``input_size`` inputs; shuffled and augmented when ``training``."""
    check_fits(data, input_size)
    part = (data.split(split) if isinstance(split, str) else split).take(limit)
    n = len(part)
    if n == 0:
        raise DataError(f"the {split if isinstance(split, str) else 'given'} split of {data.name} is empty")
    order = np.arange(n)
    if training:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    labels = part.y[order]
    if part.x is not None:
        ds = tf.data.Dataset.from_tensor_slices((part.x[order], labels))
    else:
        files = [part.files[i] for i in order]
        ds = tf.data.Dataset.from_tensor_slices((files, labels))
        ds = ds.map(lambda f, y: (_decode(f), y), num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        base = tf.constant([seed, epoch], dtype=tf.int64)

        def aug(i, xy):
            x, y = xy
            return _augment(x, tf.stack([base[0] * 1_000_003 + base[1], i]), input_size, data.flip), y

        ds = ds.enumerate().map(aug, num_parallel_calls=tf.data.AUTOTUNE)
    elif part.files is not None:
        ds = ds.map(lambda x, y: (_eval_resize(tf.cast(x, tf.float32), input_size), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:  # in-memory images already have the model's size (check_fits)
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if part.files is not None:
        ds = ds.ignore_errors()  # a file that passed the header check but fails to decode is dropped, not fatal
    options = tf.data.Options()
    options.deterministic = True
    # tf.data's autotuner: measured on 2 cores, its threads took a third of each 10-step epoch and tearing it
    # down when fit() returned stalled 2.6 s about every other epoch; without it the map runs on one thread per
    # core (the order and every augmentation are fixed by the seeds either way).
    options.autotune.enabled = False
    return ds.batch(batch_size).with_options(options).prefetch(tf.data.AUTOTUNE)


def takes_raw_pixels(model) -> bool:
    """Whether a Keras model normalizes inside (it has the ``preprocess`` layer, possibly wrapped by tfmot
    as ``quant_preprocess``) and so takes raw pixels."""
    return any(getattr(layer, "layer", layer).name == "preprocess" for layer in model.layers)


def model_inputs(model, data: Dataset, split: str, batch_size: int, limit: int | None = None) -> "tf.data.Dataset":
    """Batches of ``split`` in the form ``model`` takes: raw pixels when it normalizes inside, else pixels
    normalized with the data's own mean and std; uint8 when its input is uint8."""
    ds = make_dataset(data, split, input_size=int(model.input_shape[1]), batch_size=batch_size, limit=limit)
    if not takes_raw_pixels(model):
        mean = tf.constant(data.mean, tf.float32)
        std = tf.constant(data.std, tf.float32)
        ds = ds.map(lambda x, y: ((x - mean) / std, y))
    if model.inputs[0].dtype == tf.uint8:
        ds = ds.map(lambda x, y: (tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y))
    return ds
