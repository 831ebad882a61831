"""mf-ckpt export-hf / import-hf: a sharded mfcore checkpoint → Hugging Face layout → back, every
tensor bit for bit; the HF side has the layout transformers loads."""
import json
import os

import numpy as np
import pytest

from helpers.ckpt_ranks import save_as_ranks
from mfcore.checkpoint import CheckpointManager, ShardSpec
from mfcore.checkpoint.model_state import MODEL_PREFIX, model_arrays
from mfcore.cli.ckpt import main
from mfcore.models import build_model, config_to_dict, load_model_config


def _random_model(name):
    """A tiny model with every parameter random (norms too), so no tensor round-trips by luck."""
    import mindspore as ms
    model = build_model(load_model_config(name))
    rng = np.random.default_rng(0)
    for p in model.get_parameters():
        p.set_data(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32)))
    return model


def _save_two_ranks(root, model, step=10):
    """Split every matrix by rows over 2 "ranks" (as TP/ZeRO would), vectors go with rank 0."""
    arrays = model_arrays(model)
    state = {"model_config": config_to_dict(model.config), "consumed_samples": 5}

    def shard(rank):
        out = {}
        for name, arr in arrays.items():
            if arr.ndim >= 2 and arr.shape[0] % 2 == 0:
                half = arr.shape[0] // 2
                spec = ShardSpec.split(arr.shape, 0, rank, 2)
                out[name] = (arr[rank * half:(rank + 1) * half], spec)
            elif rank == 0:
                out[name] = arr
        return out
    save_as_ranks(root, step, [shard(0), shard(1)], state)
    return arrays


@pytest.mark.parametrize("name", ["tiny-llama3", "tiny-deepseek-v3"])
def test_export_import_round_trip_bit_exact(in_tmp, capsys, name):
    model = _random_model(name)
    arrays = _save_two_ranks(in_tmp / "ck", model)
    assert main(["export-hf", str(in_tmp / "hf"), "-c", str(in_tmp / "ck"), "--max-shard-size", "200KB"]) == 0
    files = sorted(os.listdir(in_tmp / "hf"))
    shards = [f for f in files if f.endswith(".safetensors")]
    n = len(shards)
    assert n > 1 and shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert "config.json" in files and "model.safetensors.index.json" in files
    config = json.loads((in_tmp / "hf" / "config.json").read_text())
    assert config["architectures"] == [{"tiny-llama3": "LlamaForCausalLM",
                                        "tiny-deepseek-v3": "DeepseekV3ForCausalLM"}[name]]
    index = json.loads((in_tmp / "hf" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert "model.embed_tokens.weight" in index["weight_map"]

    assert main(["import-hf", str(in_tmp / "hf"), "-c", str(in_tmp / "imported")]) == 0
    assert "step_00000000" in capsys.readouterr().out
    back = CheckpointManager(in_tmp / "imported").load("auto")
    assert back.step == 0 and back.trainer_state["weights_only"] is True
    assert back.trainer_state["model_config"] == config_to_dict(model.config)
    assert set(back.tensors) == set(arrays)
    # MoE routing counters (tokens per expert since the last bias update) are run statistics, not
    # weights: Hugging Face has no tensor for them and an import starts them at zero.
    counters = {k for k in arrays if k.endswith(".expert_load")}
    assert all(not back.tensors[k].any() for k in counters)
    assert bool(counters) == (name == "tiny-deepseek-v3")
    for key in sorted(set(arrays) - counters):
        arr = arrays[key]
        assert back.tensors[key].dtype == arr.dtype and back.tensors[key].tobytes() == arr.tobytes(), key


def test_export_needs_model_config(in_tmp, capsys):
    CheckpointManager(in_tmp / "ck").save(1, {MODEL_PREFIX + "w": np.zeros(2, np.float32)}, {})
    assert main(["export-hf", str(in_tmp / "hf"), "-c", str(in_tmp / "ck")]) == 2
    assert "holds no model_config" in capsys.readouterr().err
    assert main(["import-hf", str(in_tmp / "nothing"), "-c", str(in_tmp / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err
