"""Dataset readers, tested on tiny files written here, and the batch/transform helpers."""
import pickle

import numpy as np
import pytest
import torch

from gradinv.data import load_dataset, select_batch, to_model_input
from gradinv.data.readers import load_fashion_mnist
from gradinv.types import GradinvError




@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_reader(write_idx, tmp_path, suffix):
    images = np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.array([0, 1, 2, 3, 9]))
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.images.shape == (5, 1, 28, 28) and ds.labels.tolist() == [0, 1, 2, 3, 9]
    assert torch.allclose(ds.images[0, 0], torch.from_numpy(images[0]).float() / 255)


def test_cifar10_and_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": [3, 1, 4, 1]}, f)
    with open(tmp_path / "test", "wb") as f:
        pickle.dump({b"data": data, b"fine_labels": [30, 10, 40, 10]}, f)
    c10 = load_dataset("cifar10", data_dir=tmp_path)
    assert c10.images.shape == (4, 3, 32, 32) and c10.labels.tolist() == [3, 1, 4, 1]
    assert torch.allclose(c10.images[0], torch.from_numpy(data[0].reshape(3, 32, 32)).float() / 255)
    c100 = load_dataset("cifar100", data_dir=tmp_path)
    assert c100.num_classes == 100 and c100.labels.tolist() == [30, 10, 40, 10]
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(GradinvError, match="cannot read CIFAR"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / "faces" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 24), colour).save(tmp_path / "faces" / cls / f"{i}.png")
    (tmp_path / "faces" / "dog" / "notes.txt").write_text("ignored")
    ds = load_dataset("folder", data_dir=tmp_path / "faces", image_size=16)
    assert ds.images.shape == (4, 3, 16, 16) and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.images[0, 0].mean() > 0.99 and ds.images[2, 2].mean() > 0.99
    (tmp_path / "faces" / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(GradinvError, match="cannot read image"):
        load_dataset("folder", data_dir=tmp_path / "faces", image_size=16)


def test_embedded_default_is_heldout_fashion_mnist(default_data):
    assert default_data.images.shape == (500, 1, 28, 28) and default_data.num_classes == 10
    assert 0 <= default_data.images.min() and default_data.images.max() <= 1
    try:
        real = load_fashion_mnist(None, "test")
    except GradinvError:
        pytest.skip("Fashion-MNIST is not installed on this machine")
    assert torch.equal(real.images[:500], default_data.images)


def test_protocol_batch_has_distinct_labels(default_data):
    images, labels = select_batch(default_data, 8, offset=100)
    assert len(set(labels.tolist())) == 8
    x = to_model_input(images, 32, 3)
    assert x.shape == (8, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[:, 0], x[:, 2])


def test_sklearn_digits_reader():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert ds.images.shape == (1797, 1, 8, 8) and ds.num_classes == 10
    assert 0 <= ds.images.min() and ds.images.max() <= 1


def test_skimage_photos_reader():
    pytest.importorskip("skimage")
    ds = load_dataset("skimage")
    assert ds.images.shape[1:] == (3, 64, 64) and len(ds) == ds.num_classes
    assert 0 <= ds.images.min() and ds.images.max() <= 1 and ds.images.std() > 0.05


def test_embedded_default_has_a_disjoint_train_split(default_data):
    train = load_dataset("default", split="train")
    assert train.images.shape == (2000, 1, 28, 28) and train.num_classes == 10
    assert load_dataset("default", split="test").name == default_data.name == "fashion-mnist-test-500"
    test_images = {bytes((image * 255).round().byte().numpy()) for image in default_data.images}
    assert not any(bytes((image * 255).round().byte().numpy()) in test_images
                   for image in train.images)
    try:
        real = load_fashion_mnist(None, "train")
    except GradinvError:
        pytest.skip("Fashion-MNIST is not installed on this machine")
    assert torch.equal(real.images[:2000], train.images)
    assert torch.equal(real.labels[:2000], train.labels)
