"""mfcore against Megatron-core itself: files Megatron-core wrote, samples Megatron-core produced.

The fixtures in ``tests/golden/megatron_core/`` were made by ``tools/make_megatron_fixtures.py`` with
megatron-core 0.16.1 (see ``cases.json``): two ``.bin/.idx`` datasets written by Megatron-core's own
``IndexedDatasetBuilder`` and, for four configurations, every field of every sample its
``GPTDataset`` / ``BlendedDataset`` returned, with the indices behind them.
"""
import json
import os
import shutil

import numpy as np
import pytest

from mfcore.data import IndexedDataset, IndexedDatasetBuilder, build_gpt_datasets

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "golden", "megatron_core")
with open(os.path.join(FIXTURES, "cases.json")) as _f:
    META = json.load(_f)
SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURES, "expected.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A copy of the Megatron-written datasets (mfcore never writes beside the fixtures)."""
    d = tmp_path_factory.mktemp("megatron_data")
    for name in ("a", "b"):
        for ext in (".bin", ".idx"):
            shutil.copy(os.path.join(FIXTURES, name + ext), d / (name + ext))
    return d


@pytest.mark.parametrize("name,dtype", [("a", np.uint16), ("b", np.int32)])
def test_rewriting_megatron_files_gives_the_same_bytes(data_dir, tmp_path, name, dtype):
    """Read with mfcore, write again with mfcore: byte-identical to Megatron-core's .bin and .idx."""
    theirs = IndexedDataset(data_dir / name)
    assert theirs.dtype == dtype
    assert theirs.num_documents == len(theirs.document_indices) - 1
    with IndexedDatasetBuilder(tmp_path / name, dtype) as b:
        for d in range(theirs.num_documents):
            first, last = int(theirs.document_indices[d]), int(theirs.document_indices[d + 1])
            b.add_document(theirs.get_document(d), lengths=theirs.sequence_lengths[first:last].tolist())
    for ext in (".bin", ".idx"):
        mine = (tmp_path / (name + ext)).read_bytes()
        assert mine == (data_dir / (name + ext)).read_bytes(), f"{name}{ext} differs"
    if name == "b":  # the int32 dataset has documents of several sequences
        assert len(theirs) > theirs.num_documents


def _blend_arg(case, data_dir):
    paths = [str(data_dir / p) for p in case["prefixes"]]
    if case["weights"] is None:
        return paths[0] if len(paths) == 1 else paths
    return [x for w, p in zip(case["weights"], paths) for x in (str(w), p)]


def _build(case, data_dir, cache_dir):
    opts = case["options"]
    return build_gpt_datasets(
        _blend_arg(case, data_dir), case["split"], case["seq_length"], case["seed"], case["num_samples"],
        cache_dir, eod_id=META["eod"], pad_id=META["pad"], eod_mask_loss=opts["eod_mask_loss"],
        reset_position_ids=opts["reset_position_ids"], reset_attention_mask=opts["reset_attention_mask"],
        create_attention_mask=opts["create_attention_mask"],
        add_extra_token=opts.get("add_extra_token_to_sequence", True))


def _check_indices(ds, expected, key):
    if f"{key}/dataset_index" in expected:
        np.testing.assert_array_equal(ds.dataset_index, expected[f"{key}/dataset_index"])
        np.testing.assert_array_equal(ds.dataset_sample_index, expected[f"{key}/dataset_sample_index"])
    else:
        for name in ("document_index", "sample_index", "shuffle_index"):
            np.testing.assert_array_equal(getattr(ds, name), expected[f"{key}/{name}"], err_msg=f"{key} {name}")


def _check_samples(ds, expected, key):
    n = len(ds)
    batch = ds.fill_batch(np.arange(n))
    for field in ("tokens", "labels", "loss_mask", "position_ids"):
        np.testing.assert_array_equal(batch[field], expected[f"{key}/{field}"], err_msg=f"{key} {field}")
    if f"{key}/attention_mask" in expected:
        theirs = expected[f"{key}/attention_mask"]
        mine = np.stack([ds[i]["attention_mask"] for i in range(len(theirs))])
        np.testing.assert_array_equal(mine, theirs.reshape(mine.shape), err_msg=f"{key} attention_mask")


@pytest.mark.parametrize("case_name", sorted(META["cases"]))
def test_samples_equal_megatron_core(case_name, expected, data_dir, tmp_path):
    """Same split lengths, indices and every field of every sample as Megatron-core; cold and warm."""
    case = META["cases"][case_name]
    for attempt in ("cold", "warm"):
        datasets = _build(case, data_dir, str(tmp_path / "cache"))
        for split, ds in zip(SPLITS, datasets):
            key = f"{case_name}/{split}"
            if split not in case["lengths"]:
                assert ds is None, f"{key}: Megatron-core has no such split"
                continue
            assert len(ds) == case["lengths"][split], f"{key} ({attempt})"
            if attempt == "warm":
                assert not getattr(ds, "built", False), f"{key}: the warm open rebuilt its index"
            _check_indices(ds, expected, key)
            _check_samples(ds, expected, key)
