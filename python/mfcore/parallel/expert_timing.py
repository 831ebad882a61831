"""The measured cost of expert parallelism's token exchange, for the ``ep_comm_share`` log metric.

A training step is one compiled graph, so the exchange's collectives cannot be timed from Python
inside it. Instead the trainer, once after the first step (graphs compiled, ranks in step), runs the
exchange of this rank's first MoE layer -- the same :class:`~mfcore.parallel.expert_parallel.
ExpertExchange` cells, so the same group, collectives (native or emulated) and custom backwards --
on buffers of the step's shapes and dtypes (``[T, h]`` tokens and outputs, ``[T, 2k]`` routing,
``T`` tokens per micro batch) in two small compiled graphs holding nothing but the exchange's
collectives: the forward ones, and the backward ones (the cells' own ``bprop``, what autodiff runs
in the step), ten times each after a warm-up, median. Every MoE layer of a model exchanges buffers
of those shapes.

Per optimizer step, every MoE layer and micro batch runs the backward exchange once and the forward
one once per forward run of the layer: once, plus once more under full recompute (the layer's
forward is redone in the backward), plus once more under pipeline parallelism (the stage's backward
graph re-runs its forward). :func:`exchange_seconds_per_step` multiplies out; the trainer divides by
the measured step time. What this leaves out, on purpose: waiting inside the step for a slower rank
of the group (load imbalance shows up as step time, not exchange time), and any overlap of the
exchange with compute (the share is then an upper bound of the exposed time; the CPU overlaps none).
"""
import time
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from mfcore.models.layers.moe import moe_layers


class ExchangeProbe(nn.Cell):
    """The two compiled graphs timed, both nothing but the exchange's collectives (with the slot
    arithmetic of their CPU emulation): ``forward`` gathers tokens and routing and gives the
    gathered tokens back; ``backward`` runs the three cells' own ``bprop`` (the collectives autodiff
    issues in the step's backward) on gradients of the step's shapes."""

    def __init__(self, exchange):
        super().__init__()
        self.exchange = exchange

    @ms.jit
    def forward(self, x, routing):
        tokens = self.exchange.gather_tokens(x)
        gathered = self.exchange.gather_routing(routing)
        return self.exchange.give_back(tokens), tokens, gathered

    @ms.jit
    def backward(self, x, routing, d_tokens, d_routing, d_out):
        dx = self.exchange.tokens.bprop(x, d_tokens, d_tokens)[0]
        d_gathered = self.exchange.routing.bprop(routing, d_routing, d_routing)[0]
        d_partial = self.exchange.back.bprop(d_tokens, x, d_out)[0]
        return dx, d_gathered, d_partial


@dataclass
class ExchangeTiming:
    """Seconds of one MoE layer's exchange for one micro batch (medians over the repeats)."""
    forward_s: float
    backward_s: float


def time_exchange(model, tokens: int, repeats: int = 10):
    """:class:`ExchangeTiming` of ``model``'s first MoE layer's exchange for ``tokens`` tokens per
    micro batch; None when the model has no exchanging MoE layer (EP of 1, or a pipeline stage
    without MoE layers). Collective: every rank of the EP group must call it with the same shapes."""
    layers = [layer for layer in moe_layers(model) if layer.exchange is not None]
    if not layers:
        return None
    layer = layers[0]
    hidden = layer.gate.weight.shape[0]
    dtype = layer.experts.gate_proj.compute_dtype   # the dtype of the tokens and expert outputs
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((tokens, hidden)).astype(np.float32)).astype(dtype)
    routing = Tensor(rng.random((tokens, 2 * layer.top_k)).astype(np.float32))   # weights, expert ids
    probe = ExchangeProbe(layer.exchange)
    forward_s = _median_seconds(probe.forward, (x, routing), repeats)
    _, gathered_tokens, gathered_routing = probe.forward(x, routing)
    grads = (x, routing, gathered_tokens, gathered_routing, x)   # gradients have their values' shapes
    return ExchangeTiming(forward_s, _median_seconds(probe.backward, grads, repeats))


def _median_seconds(fn, args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` after one untimed call (the compile, and the group's
    ranks meeting in the first collective)."""
    _wait(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _wait(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _wait(outputs) -> None:
    """Block until the graph's outputs exist (device execution may be asynchronous)."""
    first = outputs[0] if isinstance(outputs, tuple) else outputs
    first.asnumpy()


def exchange_seconds_per_step(timing: ExchangeTiming, moe_layer_count: int, micro_batches: int,
                              forward_runs: int) -> float:
    """The exchange's time in one optimizer step: per MoE layer and micro batch, ``forward_runs``
    forward exchanges and one backward exchange."""
    per_micro_batch = forward_runs * timing.forward_s + timing.backward_s
    return moe_layer_count * micro_batches * per_micro_batch


def forward_runs_per_step(recompute_mode: str, pipelined: bool) -> int:
    """How often one micro batch's forward runs per step (see the module docstring)."""
    return 1 + int(recompute_mode == "full") + int(pipelined)


def exchanging_layer_count(model) -> int:
    """MoE layers of ``model`` (this rank's pipeline stage) that exchange tokens."""
    return sum(1 for layer in moe_layers(model) if layer.exchange is not None)


def measure_exchange_per_step(model, tokens: int, micro_batches: int, recompute_mode: str,
                              pipelined: bool):
    """``(seconds of exchange per optimizer step, a line saying how it was obtained)``, or None
    when this rank's model exchanges no tokens. Collective over the EP group, like :func:`time_exchange`."""
    timing = time_exchange(model, tokens)
    if timing is None:
        return None
    layers, runs = exchanging_layer_count(model), forward_runs_per_step(recompute_mode, pipelined)
    seconds = exchange_seconds_per_step(timing, layers, micro_batches, runs)
    line = (f"EP token exchange, measured once: {timing.forward_s * 1e3:.2f} ms forward + "
            f"{timing.backward_s * 1e3:.2f} ms backward per MoE layer and micro batch of {tokens} tokens; "
            f"x {layers} MoE layers x {micro_batches} micro batches (forward run {runs}x) = "
            f"{seconds * 1e3:.1f} ms per step (logged as ep_comm_share of the step time)")
    return seconds, line
