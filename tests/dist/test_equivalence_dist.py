"""TP=2 (with sequence parallelism) and DP=2 + ZeRO-1 on two "nodes" each reproduce the
single-process fp32 run (same global batches, same seed) over 20 steps; plain DP=2 is checked
through mf-launch + mf-train in test_checkpoint_dist.py (test_mf_launch_dp2_matches_one_process).

Two launches serve four claims: the TP job is conftest.py's ``tp2_job`` (shared with
test_collectives_dist.py), and the ZeRO-1 job runs as two mf-launch invocations, --nnodes 2, one
rank each, so that it also proves the two-node path (ZeRO-1 is DP=2 plus the sharded update, so it
covers the DP replicas' agreement as well).

What is bitwise and what is not: data-parallel replicas end bitwise identical to each other (every
rank applies the same summed gradient); against the single process the sums are ordered
differently (per-rank partial sums, bucketed AllReduce), so losses agree to ~1e-7 relative, and
the test holds them to the issue's 1e-5.
"""
import subprocess
import sys
import threading

import numpy as np
import pytest

from helpers.launch_helpers import free_port, in_background, launch, read_json, worker

pytestmark = [pytest.mark.dist, pytest.mark.timeout(600)]

STEPS = 20
LOSS_RTOL = 1e-5
# Parameters after 20 AdamW steps at lr 3e-3: Adam divides by sqrt(v), so an element whose gradient
# is ~0 turns last-bit differences of the sums into visible ones (a step moves any element by up to
# ~lr whatever its gradient). Measured under TP=2: one near-dead SwiGLU unit of layer 1 drifts by
# up to 1e-4 (a 64-element bias: relative L2 error 2e-4), all else below 4e-5 relative. So: the
# whole model within 1e-4 relative L2, each tensor within 1e-3, each element within lr / 3.
MODEL_REL_L2, PARAM_REL_L2, PARAM_ATOL = 1e-4, 1e-3, 1e-3


@pytest.fixture(scope="module")
def reference_started(tmp_path_factory):
    """The single-process run (no msrun: init_parallel's trivial context), started before (and
    overlapping) the module's launch."""
    return in_background(_reference, tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="module")
def reference(reference_started):
    return reference_started.result()


def _reference(cwd):
    proc = subprocess.run([sys.executable, worker("train_equivalence.py"), "out", "{}", str(STEPS)],
                          cwd=cwd, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = read_json(cwd / "out" / "rank0.json")
    assert info["losses"][STEPS - 1] < info["losses"][0] - 0.5  # the run really trains
    return info, dict(np.load(cwd / "out" / "rank0.npz"))


def _results(out):
    return [read_json(out / f"rank{r}.json") for r in (0, 1)], [dict(np.load(out / f"rank{r}.npz")) for r in (0, 1)]


@pytest.fixture(scope="module")
def two_node_zero1(tmp_path_factory, reference_started):
    """Two mf-launch invocations, --nnodes 2, node ranks 0 and 1, one rank each: DP=2 + ZeRO-1."""
    cwd, port, jobs = tmp_path_factory.mktemp("two_nodes"), free_port(), {}

    def node(rank):
        jobs[rank] = launch(cwd, ["--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                                  "--master-addr", "127.0.0.1", "--script", worker("train_equivalence.py")],
                            ["out", '{"data": 2, "optimizer_sharding": true}', str(STEPS)], port=port,
                            name=f"logs_node{rank}", timeout=500)

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cwd, jobs


def _assert_losses_match(infos, ref_info):
    want = np.array(ref_info["losses"])
    for info in infos:
        got = np.array(info["losses"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, atol=0)


def _assert_close(got, want, name):
    assert got.shape == want.shape, name
    rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
    assert rel < PARAM_REL_L2, (name, rel)
    np.testing.assert_allclose(got, want, rtol=0, atol=PARAM_ATOL, err_msg=name)


def _assert_model_close(pairs):
    """``pairs``: (got, want) of every tensor; the relative L2 error over all of them together."""
    diff = np.sqrt(sum(np.sum((g.astype(np.float64) - w) ** 2) for g, w in pairs))
    norm = np.sqrt(sum(np.sum(w.astype(np.float64) ** 2) for _, w in pairs))
    assert diff / norm < MODEL_REL_L2, diff / norm


def _assert_replicas_match_reference(params, ref_params):
    for name, want in ref_params.items():
        for rank_params in params:
            _assert_close(rank_params[name], want, name)
        np.testing.assert_array_equal(params[0][name], params[1][name], err_msg=f"DP replicas differ: {name}")
    _assert_model_close([(params[0][name], want) for name, want in ref_params.items()])


def test_zero1_reproduces_single_process_with_half_the_optimizer_state(two_node_zero1, reference):
    cwd, jobs = two_node_zero1
    for rank in (0, 1):
        assert jobs[rank].returncode == 0, jobs[rank].explain()
    infos, params = _results(cwd / "out")
    _assert_losses_match(infos, reference[0])
    _assert_replicas_match_reference(params, reference[1])
    full = reference[0]["optimizer_state_bytes"]
    for info in infos:
        ratio = info["optimizer_state_bytes"] / full
        assert 0.5 <= ratio < 0.502, ratio  # 1/DP, plus padding of odd-sized tensors
    print(f"optimizer state per rank: {infos[0]['optimizer_state_bytes']} B sharded vs {full} B unsharded")


def test_tensor_and_sequence_parallel_reproduce_single_process(tp2_job, reference):
    infos, params = _results(tp2_job[1] / "train")
    _assert_losses_match(infos, reference[0])
    np.testing.assert_allclose(infos[0]["grad_norms"], reference[0]["grad_norms"], rtol=1e-5)
    axes = infos[0]["shard_axes"]
    assert "model.layers.0.self_attn.q_proj.weight" in axes and "lm_head.weight" in axes
    pairs = []
    for rank, (info, rank_params) in enumerate(zip(infos, params)):
        assert info["tp_rank"] == rank
        for name, want in reference[1].items():
            if name in axes:
                want = np.split(want, 2, axis=axes[name])[rank]
            _assert_close(rank_params[name], want, name)
            pairs.append((rank_params[name], want))
    _assert_model_close(pairs)


def test_two_nodes_on_loopback_train_like_one_process(two_node_zero1, reference):
    """The ZeRO-1 job above, as seen from its two mf-launch invocations."""
    cwd, jobs = two_node_zero1
    for rank in (0, 1):
        assert jobs[rank].returncode == 0, jobs[rank].explain()
    assert "losses" in jobs[0].stdout and "losses" not in jobs[1].stdout  # rank 0's progress only
    assert (cwd / "logs_node1" / "worker_1.log").exists()
    infos = [read_json(cwd / "out" / f"rank{r}.json") for r in (0, 1)]
    assert [i["dp_rank"] for i in infos] == [0, 1]
    _assert_losses_match(infos, reference[0])
