"""Data files handed over by users: every broken one ends in one GradinvError line naming it."""
import numpy as np
import pytest
import torch

from gradinv.data import load_dataset
from gradinv.types import GradinvError
from one_line import assert_one_line


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "train.csv").write_text("1,2,3")
    for name in ("mnist", "cifar10", "folder", "fashion-mnist"):
        with pytest.raises(GradinvError) as err:
            load_dataset(name, data_dir=tmp_path / "train.csv")
        assert_one_line(err, "--data-dir", "is a file")


def test_data_dir_for_a_built_in_dataset_is_refused(tmp_path):
    with pytest.raises(GradinvError, match="reads no --data-dir"):
        load_dataset("default", data_dir=tmp_path)


def test_idx_labels_out_of_range(write_idx, tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 12, 3]))
    with pytest.raises(GradinvError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert_one_line(err, "label 12 of image 1", "0..9")


def test_cifar_labels_out_of_range(tmp_path):
    import pickle
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, -1]}, f)
    with pytest.raises(GradinvError, match="label -1 of image 1"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    levels = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16).repeat(4, 0).repeat(4, 1)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(levels).save(tmp_path / cls / "deep.png")  # mode I;16
        Image.fromarray((levels // 257).astype(np.uint8)).save(tmp_path / cls / "flat.png")
    ds = load_dataset("folder", data_dir=tmp_path)
    deep, flat = ds.images[0], ds.images[1]
    assert ds.images.shape == (4, 3, 8, 8)
    expected = torch.from_numpy(levels / 65535.0).float()
    torch.testing.assert_close(deep[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(deep, flat, atol=1 / 255, rtol=0)  # same picture at 8 bits
