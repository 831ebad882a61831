"""Exact resume through the trainer: N steps straight == k steps + resume for N - k, bit for bit
(losses and final weights). The SIGTERM stop is tested end to end in test_ckpt_e2e.py."""
import os

import numpy as np
import pytest
from helpers.toy_model import ToyLM  # the trainer tests' tiny model

from mfcore.checkpoint import CheckpointMismatchError
from mfcore.config.loader import config_from_dict
from mfcore.train import trainer as T

STEPS, GBS, MBS, SEQ, VOCAB = 6, 4, 2, 8, 32


class SyntheticLoader:
    """Stands in for PretrainingLoader: sample ``s`` of the global order is a fixed function of
    ``s``, and the loader starts at ``consumed_samples`` (the contract resume relies on)."""

    def __init__(self, dataset, global_batch_size, micro_batch_size, dp_rank, dp_size,
                 consumed_samples=0, prefetch=2, on_step=None):
        self.gbs, self.mbs, self.consumed_samples = global_batch_size, micro_batch_size, consumed_samples
        self.on_step = on_step

    def __next__(self):
        first = self.consumed_samples
        self.consumed_samples += self.gbs
        if self.on_step:
            self.on_step(first // self.gbs + 1)
        rows = [np.random.default_rng(s).integers(0, VOCAB, SEQ + 1) for s in range(first, first + self.gbs)]
        t = np.stack(rows).astype(np.int32)
        mbs = []
        for i in range(0, self.gbs, self.mbs):
            mbs.append({"tokens": t[i:i + self.mbs, :-1].copy(), "labels": t[i:i + self.mbs, 1:].copy(),
                        "loss_mask": np.ones((self.mbs, SEQ), np.float32)})
        return mbs


def _cfg(out, **checkpoint):
    return config_from_dict({
        "run": {"output_dir": str(out), "seed": 7},
        "data": {"prefixes": ["unused"], "seq_length": SEQ},
        "training": {"global_batch_size": GBS, "micro_batch_size": MBS, "train_steps": STEPS},
        "optimizer": {"lr": 0.05}, "schedule": {"name": "cosine", "warmup_steps": 2},
        "logging": {"tensorboard": False},
        "checkpoint": checkpoint})


def _train(cfg, on_step=None, fingerprint="fp-1"):
    def loader(dataset, consumed):
        return SyntheticLoader(dataset, GBS, MBS, 0, 1, consumed, on_step=on_step)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cfg.run.output_dir.rsplit("/", 1)[0])  # a failed compile dumps rank_0/ in the cwd
        model = ToyLM(vocab=VOCAB, seed=3)
        data = T.DataBundle(train=None, fingerprint=fingerprint, loader_factory=loader)
        result = T.train(cfg, model=model, data=data)
    return result, {p.name: p.asnumpy().copy() for p in model.get_parameters()}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The reference run: N steps in one go, saving every 2 steps (kept for the resume tests)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result, params = _train(_cfg(out, save_interval=2, keep_last_n=5))
    return result.losses, params, out / "checkpoints"


def _same(a_params, b_params):
    assert set(a_params) == set(b_params)
    for name in a_params:
        assert a_params[name].tobytes() == b_params[name].tobytes(), name


@pytest.mark.slow
def test_resume_from_periodic_checkpoint_is_exact(in_tmp, straight):
    losses, params, root = straight
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert sorted(os.listdir(root)) == ["latest", "step_00000002", "step_00000004", "step_00000006"]
    resumed, p2 = _train(_cfg(in_tmp / "a", resume=str(root / "step_00000004")))
    assert resumed.state.step == STEPS and resumed.losses == losses[4:]
    assert resumed.state.consumed_samples == STEPS * GBS
    _same(params, p2)


@pytest.mark.slow
def test_resume_refuses_other_dataset_unless_allowed(in_tmp, straight):
    cfg = dict(resume="auto", dir=str(straight[2]))
    with pytest.raises(CheckpointMismatchError, match="dataset fingerprint: value: checkpoint has 'fp-1', now 'fp-2'"):
        _train(_cfg(in_tmp / "c", **cfg), fingerprint="fp-2")
    result, _ = _train(_cfg(in_tmp / "c", allow_mismatch=True, **cfg), fingerprint="fp-2")
    assert result.state.step == STEPS and result.losses == []  # already at the end: nothing to do
