"""Data sources on data the tests make (a tiny CIFAR batch folder, a tiny image folder) and the real
digits; a tampered pickle must be refused without running its payload."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from resnet_edge.data import DataError, load
from resnet_edge.data.sources import stratified_split


def write_cifar(root, n_train=60, n_test=20, batches=2, seed=0):
    """A CIFAR-10 python-version folder in the real layout (pickled dicts with bytes keys)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for b in range(1, batches + 1):
        data = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(n_train)]
        with open(root / f"data_batch_{b}", "wb") as fh:
            pickle.dump({b"batch_label": b"training batch", b"labels": labels, b"data": data}, fh, protocol=2)
    data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump({b"labels": [i % 10 for i in range(n_test)], b"data": data}, fh, protocol=2)
    names = [n.encode() for n in ("airplane automobile bird cat deer dog frog horse ship truck".split())]
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, fh, protocol=2)
    return root


def write_folder(root, classes=("cat", "dog", "fox"), per_class=10, size=(40, 30), broken=0):
    rng = np.random.default_rng(1)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((size[1], size[0], 3), 60 * c, np.uint8) + rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    for i in range(broken):
        (root / classes[0] / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_digits_split_is_fixed_stratified_and_upscaled():
    a, b = load("digits"), load("digits")
    assert a.train.x.shape[1:] == (32, 32, 3) and a.train.x.dtype == np.uint8
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    np.testing.assert_array_equal(a.test.y, b.test.y)
    np.testing.assert_array_equal(a.test.x, b.test.x)
    counts = np.bincount(a.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: each class about 20% of its ~180
    assert not a.flip and a.image_size == 32
    assert 0 < a.mean[0] < 255 and a.std[0] > 10
    np.testing.assert_array_equal(a.train.x[..., 0], a.train.x[..., 2])  # gray replicated on RGB


def test_cifar_batches_load_with_label_names(tmp_path):
    data = load(f"cifar10:{write_cifar(tmp_path / 'cifar')}")
    assert data.classes[0] == "airplane" and data.num_classes == 10
    assert len(data.train) + len(data.val) == 120 and len(data.test) == 20
    assert data.train.x.shape[1:] == (32, 32, 3)
    # Channel order: the first 1024 values of a row are the red plane.
    with open(tmp_path / "cifar" / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")[b"data"][0]
    np.testing.assert_array_equal(data.test.x[0, :, :, 0].ravel(), raw[:1024])


def test_cifar_parent_folder_is_accepted(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert load(f"cifar10:{tmp_path}").num_classes == 10


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_tampered_cifar_pickle_is_refused(tmp_path, monkeypatch):
    root = write_cifar(tmp_path / "cifar")
    with open(root / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": Payload(), b"labels": [0]}, fh, protocol=2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="not allowed"):
        load(f"cifar10:{root}")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "setup, fragment",
    [
        (lambda p: None, "not found"),
        (lambda p: p.mkdir(), "not a CIFAR-10 python-version folder"),
        (lambda p: (write_cifar(p), (p / "test_batch").write_bytes(b"garbage")), "re-download"),
    ],
)
def test_cifar_layout_errors(tmp_path, setup, fragment):
    root = tmp_path / "c"
    setup(root)
    with pytest.raises(DataError, match=fragment) as err:
        load(f"cifar10:{root}")
    assert "\n" not in str(err.value)


def test_image_folder_splits_and_skips_unreadable(tmp_path):
    root = write_folder(tmp_path / "imgs", broken=2)
    data = load(f"folder:{root}")
    assert data.classes == ["cat", "dog", "fox"]
    assert len(data.train) + len(data.val) + len(data.test) == 30
    assert len(data.skipped) == 2 and data.image_size is None
    with pytest.raises(DataError, match="unreadable image"):
        load(f"folder:{root}", strict=True)


def test_image_folder_with_train_val(tmp_path):
    write_folder(tmp_path / "t" / "train", per_class=6)
    write_folder(tmp_path / "t" / "val", per_class=2)
    data = load(f"folder:{tmp_path / 't'}")
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 6)


def test_image_folder_errors(tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least 2"):
        load(f"folder:{tmp_path / 'one'}")
    with pytest.raises(DataError, match="not found"):
        load(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match="no readable"):
        load(f"folder:{tmp_path / 'empty'}")
    from PIL import Image

    for c in ("a", "b"):  # 4 good images per class: none would be left for validation
        for i in range(4):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "empty" / c / f"{i}.png")
    with pytest.raises(DataError, match="8 readable images, too few to leave any for validation"):
        load(f"folder:{tmp_path / 'empty'}")


def test_unknown_source():
    with pytest.raises(DataError, match="valid: digits"):
        load("mnist")
    with pytest.raises(DataError, match="give a directory"):
        load("cifar10")


def test_stratified_split_keeps_shares():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, val, test = stratified_split(y, (0.7, 0.1, 0.2))
    assert len(set(train) | set(val) | set(test)) == 100
    assert np.bincount(y[test]).tolist() == [2, 4, 6, 8]


# --- tf.data pipelines -----------------------------------------------------------------------------


def test_pipeline_augmentation_is_deterministic_per_epoch():
    from resnet_edge.data.pipeline import make_dataset

    data = load("digits")

    def first(epoch):
        x, y = next(iter(make_dataset(data, "train", input_size=32, batch_size=16, training=True, seed=3, epoch=epoch)))
        return x.numpy(), y.numpy()

    (a, ya), (b, yb), (c, _) = first(0), first(0), first(1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == (16, 32, 32, 3) and 0 <= a.min() and a.max() <= 255
    # The padded crop moves the digit but never invents pixel values (no flip for digits).
    plain = next(iter(make_dataset(data, "train", input_size=32, batch_size=16)))[0].numpy()
    assert not np.array_equal(a, plain)


def test_pipeline_on_folder_resizes_and_center_crops(tmp_path):
    from resnet_edge.data.pipeline import make_dataset

    data = load(f"folder:{write_folder(tmp_path / 'imgs', size=(150, 120))}")
    x, y = next(iter(make_dataset(data, "train", input_size=112, batch_size=4, training=True)))
    assert x.shape == (4, 112, 112, 3)
    x, y = next(iter(make_dataset(data, "test", input_size=112, batch_size=4)))
    assert x.shape == (4, 112, 112, 3)


def test_model_input_must_fit_fixed_size_data():
    from resnet_edge.data.pipeline import make_dataset

    with pytest.raises(DataError, match="CIFAR-family"):
        make_dataset(load("digits"), "test", input_size=64, batch_size=8)


def test_digits_read_without_scikit_learn_are_scikit_learns():
    """The digits come from the file scikit-learn ships, read directly (its import costs seconds): the same
    arrays as sklearn.datasets.load_digits(), and scikit-learn is not imported to get them."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from resnet_edge.data.sources import digits_arrays

    images, target = digits_arrays()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)
    code = "import sys; from resnet_edge.data import load; load('digits'); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
