"""Readers for the image formats users have: idx (MNIST family), CIFAR pickles, image folders,
sklearn digits, skimage photos, and the small embedded default."""
from __future__ import annotations

import gzip
import importlib.resources
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from ..checks import GradinvError, check_choice
from .dataset import ImageDataset

FASHION_MNIST_DIRS = [Path("/usr/share/datasets/fashion-mnist")]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _from_uint8(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> ImageDataset:
    """(N, H, W) or (N, C, H, W) uint8 -> float images in [0, 1]."""
    if images.ndim == 3:
        images = images[:, None]
    tensor = torch.from_numpy(np.array(images, dtype=np.float32)) / 255.0
    return ImageDataset(name, tensor, torch.from_numpy(labels.astype(np.int64)), num_classes)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): the MNIST / Fashion-MNIST format."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = data[0:2], data[2], data[3]
        if zero != b"\x00\x00" or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte idx file")
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError, IndexError) as err:
        raise GradinvError(f"cannot read idx file {path}: {err}") from None


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise GradinvError(f"missing {stem}(.gz) in {root}")


def load_idx_dataset(name: str, root: Path, split: str) -> ImageDataset:
    """MNIST-family files: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise GradinvError(f"{root}: {len(images)} images but {len(labels)} labels")
    return _from_uint8(name, images, labels, 10)


def load_fashion_mnist(root: Path | None, split: str) -> ImageDataset:
    if root is None:
        root = next((d for d in FASHION_MNIST_DIRS if d.is_dir()), None)
        if root is None:
            raise GradinvError("Fashion-MNIST not found: install it with "
                               "'apt-get install dataset-fashion-mnist' or pass --data-dir")
    return load_idx_dataset("fashion-mnist", root, split)


def load_cifar(root: Path, split: str, num_classes: int) -> ImageDataset:
    """CIFAR-10/100 'python version' pickles (data_batch_1..5 / test_batch, or train / test)."""
    if num_classes == 10:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key = b"labels"
    else:
        files, key = [split], b"fine_labels"
    images, labels = [], []
    for file in files:
        path = root / file
        if not path.exists():
            raise GradinvError(f"missing CIFAR file {path}")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[key]))
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as err:
            raise GradinvError(f"cannot read CIFAR file {path}: {err}") from None
    return _from_uint8(f"cifar{num_classes}", np.concatenate(images), np.concatenate(labels),
                       num_classes)


def load_image_folder(root: Path, *, size: int | None = None, grey: bool = False) -> ImageDataset:
    """One sub-folder per class (ImageNet / FFHQ style); images are resized to size x size."""
    try:
        from PIL import UnidentifiedImageError
    except ImportError:
        raise GradinvError("image folders need Pillow: pip install 'gradinv[images]'") from None
    if not root.is_dir():
        raise GradinvError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise GradinvError(f"{root} has no class sub-folders")
    arrays, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((root / cls).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                arrays.append(_read_image(file, size, grey))
            except (UnidentifiedImageError, OSError, ValueError) as err:
                raise GradinvError(f"cannot read image {file}: {err}") from None
            labels.append(label)
    if not arrays:
        raise GradinvError(f"{root} holds no images")
    if len({a.shape for a in arrays}) > 1:
        raise GradinvError(f"images in {root} differ in size; pass --image-size")
    return ImageDataset(root.name, torch.from_numpy(np.stack(arrays)),
                        torch.tensor(labels, dtype=torch.long), len(classes))


def _read_image(file: Path, size: int | None, grey: bool) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]. 16-bit greyscale is scaled from 0..65535: Pillow's
    ``convert("L")`` would clip it, turning almost every pixel white."""
    from PIL import Image
    with Image.open(file) as img:
        if img.mode.startswith("I;16") or (img.mode == "I" and img.format == "PNG"):
            img, scale = img.convert("F"), 65535.0
        elif img.mode in ("I", "F"):
            raise ValueError(f"{img.mode}-mode (32-bit) images are not supported; "
                             "save it with 8 or 16 bits per channel")
        else:
            img, scale = img.convert("L" if grey else "RGB"), 255.0
        side = size or min(img.size)
        img = img.resize((side, side), Image.BILINEAR)
        array = np.asarray(img, dtype=np.float32).reshape(side, side, -1).transpose(2, 0, 1) / scale
    return array if grey or len(array) == 3 else np.repeat(array, 3, axis=0)


def load_sklearn_digits() -> ImageDataset:
    """The 1,797 8x8 digits bundled with scikit-learn (values 0..16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GradinvError("the digits dataset needs scikit-learn: pip install 'gradinv[sklearn]'") from None
    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16.0
    return ImageDataset("digits", images, torch.from_numpy(digits.target).long(), 10)


SKIMAGE_PHOTOS = ("astronaut", "camera", "cat", "chelsea", "coffee", "coins", "moon", "rocket")


def load_skimage_photos(size: int = 64) -> ImageDataset:
    """skimage's bundled photos, centre-cropped and resized; each photo is its own class."""
    try:
        from skimage import data as skdata
        from skimage.transform import resize
    except ImportError:
        raise GradinvError("the skimage photos need scikit-image: pip install 'gradinv[skimage]'") from None
    arrays = []
    for name in SKIMAGE_PHOTOS:
        img = np.asarray(getattr(skdata, name)(), dtype=np.float64)
        img = img / 255.0 if img.max() > 1 else img
        img = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        s = min(h, w)
        crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        arrays.append(resize(crop, (size, size), anti_aliasing=True).transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays)).float().clamp(0, 1)
    return ImageDataset("skimage", images, torch.arange(len(arrays)), len(arrays))


# The embedded default, per split: disjoint Fashion-MNIST images (MIT licence, Zalando Research;
# see assets/LICENSE-fashion-mnist.txt), so a prior trained on split="train" never saw the
# test images attacks are scored on.
EMBEDDED = {"train": ("fashion_mnist_train_2000.npz", "fashion-mnist-train-2000"),
            "test": ("fashion_mnist_test_500.npz", "fashion-mnist-test-500")}


def load_embedded_default(split: str = "test") -> ImageDataset:
    """The first 2,000 images of the Fashion-MNIST train split, or the first 500 of its test
    split."""
    file, name = EMBEDDED[split]
    path = importlib.resources.files("gradinv") / "assets" / file
    with path.open("rb") as f:
        data = np.load(f)
        return _from_uint8(name, data["images"], data["labels"], 10)


DATASETS = ("default", "fashion-mnist", "mnist", "cifar10", "cifar100", "folder", "digits",
            "skimage")
# Datasets with disjoint train and test splits (the embedded default: 2,000 train and 500 test
# Fashion-MNIST images); the others (an image folder, sklearn's digits, skimage's photos) are
# one set of images.
SPLIT_DATASETS = ("default", "fashion-mnist", "mnist", "cifar10", "cifar100")


def check_has_splits(name: str, purpose: str) -> None:
    """Refuse a dataset without separate train and test splits where ``purpose`` needs them."""
    if name not in SPLIT_DATASETS:
        raise GradinvError(f"dataset {name!r} has no separate train and test split, which "
                           f"{purpose} needs; use one of {', '.join(SPLIT_DATASETS)}")


def resolve_split(name: str, split: str | None) -> str | None:
    """The split to read: ``split``, or 'test' for a dataset with splits; None for a dataset
    without them, where a given split is refused (all of its images would be read anyway)."""
    if split is None:
        return "test" if name in SPLIT_DATASETS else None
    check_choice("split", split, ("train", "test"))
    check_has_splits(name, f"--split {split}")
    return split


def load_dataset(name: str, *, data_dir: str | Path | None = None, split: str | None = None,
                 image_size: int | None = None) -> ImageDataset:
    """Load a dataset by name; ``data_dir`` points at the files where they are not built in.
    ``split`` (default 'test') exists only for the ``SPLIT_DATASETS``."""
    check_choice("dataset", name, DATASETS)
    split = resolve_split(name, split)
    root = _data_dir(name, data_dir)
    if name == "default":
        return load_embedded_default(split)
    if name == "fashion-mnist":
        return load_fashion_mnist(root, split)
    if name == "mnist":
        return load_idx_dataset("mnist", root, split)
    if name in ("cifar10", "cifar100"):
        return load_cifar(root, split, int(name[5:]))
    if name == "folder":
        return load_image_folder(root, size=image_size)
    if name == "digits":
        return load_sklearn_digits()
    return load_skimage_photos()


def _data_dir(name: str, data_dir: str | Path | None) -> Path | None:
    """The folder a dataset is read from: required where nothing is built in, refused where
    it would be silently ignored, and never a file."""
    if name in ("default", "digits", "skimage") and data_dir is not None:
        raise GradinvError(f"dataset {name!r} is built in and reads no --data-dir")
    if name in ("mnist", "cifar10", "cifar100", "folder") and data_dir is None:
        raise GradinvError(f"dataset {name!r} needs --data-dir pointing at its files")
    root = Path(data_dir) if data_dir is not None else None
    if root is not None and root.exists() and not root.is_dir():
        raise GradinvError(f"--data-dir {root} is a file; give the folder holding the files")
    return root
