"""Comm cells and tensor-parallel layers on 2 ranks (TP=2) vs single-process math, through msrun.

The job is conftest.py's ``tp2_job``, shared with the TP training test of test_equivalence_dist.py:
it runs these checks first, with their own context (TP=2, no sequence parallelism)."""
import pytest

from helpers.launch_helpers import read_json

pytestmark = [pytest.mark.dist, pytest.mark.timeout(600)]

EXACT = ["copy", "reduce", "gather_seq", "scatter_seq", "reduce_scatter_seq", "gather_reduce_scatter_seq"]


def test_comm_cells_and_tp_layers_match_single_process(tp2_job):
    job, out = tp2_job
    for rank in (0, 1):
        results = read_json(out / "collectives" / f"rank{rank}.json")
        # Moving data is exact; sums over ranks may reorder float additions.
        for name in EXACT:
            assert results[f"{name}.forward"] == 0.0, (rank, name)
            assert results[f"{name}.backward"] == 0.0, (rank, name)
        assert results["gather_last_axis.forward"] == 0.0
        assert results["host_all_reduce.int"] == 0.0
        for layer in ["column_linear", "row_linear"]:
            for part in ["forward", "grad_input", "grad_weight", "grad_bias"]:
                assert results[f"{layer}.{part}"] < 1e-5, (rank, layer, part, results[f"{layer}.{part}"])
        for key in ["vocab_embedding.forward", "vocab_embedding.grad_weight",
                    "vocab_cross_entropy.forward", "vocab_cross_entropy.grad_logits"]:
            assert results[key] < 1e-5, (rank, key, results[key])
    assert "checks done" in job.stdout  # rank 0's log reached the console
