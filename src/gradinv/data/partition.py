"""Split a dataset across federated clients: iid, Dirichlet label skew, or k classes per client.

How the data is split changes how much a client's update says about its images (a client with
one or two classes sends a very different gradient from an iid one), so audits need all three.
Every split is seeded, uses each index at most once and gives every client at least one example.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checks import GradinvError

PARTITIONS = ("iid", "dirichlet", "classes")


def partition(labels: torch.Tensor, num_clients: int, *, scheme: str = "iid", alpha: float = 0.5,
              classes_per_client: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Each client's sorted dataset indices under ``scheme`` (see ``PARTITIONS``)."""
    if scheme not in PARTITIONS:
        raise GradinvError(f"unknown partition {scheme!r}; choose one of {', '.join(PARTITIONS)}")
    if num_clients < 1:
        raise GradinvError("num_clients must be at least 1")
    if num_clients > len(labels):
        raise GradinvError(f"{num_clients} clients but only {len(labels)} examples to share "
                           "between them; use fewer clients")
    labels_np = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels_np)), num_clients)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels_np, num_clients, alpha, rng)
    else:
        parts = _classes(labels_np, num_clients, classes_per_client, rng)
    empty = [c for c, p in enumerate(parts) if len(p) == 0]
    if empty:
        raise GradinvError(f"partition {scheme!r} leaves client {empty[0]} without data "
                           f"({len(labels_np)} examples for {num_clients} clients); use fewer "
                           "clients, more data, or a larger alpha")
    return [np.sort(p) for p in parts]


def _dirichlet(labels: np.ndarray, num_clients: int, alpha: float,
               rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, shares drawn from Dirichlet(alpha): small alpha gives each client few classes
    (Hsu et al. 2019), large alpha approaches iid."""
    if alpha <= 0:
        raise GradinvError(f"alpha must be > 0, not {alpha}")
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            pieces[client].append(chunk)
    return [np.concatenate(p) for p in pieces]


def _classes(labels: np.ndarray, num_clients: int, k: int,
             rng: np.random.Generator) -> list[np.ndarray]:
    """Client i holds k consecutive classes of a shuffled class order (the pathological non-iid
    split of McMahan et al. 2017); a class's examples are shared evenly by its holders."""
    classes = rng.permutation(np.unique(labels))
    if not 1 <= k <= len(classes):
        raise GradinvError(f"classes_per_client must be between 1 and {len(classes)}, not {k}")
    held = [[classes[(i * k + j) % len(classes)] for j in range(k)] for i in range(num_clients)]
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for cls in classes:
        holders = [i for i, own in enumerate(held) if cls in own]
        if not holders:
            continue
        members = rng.permutation(np.flatnonzero(labels == cls))
        if len(members) < len(holders):
            raise GradinvError(f"class {cls} has {len(members)} examples for {len(holders)} "
                               "clients; use fewer clients or fewer classes per client")
        for client, chunk in zip(holders, np.array_split(members, len(holders))):
            pieces[client].append(chunk)
    return [np.concatenate(p) for p in pieces]  # k >= 1 classes each, so never empty
