"""One in-memory dataset type and the transforms between the data's format and the model's."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..checks import GradinvError
from ..types import PrivateBatch


@dataclass(frozen=True)
class ImageDataset:
    """Float images in [0, 1] as (N, C, H, W) with integer labels in [0, num_classes)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels) or len(self.images) == 0:
            raise GradinvError(f"dataset {self.name!r} is empty or malformed")
        outside = (self.labels < 0) | (self.labels >= self.num_classes)
        if outside.any():
            index = int(outside.nonzero()[0])
            raise GradinvError(f"dataset {self.name!r}: label {int(self.labels[index])} of image "
                               f"{index} is outside the {self.num_classes} classes "
                               f"0..{self.num_classes - 1}")

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return len(self.labels)


def to_model_input(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize (bilinear, antialiased) to size x size and replicate or average the channels."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                               align_corners=False).clamp(0, 1)
    return adapt_channels(images, channels)


def adapt_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> C by replication, C -> grey by averaging; other conversions are refused."""
    have = images.shape[-3]
    if have == channels:
        return images
    if have == 1:
        return images.expand(*images.shape[:-3], channels, *images.shape[-2:])
    if channels == 1:
        return images.mean(dim=-3, keepdim=True)
    raise GradinvError(f"cannot convert {have}-channel images to {channels} channels")


def select_batch(dataset: ImageDataset, batch_size: int, *, offset: int = 0,
                 distinct_labels: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``batch_size`` images from ``offset`` on, with pairwise distinct labels if asked."""
    if batch_size < 1:
        raise GradinvError("batch size must be at least 1")
    if offset < 0 or offset >= len(dataset):
        raise GradinvError(f"offset {offset} is outside the dataset ({len(dataset)} images)")
    if distinct_labels and batch_size > dataset.num_classes:
        raise GradinvError(f"batch size {batch_size} is larger than the number of classes "
                           f"({dataset.num_classes}); pass --allow-repeated-labels (in a run or sweep "
                           "file: distinct_labels = false)")
    chosen: list[int] = []
    seen: set[int] = set()
    for i in range(offset, len(dataset)):
        label = int(dataset.labels[i])
        if distinct_labels and label in seen:
            continue
        chosen.append(i)
        seen.add(label)
        if len(chosen) == batch_size:
            index = torch.tensor(chosen)
            return dataset.images[index], dataset.labels[index]
    raise GradinvError(f"batch size {batch_size} is larger than what {dataset.name!r} offers "
                       f"from offset {offset} ({len(chosen)} usable images)")


def private_batch(dataset: ImageDataset, batch_size: int, *, size: int, channels: int,
                  offset: int = 0, distinct_labels: bool = True) -> PrivateBatch:
    """A client batch at the model's input format."""
    images, labels = select_batch(dataset, batch_size, offset=offset,
                                  distinct_labels=distinct_labels)
    return PrivateBatch(to_model_input(images, size, channels), labels)
