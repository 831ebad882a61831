"""Write the Megatron-core interop fixtures of ``tests/golden/megatron_core/`` (run rarely, by hand).

Runs in an environment where ``megatron-core`` and ``torch`` are installed (NOT the project venv;
neither is a dependency of mfcore)::

    python3.11 -m venv /tmp/mcv && /tmp/mcv/bin/pip install megatron-core==0.16.1 torch numpy packaging
    /tmp/mcv/bin/python tools/make_megatron_fixtures.py

It writes small ``.bin/.idx`` datasets with Megatron-core's own ``IndexedDatasetBuilder`` and stores
what Megatron-core's ``GPTDataset`` / ``BlendedDataset`` produce from them: the document, sample and
shuffle indices, the blend's assignment, and every field of every sample. The test
``tests/interop/test_megatron_core.py`` checks mfcore against them without needing Megatron.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "megatron_core")
EOD = 0
CACHE = tempfile.mkdtemp(prefix="megatron-fixture-cache-")  # keeps Megatron's index cache out of OUT


class FixtureTokenizer:
    """The few attributes Megatron-core's datasets ask of a tokenizer (no pad token: pad is -1)."""

    eod = EOD
    vocab_size = 120_000
    unique_identifiers = {"class": "FixtureTokenizer", "eod": EOD}


def write_datasets() -> dict:
    """``a``: uint16, one sequence per document; ``b``: int32, several sequences per document."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(20261123)
    paths = {}
    for name, dtype, docs, high, max_parts in (("a", np.uint16, 150, 5000, 1), ("b", np.int32, 90, 100_000, 3)):
        prefix = os.path.join(OUT, name)
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
        for _ in range(docs):
            lengths = np.maximum(rng.lognormal(4.0, 0.9, size=int(rng.integers(1, max_parts + 1))), 2).astype(int)
            tokens = rng.integers(1, high, size=int(lengths.sum())).astype(dtype)
            tokens[np.cumsum(lengths) - 1] = EOD  # every sequence ends in EOD
            builder.add_document(torch.from_numpy(tokens.astype(np.int64)), lengths.tolist())
        builder.finalize(prefix + ".idx")
        paths[name] = prefix
    return paths


def build(blend, split, seq_length, seed, sizes, **options):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    config = GPTDatasetConfig(random_seed=seed, sequence_length=seq_length, blend=blend, split=split,
                              tokenizer=FixtureTokenizer(), path_to_cache=CACHE, mid_level_dataset_surplus=0.005,
                              **options)
    return BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()


def record(arrays: dict, case: str, datasets) -> dict:
    """Every sample's fields (and the indices behind them) of each present split into ``arrays``."""
    summary = {}
    for split, ds in zip(("train", "valid", "test"), datasets):
        if ds is None:
            continue
        key = f"{case}/{split}"
        samples = [ds[i] for i in range(len(ds))]
        for field in ("tokens", "labels", "loss_mask", "position_ids"):
            arrays[f"{key}/{field}"] = np.stack([s[field].numpy() for s in samples])
        if "attention_mask" in samples[0]:
            arrays[f"{key}/attention_mask"] = np.stack([s["attention_mask"].numpy() for s in samples[:8]])
        if hasattr(ds, "dataset_index"):  # a BlendedDataset
            arrays[f"{key}/dataset_index"] = np.asarray(ds.dataset_index)
            arrays[f"{key}/dataset_sample_index"] = np.asarray(ds.dataset_sample_index)
        else:
            for name in ("document_index", "sample_index", "shuffle_index"):
                arrays[f"{key}/{name}"] = np.asarray(getattr(ds, name))
        summary[split] = len(ds)
    return summary


def main() -> int:
    import torch.distributed as dist

    # Megatron's BlendedDataset asks for the rank when it caches: a one-process group answers 0.
    dist.init_process_group("gloo", init_method=f"file://{CACHE}/pg", rank=0, world_size=1)
    os.makedirs(OUT, exist_ok=True)
    p = write_datasets()
    cases = {
        # Many epochs with a separate last epoch, every reset option, attention masks.
        "single_reset": dict(blend=([p["a"]], None), split="90,8,2", seq_length=32, seed=1234,
                             sizes=[600, 60, 20], reset_position_ids=True, reset_attention_mask=True,
                             eod_mask_loss=True, create_attention_mask=True),
        # A weighted blend of a uint16 and an int32 dataset (multi-sequence documents).
        "blend_weighted": dict(blend=([p["a"], p["b"]], [30.0, 70.0]), split="90,7,3", seq_length=16,
                               seed=7, sizes=[500, 40, 10], reset_position_ids=False,
                               reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False),
        # One epoch of each split, no extra token (labels end in pad).
        "one_epoch_no_extra": dict(blend=([p["b"]], None), split="80,20,0", seq_length=24, seed=99,
                                   sizes=[None, None, None], reset_position_ids=False,
                                   reset_attention_mask=False, eod_mask_loss=True, create_attention_mask=False,
                                   add_extra_token_to_sequence=False),
        # Unweighted blend in exhaustive mode (each member once, weighted by its size).
        "blend_exhaustive": dict(blend=([p["a"], p["b"]], None), split="100,0,0", seq_length=20, seed=5,
                                 sizes=[None, None, None], reset_position_ids=True,
                                 reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False),
    }
    arrays, meta = {}, {}
    for case, kw in cases.items():
        blend, split, seq, seed, sizes = kw.pop("blend"), kw.pop("split"), kw.pop("seq_length"), kw.pop("seed"), kw.pop("sizes")
        meta[case] = dict(prefixes=[os.path.basename(x) for x in blend[0]], weights=blend[1], split=split,
                          seq_length=seq, seed=seed, num_samples=sizes, options=kw,
                          lengths=record(arrays, case, build(blend, split, seq, seed, sizes, **kw)))
        print(f"{case}: {meta[case]['lengths']}", flush=True)
    np.savez_compressed(os.path.join(OUT, "expected.npz"), **arrays)
    import megatron.core

    meta = {"megatron_core": getattr(megatron.core, "__version__", "unknown"), "eod": EOD, "pad": -1, "cases": meta}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({c: m["lengths"] for c, m in meta["cases"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
