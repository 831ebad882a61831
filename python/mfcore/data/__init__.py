"""mfcore.data: indexed datasets (the Megatron .bin/.idx format), GPT samples, loaders, preprocessing."""
from mfcore.data.indexed import (
    IndexedDataset,
    IndexedDatasetBuilder,
    IndexedDatasetError,
    best_dtype,
    check_dataset,
    merge_datasets,
)
from mfcore.data.samples import SampleDataset, SampleEngineError, SampleOptions
from mfcore.data.blended import BlendedDataset
from mfcore.data.gpt import GPTDataset, build_gpt_datasets, parse_split, wait_for_index_cache
from mfcore.data.sampler import PretrainingSampler
from mfcore.data.loader import PretrainingLoader

__all__ = [
    "IndexedDataset",
    "IndexedDatasetBuilder",
    "IndexedDatasetError",
    "best_dtype",
    "check_dataset",
    "merge_datasets",
    "SampleDataset",
    "SampleEngineError",
    "SampleOptions",
    "BlendedDataset",
    "GPTDataset",
    "build_gpt_datasets",
    "parse_split",
    "wait_for_index_cache",
    "PretrainingSampler",
    "PretrainingLoader",
]
