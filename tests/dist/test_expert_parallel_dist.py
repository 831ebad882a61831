"""Expert parallelism on loopback: tiny DeepSeek-V3 (8 routed experts, top-2, a dense layer, a MoE
layer with a shared expert, one MTP module with its own MoE, the sequence aux loss and the
aux-loss-free bias update) at DP=2 x EP=2 and DP=4 x EP=2 reproduces the one-process fp32 run.

- ``ep2_job`` (2 ranks): train_equivalence.py's training (20 steps), dropless, then in capacity mode
  (``moe_dispatch: capacity``, capacity factor 1: 13-20% of the pairs dropped), whose losses
  and per-step, per-layer dropped-pair counts must equal one process's with the same micro batch
  size: capacity is per expert over the tokens of one micro batch *of the rank that routed them*
  (each rank drops its own pairs before the exchange, as Megatron's router does), i.e. the tokens a
  one-process micro batch of the same size holds, not the EP group's gathered tokens. mf-train at
  DP=2 x EP=2 (with and without ZeRO-1) and its checkpoint resuming in one process are rows of the
  composition matrix (tests/dist/test_composition_dist.py), so this job does not train them again.
- ``dp4_ep2_job`` (4 ranks, 6 steps: slow on 2 cores): the EP groups (0,1), (2,3) and the
  expert-DP groups (0,2), (1,3) are subgroups, where the CPU's gathers and reduce-scatters are
  emulated on AllReduce; trained twice, without and with ZeRO-1 (the experts' moments sharded over
  the expert-DP pairs), then mf-train's trainer at DP=4 x EP=2 + ZeRO-1 resumes the one-process
  run's step-4 checkpoint (the reverse direction) and continues on its curve, logging
  ``ep_comm_share`` (the EP exchange's share of the step time, measured after its first step).

Every run uses micro batches of 2 samples (the one-process runs too): the sequence aux loss is a
mean per micro batch, so runs with different micro batch sizes train different objectives.
Tolerances as in test_deepseek_tp_dist.py: losses within 1e-5 per step, the first gradient norm
within 1e-6 (only the order of sums differs: each token's expert outputs are summed per rank, then
over the EP group), later norms 1e-4 and the final weights relative L2 1e-4 per model, 1e-3 per
tensor (AdamW amplifies last-bit differences of near-zero gradients). The routing biases must end
bitwise equal on every rank and to one process: the expert load is summed over all DP ranks.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from helpers.launch_helpers import in_background, launch, read_json, worker
from helpers.synthetic_data import write_pattern_corpus

pytestmark = [pytest.mark.dist, pytest.mark.timeout(1800)]

STEPS, DP4_STEPS, TRAINER_STEPS, SAVE_AT = 20, 6, 8, 4
CAPACITY = "capacity"   # the references' key of the capacity-mode run (STEPS steps)
MICRO_BATCH = 2   # everywhere: the sequence aux loss is a mean per micro batch (and DP=4 leaves 2 samples)
LOSS_RTOL, FIRST_NORM_RTOL, NORM_RTOL = 1e-5, 1e-6, 1e-4
MODEL_REL_L2, PARAM_REL_L2 = 1e-4, 1e-3


def _trainer_args(workdir, out, *extra):
    return ["tiny-deepseek-v3", f"data.prefixes=[{workdir / 'syn_text_document'}]",
            f"data.cache_dir={workdir / 'cache'}", f"run.output_dir={workdir / out}", "data.seq_length=32",
            "training.global_batch_size=8", f"training.micro_batch_size={MICRO_BATCH}", f"training.train_steps={TRAINER_STEPS}",
            "schedule.warmup_steps=2", "optimizer.lr=3e-3", "training.eval_interval=0", "logging.log_interval=1",
            "logging.progress_bar=never", "run.deterministic=true", "precision.compute_dtype=float32",
            "checkpoint.resume=none", "checkpoint.save_interval=0", *extra]


def _mf_train(workdir, args):
    proc = subprocess.run([sys.executable, "-m", "mfcore.cli.train", "--config", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _records(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _losses(out_dir):
    return [r["loss"] for r in _records(out_dir) if "loss" in r and "step" in r]


def _equivalence_reference(workdir, steps, model="deepseek_v3"):
    out = f"ref{steps}_{model}"
    proc = subprocess.run([sys.executable, worker("train_equivalence.py"), out, "{}", str(steps), model,
                           str(MICRO_BATCH)],
                          cwd=workdir, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_json(workdir / out / "rank0.json"), dict(np.load(workdir / out / "rank0.npz"))


def _references(workdir):
    """One process, one run after the other: train_equivalence.py's run for each job's step count
    (and the capacity-mode run, under ``CAPACITY``) and mf-train's run. Returns
    ``({steps: (info, params), CAPACITY: (info, params)}, mf-train losses)``."""
    runs = {steps: _equivalence_reference(workdir, steps) for steps in (STEPS, DP4_STEPS)}
    runs[CAPACITY] = _equivalence_reference(workdir, STEPS, "deepseek_v3_capacity")
    assert runs[STEPS][0]["losses"][-1] < runs[STEPS][0]["losses"][0] - 0.5   # the run really trains
    _mf_train(workdir, _trainer_args(workdir, "single", f"checkpoint.save_interval={SAVE_AT}"))
    return runs, _losses(workdir / "single")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("expert_parallel")
    write_pattern_corpus(path / "syn_text_document")
    return path


@pytest.fixture(scope="module")
def references(workdir):
    return in_background(_references, workdir)


@pytest.fixture(scope="module")
def ep2_job(workdir, references):
    sections = [{"data": 2, "expert": 2}, {"data": 2, "expert": 2, "model": "deepseek_v3_capacity"}]
    args = ["ep2", json.dumps(sections), str(STEPS)]
    job = launch(workdir, ["--nproc-per-node", "2", "--script", worker("ep_checks.py")], args,
                 timeout=1500, name="logs_ep2")
    assert job.returncode == 0, job.explain()
    return workdir / "ep2", references.result()


@pytest.fixture(scope="module")
def dp4_ep2_job(workdir, references):
    refs = references.result()   # its step-4 checkpoint is resumed here
    sections = [{"data": 4, "expert": 2}, {"data": 4, "expert": 2, "optimizer_sharding": True}]
    resume = workdir / "single" / "checkpoints" / f"step_{SAVE_AT:08d}"
    trainer = _trainer_args(workdir, "dp4_resumed", "parallel.data=4", "parallel.expert=2",
                            "parallel.optimizer_sharding=true",
                            f"checkpoint.resume={resume}")
    job = launch(workdir, ["--nproc-per-node", "4", "--script", worker("ep_checks.py")],
                 ["dp4ep2", json.dumps(sections), str(DP4_STEPS), *trainer], timeout=1700, name="logs_dp4ep2")
    assert job.returncode == 0, job.explain()
    return workdir / "dp4ep2", refs


def _results(out, ranks, name="equivalence"):
    out = out / name
    return ([read_json(out / f"rank{r}.json") for r in range(ranks)],
            [dict(np.load(out / f"rank{r}.npz")) for r in range(ranks)])


def _assert_matches_one_process(infos, params, ref_info, ref_params, steps):
    for info in infos:
        assert len(info["losses"]) == steps
        np.testing.assert_allclose(info["losses"], ref_info["losses"][:steps], rtol=LOSS_RTOL, atol=0)
        np.testing.assert_allclose(info["grad_norms"][0], ref_info["grad_norms"][0], rtol=FIRST_NORM_RTOL)
        np.testing.assert_allclose(info["grad_norms"], ref_info["grad_norms"][:steps], rtol=NORM_RTOL)
    rows = set(infos[0]["expert_rows"])
    assert rows and all(".mlp.experts." in name for name in rows)
    assert len(rows) == 6   # gate/up/down of the MoE layer and of the MTP module's MoE
    diff = norm = 0.0
    for info, rank_params in zip(infos, params):
        assert set(rank_params) == set(ref_params)
        for name, want in ref_params.items():
            if name in rows:   # this rank's experts: rows of the global stack
                want = np.split(want, info["ep"], axis=0)[info["ep_rank"]]
            got = rank_params[name]
            assert got.shape == want.shape, name
            rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
            assert rel < PARAM_REL_L2, (name, rel)
            diff += float(np.sum((got.astype(np.float64) - want) ** 2))
            norm += float(np.sum(want.astype(np.float64) ** 2))
    assert np.sqrt(diff / norm) < MODEL_REL_L2, np.sqrt(diff / norm)


def _assert_replicas_equal(infos, params):
    """Dense parameters bitwise equal on every rank, experts on the ranks holding the same ones,
    routing biases on every rank."""
    rows = set(infos[0]["expert_rows"])
    for info, rank_params in zip(infos[1:], params[1:]):
        assert info["expert_bias"] == infos[0]["expert_bias"]
        for name in rank_params:
            if name not in rows:
                np.testing.assert_array_equal(rank_params[name], params[0][name], err_msg=name)
    for a, b in ((i, j) for i in range(len(infos)) for j in range(i + 1, len(infos))):
        if infos[a]["ep_rank"] == infos[b]["ep_rank"]:
            for name in rows:
                np.testing.assert_array_equal(params[a][name], params[b][name], err_msg=name)


def test_dp2_ep2_matches_one_process(ep2_job):
    out, (runs, _) = ep2_job
    ref_info, ref_params = runs[STEPS]
    infos, params = _results(out, 2, "equivalence0")
    assert [(i["ep"], i["ep_rank"]) for i in infos] == [(2, 0), (2, 1)]
    assert all(info["dropped"] == [] for info in infos + [ref_info])   # dropless: nothing counted
    _assert_matches_one_process(infos, params, ref_info, ref_params, STEPS)
    _assert_replicas_equal(infos, params)
    assert infos[0]["expert_bias"] == ref_info["expert_bias"]
    assert any(any(v != 0 for v in bias) for bias in ref_info["expert_bias"].values())  # biases moved


def test_dp2_ep2_capacity_mode_drops_the_pairs_one_process_drops(ep2_job):
    """Capacity is per micro batch of the routing rank: at DP=2 x EP=2 with micro batches of 2
    samples, each step drops, layer by layer, exactly the pairs one process drops with micro batches
    of 2, and the losses follow its curve."""
    out, (runs, _) = ep2_job
    ref_info, ref_params = runs[CAPACITY]
    infos, params = _results(out, 2, "equivalence1")
    assert len(ref_info["dropped"]) == STEPS and all(len(layers) == 2 for layers in ref_info["dropped"])
    assert all(sum(layers) > 0 for layers in ref_info["dropped"])   # every step really drops pairs
    for info in infos:   # DP-summed counts: the same on both ranks
        assert info["dropped"] == ref_info["dropped"]
    _assert_matches_one_process(infos, params, ref_info, ref_params, STEPS)
    _assert_replicas_equal(infos, params)
    assert infos[0]["expert_bias"] == ref_info["expert_bias"]
    dropless = runs[STEPS][0]["losses"]
    assert max(abs(a - b) for a, b in zip(ref_info["losses"], dropless)) > 1e-3   # dropping changed training


@pytest.mark.parametrize("zero", [False, True])
def test_dp4_ep2_subgroups_match_one_process(dp4_ep2_job, zero):
    out, (runs, _) = dp4_ep2_job
    ref_info, ref_params = runs[DP4_STEPS]
    infos, params = _results(out, 4, f"equivalence{int(zero)}")
    assert [(i["dp_rank"], i["ep_rank"]) for i in infos] == [(0, 0), (1, 1), (2, 0), (3, 1)]
    _assert_matches_one_process(infos, params, ref_info, ref_params, DP4_STEPS)
    _assert_replicas_equal(infos, params)
    assert infos[0]["expert_bias"] == ref_info["expert_bias"]
    if zero:   # each rank holds half of its experts' moments and a quarter of the others'
        dense = _results(out, 4, "equivalence0")[0]
        assert all(i["optimizer_state_bytes"] < 0.6 * d["optimizer_state_bytes"] for i, d in zip(infos, dense))


def test_one_process_checkpoint_resumes_at_dp4_ep2_zero1_on_the_same_curve(dp4_ep2_job, workdir):
    _, (_, single) = dp4_ep2_job
    np.testing.assert_allclose(_losses(workdir / "dp4_resumed"), single[SAVE_AT:], rtol=LOSS_RTOL, atol=0)
    biases = [read_json(workdir / "dp4ep2" / f"trainer_bias_rank{r}.json") for r in range(4)]
    assert all(b == biases[0] for b in biases) and any(any(v != 0 for v in b) for b in biases[0].values())
    records = _records(workdir / "dp4_resumed")
    record = records[-1]
    assert record["expert_tokens_min"] <= record["expert_tokens_mean"] <= record["expert_tokens_max"]
    # the exchange was timed after the first step: every line has its share of the step time (the
    # first line's step compiled the graphs, so its share is the smallest)
    shares = [r["ep_comm_share"] for r in records]
    assert len(shares) == TRAINER_STEPS - SAVE_AT and all(0 < s < 1 for s in shares), shares
    assert shares[0] < min(shares[1:]), shares
    # each MoE layer (the MTP module's too) routed the whole global batch: 8 x 32 tokens, top-2
    assert [sum(layer) for layer in record["expert_load"]] == [8 * 32 * 2] * 3
