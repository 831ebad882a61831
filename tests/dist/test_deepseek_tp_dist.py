"""Tiny DeepSeek-V3 (MLA with q LoRA and biases, a dense layer, a MoE layer with a shared expert and
replicated routed experts, one MTP module, the sequence aux loss and the routing-bias update) under
tensor parallelism reproduces the single-process fp32 run, in two layouts:

- TP=2 with sequence parallelism on 2 ranks: conftest.py's ``tp2_job`` (one launch shared with the
  Llama TP checks);
- TP=2 x DP=2 without sequence parallelism on 4 ranks (its own launch): the TP groups are subgroups,
  where the CPU gathers are emulated on AllReduce, and the plan's non-SP path (the MoE's norm
  outside the region, the shared experts' input entering it) runs.

Tolerances: the losses within 1e-5 per step (measured ~4e-7) and the first step's gradient norm
within 1e-6 (the same weights: only the order of sums differs, so every partial gradient was
summed over the TP group). Later gradient norms and the final weights drift as AdamW turns last-bit
differences of near-zero gradients into whole update steps (see test_equivalence_dist.py; measured
after 12 steps: model relative L2 4e-5, worst tensor 3e-4), so those are held to 1e-4 / 1e-3. The
routing biases must end bitwise equal: every rank routed every token exactly as one process did.
"""
import subprocess
import sys

import numpy as np
import pytest

from helpers.launch_helpers import in_background, launch, read_json, worker

pytestmark = [pytest.mark.dist, pytest.mark.timeout(1500)]

DEEPSEEK_TP_STEPS = 10  # as conftest.py's tp2_job trains (checked below)
LOSS_RTOL, FIRST_NORM_RTOL, NORM_RTOL = 1e-5, 1e-6, 1e-4
MODEL_REL_L2, PARAM_REL_L2 = 1e-4, 1e-3


def _reference(cwd):
    proc = subprocess.run([sys.executable, worker("train_equivalence.py"), "out", "{}", str(DEEPSEEK_TP_STEPS),
                           "deepseek_v3"], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = read_json(cwd / "out" / "rank0.json")
    assert info["losses"][-1] < info["losses"][0] - 0.5  # the run really trains
    return info, dict(np.load(cwd / "out" / "rank0.npz"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Started in the background, overlapping the launches; ``.result()`` waits for it."""
    return in_background(_reference, tmp_path_factory.mktemp("deepseek_single"))


def _results(out, ranks):
    return [read_json(out / f"rank{r}.json") for r in range(ranks)], [dict(np.load(out / f"rank{r}.npz"))
                                                                       for r in range(ranks)]


@pytest.fixture(scope="module")
def tp2_sp(reference, tp2_job):
    return _results(tp2_job[1] / "train_deepseek", 2) + (reference.result(),)


@pytest.fixture(scope="module")
def tp2_dp2(reference, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("deepseek_tp2dp2")
    job = launch(cwd, ["--nproc-per-node", "4", "--script", worker("train_equivalence.py")],
                 ["out", '{"data": 2, "tensor": 2}', str(DEEPSEEK_TP_STEPS), "deepseek_v3"], timeout=1200)
    assert job.returncode == 0, job.explain()
    return _results(cwd / "out", 4) + (reference.result(),)


def _assert_losses_match(infos, ref_info):
    for info in infos:
        assert info["tp"] == 2 and len(info["losses"]) == DEEPSEEK_TP_STEPS
        np.testing.assert_allclose(info["losses"], ref_info["losses"], rtol=LOSS_RTOL, atol=0)
        np.testing.assert_allclose(info["grad_norms"][0], ref_info["grad_norms"][0], rtol=FIRST_NORM_RTOL)
        np.testing.assert_allclose(info["grad_norms"], ref_info["grad_norms"], rtol=NORM_RTOL)
        assert info["expert_bias"] == ref_info["expert_bias"]
    assert any(any(v != 0 for v in bias) for bias in ref_info["expert_bias"].values())  # biases moved


def _assert_weights_match(infos, params, ref_params):
    axes = infos[0]["shard_axes"]
    for name in ("self_attn.q_b_proj", "self_attn.kv_b_proj", "mlp.shared_experts.gate_proj"):
        assert axes[f"model.layers.1.{name}.weight"] == 1
    assert not any(".mlp.experts." in name for name in axes)  # routed experts whole on every rank
    diff = norm = 0.0
    for info, rank_params in zip(infos, params):
        assert set(rank_params) == set(ref_params)
        for name, want in ref_params.items():
            if name in axes:
                want = np.split(want, 2, axis=axes[name])[info["tp_rank"]]
            got = rank_params[name]
            assert got.shape == want.shape, name
            rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
            assert rel < PARAM_REL_L2, (name, rel)
            diff += float(np.sum((got.astype(np.float64) - want) ** 2))
            norm += float(np.sum(want.astype(np.float64) ** 2))
    assert np.sqrt(diff / norm) < MODEL_REL_L2, np.sqrt(diff / norm)
    for name in ref_params:  # replicated parameters stay identical on every rank
        if name not in axes:
            for rank_params in params[1:]:
                np.testing.assert_array_equal(rank_params[name], params[0][name], err_msg=name)


def test_deepseek_tp2_sequence_parallel_matches_one_process(tp2_sp):
    infos, params, (ref_info, ref_params) = tp2_sp
    _assert_losses_match(infos, ref_info)
    _assert_weights_match(infos, params, ref_params)


def test_deepseek_tp2_dp2_matches_one_process(tp2_dp2):
    infos, params, (ref_info, ref_params) = tp2_dp2
    assert [(i["tp_rank"], i["dp_rank"]) for i in infos] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    _assert_losses_match(infos, ref_info)
    _assert_weights_match(infos, params, ref_params)
    for a, b in ((0, 2), (1, 3)):  # DP replicas of one TP shard: bitwise equal
        for name in params[a]:
            np.testing.assert_array_equal(params[a][name], params[b][name], err_msg=name)
