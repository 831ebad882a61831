"""mfcore.data: indexed datasets (the Megatron .bin/.idx format), GPT samples, loaders, preprocessing."""
from mfcore.data.indexed import (
    IndexedDataset,
    IndexedDatasetBuilder,
    IndexedDatasetError,
    best_dtype,
    check_dataset,
    merge_datasets,
)

__all__ = [
    "IndexedDataset",
    "IndexedDatasetBuilder",
    "IndexedDatasetError",
    "best_dtype",
    "check_dataset",
    "merge_datasets",
]
