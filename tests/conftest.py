import gzip
import struct

import numpy as np
import pytest
import torch

from gradinv.data import load_dataset, private_batch
from gradinv.fl import compute_update, observe
from gradinv.models import build_model
from gradinv.types import ThreatModel


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def default_data():
    return load_dataset("default")


@pytest.fixture
def lenet_case(default_data):
    """A sigmoid LeNet at 16 px grey and one held-out image: small enough for seconds-long tests."""
    model = build_model("lenet", channels=1, image_size=16, seed=0)
    batch = private_batch(default_data, 1, size=16, channels=1, offset=0)
    obs = observe(compute_update(model, batch), ThreatModel())
    return model, batch, obs


def _write_idx(path, array):
    """Write ``array`` as an unsigned-byte idx file, gzipped when the name ends in .gz."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.asarray(array).astype(np.uint8).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture(scope="session")
def write_idx():
    return _write_idx
