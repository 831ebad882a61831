"""What a run with routed experts does around each step: DeepSeek-V3's aux-loss-free balancing
between optimizer steps, the expert-load and dropped-token figures of the log, and (under expert
parallelism) the measured share of the token exchange in the step time.

Kept out of the training loop (:mod:`mfcore.train.trainer`), which calls :meth:`ExpertBalance.
after_step` after every step, :meth:`measure_exchange` once after the first, and merges
:meth:`record` into each log line.
"""
from typing import Optional

import numpy as np

from mfcore.models.layers.moe import moe_layers


def global_expert_load(ctx, local_load) -> np.ndarray:
    """Tokens routed to each expert over every rank that routed its own tokens (DP; TP too when TP
    ranks route sequence shards under expert parallelism), numpy ``[moe_layers, experts]``: every
    replica must apply the same routing-bias update, or the replicas drift apart."""
    return np.asarray(ctx.routing_sum(np.asarray(local_load, np.float32)), np.float32)


def expert_load_record(load: np.ndarray, dropped: Optional[int] = None) -> dict:
    """The logged view of the routed-token counts: per layer and expert, the worst layer's max/mean
    ratio (1.0 = perfectly balanced, the number to watch while balancing converges), tokens per
    expert over all layers (min/mean/max) and, in capacity mode, the tokens dropped."""
    mean = np.maximum(load.mean(axis=1), 1e-9)
    record = {"expert_load": load.astype(np.int64).tolist(),
              "expert_imbalance": float((load.max(axis=1) / mean).max()),
              "expert_tokens_min": int(load.min()), "expert_tokens_mean": float(load.mean()),
              "expert_tokens_max": int(load.max())}
    if dropped is not None:
        record["dropped_tokens"] = int(dropped)
    return record


class ExpertBalance:
    """The per-run state: loads and drops since the last log line, the exchange time per step."""

    def __init__(self, model, ctx):
        self.model, self.ctx = model, ctx
        self.active = bool(moe_layers(model))
        self.load = None        # tokens per expert since the last log line, [moe_layers, experts]
        self.dropped = None     # pairs dropped over capacity since then (capacity mode only)
        self.exchange_s = None  # EP token exchange per step, measured after the first step
        self.measured = ctx.ep_size == 1

    def after_step(self) -> None:
        """Nudge each expert's routing bias toward the mean load of this step (summed over the
        ranks that route), between optimizer steps; add the step's counts to the log's."""
        if not self.active:
            return
        from mfcore.models import dropped_tokens, expert_load, update_expert_bias
        load = global_expert_load(self.ctx, expert_load(self.model))
        dropped = dropped_tokens(self.model)   # read before update_expert_bias resets the counters
        update_expert_bias(self.model, load=load)
        self.load = load if self.load is None else self.load + load
        if dropped is not None:
            self.dropped = (self.dropped or 0) + int(global_expert_load(self.ctx, dropped).sum())

    def measure_exchange(self, cfg, micro_batches: int, print_line) -> None:
        """Once, after the first step: time the EP exchange at this run's shapes and group
        (:mod:`mfcore.parallel.expert_timing`); every rank calls it at the same step."""
        if self.measured:
            return
        from mfcore.parallel.expert_timing import measure_exchange_per_step
        self.measured = True
        tokens = cfg.training.micro_batch_size * cfg.data.seq_length   # a rank routes its sequence shard under SP
        tokens //= self.ctx.tp_size if self.ctx.routes_sequence_shards else 1
        found = measure_exchange_per_step(self.model, tokens, micro_batches, cfg.recompute.mode,
                                          self.ctx.pp_size > 1)
        if found is not None:
            self.exchange_s, line = found
            print_line(line)

    def record(self, step_time: float) -> dict:
        """The log line's expert fields since the last one (then reset)."""
        record = {}
        if self.exchange_s is not None:
            record["ep_comm_share"] = self.exchange_s / max(step_time, 1e-9)
        if self.load is not None:
            record.update(expert_load_record(self.load, self.dropped))
            self.load = self.dropped = None
        return record
