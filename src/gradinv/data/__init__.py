"""Datasets: readers for common formats, one in-memory type, transforms to the model's input."""
from .dataset import (ImageDataset, adapt_channels, private_batch, select_batch,
                      to_model_input)
from .readers import (DATASETS, SPLIT_DATASETS, check_has_splits, load_dataset, read_idx,
                      resolve_split)

__all__ = ["DATASETS", "SPLIT_DATASETS", "ImageDataset", "adapt_channels", "check_has_splits",
           "load_dataset", "private_batch", "read_idx", "resolve_split", "select_batch",
           "to_model_input"]
