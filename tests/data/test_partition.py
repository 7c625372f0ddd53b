"""Partitions of a federation's data among its clients: seeded, disjoint, shaped as asked."""
import numpy as np
import pytest
import torch

from gradinv.data.partition import partition
from gradinv.types import GradinvError

LABELS = torch.arange(10).repeat_interleave(50)  # 500 examples, 10 balanced classes


def _skew(parts):
    """Mean share of each client's most common class."""
    return float(np.mean([np.bincount(LABELS[p].numpy()).max() / len(p) for p in parts]))


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "classes"])
def test_partition_is_seeded_disjoint_and_gives_everyone_data(scheme):
    parts = partition(LABELS, 8, scheme=scheme, alpha=0.5, classes_per_client=3, seed=1)
    assert len(parts) == 8 and all(len(p) >= 1 for p in parts)
    used = np.concatenate(parts)
    assert len(used) == len(set(used.tolist())) and used.max() < len(LABELS)
    again = partition(LABELS, 8, scheme=scheme, alpha=0.5, classes_per_client=3, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition(LABELS, 8, scheme=scheme, alpha=0.5, classes_per_client=3, seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_iid_sizes_are_balanced_and_cover_the_data():
    parts = partition(LABELS, 7, scheme="iid")
    assert sorted(len(p) for p in parts) == [71] * 4 + [72] * 3


def test_dirichlet_with_small_alpha_is_skewed():
    iid = partition(LABELS, 5, scheme="iid", seed=0)
    skewed = partition(LABELS, 5, scheme="dirichlet", alpha=0.05, seed=0)
    assert _skew(iid) < 0.25 and _skew(skewed) > 0.45  # 5 clients, 10 classes: about 2 each


def test_classes_partition_gives_k_classes_per_client():
    parts = partition(LABELS, 6, scheme="classes", classes_per_client=2, seed=0)
    assert [len(set(LABELS[p].tolist())) for p in parts] == [2] * 6


def test_partition_without_data_for_every_client_is_refused():
    with pytest.raises(GradinvError, match="6 clients but only 5 examples"):
        partition(LABELS[:5], 6, scheme="iid")
    with pytest.raises(GradinvError, match="without data"):
        partition(LABELS[:5], 5, scheme="dirichlet", alpha=0.01)
    with pytest.raises(GradinvError, match="classes_per_client"):
        partition(LABELS, 4, scheme="classes", classes_per_client=11)
