"""MindRecord samples: what MindSpore's own FileWriter writes in MindSpore Transformers' schema is read
in MindDataset's order, sliced per DP rank like Megatron samples, with the same field rules."""
import numpy as np
import pytest

from mfcore.data import PretrainingLoader, build_gpt_datasets
from mfcore.data.mindrecord import dataset_format, is_mindrecord_path, open_mindrecord, sample_fields
from mfcore.data.samples import SampleOptions
from mfcore.errors import DataError
from tests.data.test_gpt_dataset import random_docs, write_dataset

SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}}  # MindSpore Transformers' pretraining schema
L = 16


def write_mindrecord(path, rows, shards=1):
    """Records written by ``mindspore.mindrecord.FileWriter`` as MindSpore Transformers' preprocessing does."""
    from mindspore.mindrecord import FileWriter
    writer = FileWriter(str(path), shard_num=shards, overwrite=True)
    writer.add_schema(SCHEMA, "pretrain")
    writer.write_raw_data([{"input_ids": np.asarray(r, np.int32)} for r in rows])
    writer.commit()
    return str(path)


def mind_dataset_rows(files):
    import mindspore.dataset as mds
    ds = mds.MindDataset(files, columns_list=["input_ids"], shuffle=False)
    return np.stack([r[0] for r in ds.create_tuple_iterator(output_numpy=True, num_epochs=1)])


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("mr")
    rng = np.random.default_rng(3)
    rows = rng.integers(1, 50, size=(37, L + 1)).astype(np.int32)
    rows[rng.random(rows.shape) < 0.1] = 0  # EOD (id 0) here and there
    one = write_mindrecord(d / "wiki.mindrecord", rows[:20])
    (d / "shards").mkdir()
    write_mindrecord(d / "shards" / "part.mindrecord", rows[20:], shards=3)
    return d, rows


def test_detection_and_refused_mix(records, tmp_path):
    d, _ = records
    assert is_mindrecord_path(str(d / "wiki.mindrecord")) and is_mindrecord_path(str(d / "shards"))
    write_dataset(tmp_path / "meg", random_docs(np.random.default_rng(0), 10))
    assert dataset_format([str(d / "shards")]) == "mindrecord"
    assert dataset_format([str(tmp_path / "meg")]) == "megatron"
    with pytest.raises(DataError, match="blending MindRecord with Megatron datasets is not supported"):
        dataset_format([str(d / "wiki.mindrecord"), str(tmp_path / "meg")])
    with pytest.raises(DataError, match="blending MindRecord with Megatron datasets is not supported"):
        dataset_format([str(d / "wiki.mindrecord"), str(tmp_path / "meg")], "megatron")
    with pytest.raises(DataError, match="data.format is mindrecord but .* are not MindRecord; set data.format: megatron"):
        dataset_format([str(tmp_path / "meg.bin")], "mindrecord")
    assert dataset_format([str(tmp_path / "missing")], "mindrecord") == "mindrecord"  # its reader names it


@pytest.mark.parametrize("shuffle", [False, True])
def test_samples_are_mind_datasets_in_configured_order_at_dp1_and_dp2(records, shuffle):
    d, rows = records
    paths = [str(d / "wiki.mindrecord"), str(d / "shards")]
    ds = open_mindrecord(paths, L, shuffle=shuffle, seed=5, eod_id=0)
    files = [str(d / "wiki.mindrecord")] + [str(d / "shards" / f"part.mindrecord{k}") for k in range(3)]
    reference = mind_dataset_rows(files)
    assert np.array_equal(reference, rows)  # MindDataset's own order: file by file, in write order
    order = np.random.default_rng(5).permutation(len(rows)) if shuffle else np.arange(len(rows))
    assert sorted(order.tolist()) == list(range(len(rows)))
    gbs, steps = 8, 6  # 48 samples > 37: the second pass starts again at the configured order's head
    want = [reference[order[s % len(rows)]] for s in range(gbs * steps)]
    for dp in (1, 2):
        ranks = [PretrainingLoader(ds, gbs, 2, r, dp, prefetch=1) for r in range(dp)]
        seen = []
        for _ in range(steps):
            per_rank = [np.concatenate([m["tokens"] for m in next(x)]) for x in ranks]
            seen.extend(np.concatenate(per_rank))
        for x in ranks:
            x.close()
        assert np.array_equal(np.stack(seen), np.stack([w[:-1] for w in want]))


def test_resume_from_consumed_samples_continues_exactly(records):
    d, _ = records
    ds = open_mindrecord([str(d / "wiki.mindrecord")], L, shuffle=True, seed=1, eod_id=0)
    straight = PretrainingLoader(ds, 4, 2, 0, 1, prefetch=1)
    steps = [next(straight) for _ in range(5)]
    resumed = PretrainingLoader(ds, 4, 2, 0, 1, consumed_samples=12, prefetch=1)
    for k in (3, 4):
        got = next(resumed)
        assert all(np.array_equal(a[f], b[f]) for a, b in zip(got, steps[k]) for f in a)
    straight.close(), resumed.close()


@pytest.mark.parametrize("opts", [dict(), dict(pad_id=7), dict(eod_mask_loss=True),
                                  dict(reset_position_ids=True, reset_attention_mask=True, create_attention_mask=True),
                                  dict(create_attention_mask=True, eod_mask_loss=True, pad_id=3)])
def test_fields_follow_the_megatron_engine_rules(tmp_path, opts):
    """The same L + 1 tokens give the same fields as the C++ engine assembles for a GPT sample."""
    write_dataset(tmp_path / "g", random_docs(np.random.default_rng(1), 40))
    gpt = build_gpt_datasets(str(tmp_path / "g"), "1", L, 1, [30, 0, 0], None, eod_id=1, **opts)[0]
    idx = np.arange(len(gpt))
    want = gpt.fill_batch(idx)
    got = sample_fields(gpt.text(idx), SampleOptions(eod_id=1, **opts))
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def test_wrong_record_length_names_the_file(records):
    d, _ = records
    with pytest.raises(DataError, match=r"^\S+wiki.mindrecord: record 0 has 17 input_ids; data.seq_length 8 needs 9"):
        open_mindrecord([str(d / "wiki.mindrecord")], 8)
    with pytest.raises(DataError, match="not a MindRecord file"):
        open_mindrecord([str(d / "nothing.mindrecord")], L)


def test_a_mindrecord_without_input_ids_is_a_clear_error(tmp_path):
    from mindspore.mindrecord import FileWriter
    writer = FileWriter(str(tmp_path / "sft.mindrecord"), shard_num=1, overwrite=True)
    writer.add_schema({"text": {"type": "string"}}, "other")
    writer.write_raw_data([{"text": "hello"}])
    writer.commit()
    with pytest.raises(DataError, match="cannot read the 'input_ids' column as MindRecord"):
        open_mindrecord([str(tmp_path / "sft.mindrecord")], L)
