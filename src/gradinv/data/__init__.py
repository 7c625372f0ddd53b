"""Datasets: readers for common formats, one in-memory type, transforms to the model's input."""
from .dataset import (ImageDataset, adapt_channels, private_batch, select_batch,
                      to_model_input)
from .readers import DATASETS, load_dataset, read_idx

__all__ = ["DATASETS", "ImageDataset", "adapt_channels", "load_dataset", "private_batch",
           "read_idx", "select_batch", "to_model_input"]
