"""The pipelined training step: each stage's forward and backward as compiled graphs, driven by
the schedule of :mod:`mfcore.parallel.pipeline_schedule` in plain Python.

One optimizer step on a pipeline rank::

    for event in this rank's events (1F1B or interleaved, one global order):
        F(chunk, mb):  x = received activation (or nothing on stage 0)
                       out, loss_part = stage.forward(x, mb)      # graph 1
                       keep x until B(chunk, mb); queue out for the next stage
        B(chunk, mb):  dout = received gradient (or none on the last stage)
                       dx = stage.backward(x, scale, dout, mb)    # graph 2: grads += d(out, loss)
                       queue dx for the previous stage
        transfer:      send or receive one activation / gradient (StageLink)
    squares = local_squares()        # graph 3: TP partial + DP reduce, shared embedding, TP/EP-aware squares
    norm = sqrt(sum of squares over stages) / loss_scale

then the usual host decision and ``apply`` / ``zero_grads`` of :class:`~mfcore.train.step.TrainStep`.
The backward graph recomputes its stage's forward (MindSpore keeps no activations between two
graph calls), so only the *inputs* of in-flight micro batches stay alive: at most ``P - rank`` of
them per stage under 1F1B. Each micro batch's loss part is multiplied by the same global
``loss_scale / loss_tokens`` as in one process, so the gradients are the one-process ones.
"""
import math
import time
from typing import Dict, List

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
import mindspore.common.dtype as mstype

from mfcore.parallel.group_comm import GroupComm, native_ops
from mfcore.parallel.p2p import StageLink
from mfcore.parallel.param_layout import ep_split_names, tp_split_axes
from mfcore.parallel.pipeline_schedule import Transfer, theoretical_bubble, timeline
from mfcore.parallel.pipeline_split import virtual_stage
from mfcore.models.stages import EMBEDDING
from mfcore.train.step import StepOutput, TrainStep, model_inputs


class _ScaledStage(nn.Cell):
    """``stage(...)`` with the loss part times ``scale`` (the backward's second output)."""

    def __init__(self, stage):
        super().__init__(auto_prefix=False)
        self.stage = stage

    def construct(self, x, scale, *batch):
        out, part = self.stage(x, *batch)
        return out, part * scale


class StageRunner(nn.Cell):
    """The two compiled graphs of one stage; its gradients go into the step's buffers ``grads``."""

    def __init__(self, stage, params, grads):
        super().__init__(auto_prefix=False)
        self.scaled = _ScaledStage(stage)
        self.params = ms.ParameterTuple(params)
        self.grads = ms.ParameterTuple(grads)
        self.grad_op = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
        from mfcore.models.layers.moe import moe_layers
        self.moe = tuple(moe_layers(stage))   # routing counters (see _restore_expert_loads)

    @ms.jit
    def forward(self, x, *batch):
        return self.scaled.stage(x, *batch)

    @ms.jit
    def backward(self, x, scale, dout, *batch):
        sens = (dout, ops.ones((), ms.float32))
        input_grads, param_grads = self.grad_op(self.scaled, self.params)(x, scale, *batch, sens)
        for buf, g in zip(self.grads, param_grads):
            ops.assign_add(buf, g)
        return input_grads[0]


class PipelineTrainStep(TrainStep):
    """:class:`TrainStep` (buffers, optimizer, apply) plus the pipeline's gradient epilogue."""

    def __init__(self, model, optimizer, grad_reducer=None, embed_comm=None, counted=(), sharded=(),
                 tp_comm=None, experts=(), ep_comm=None):
        super().__init__(model, optimizer, grad_reducer=grad_reducer)
        self.embed_comm = embed_comm
        self.shared = tuple(i for i, p in enumerate(self.params) if p.name == EMBEDDING) if embed_comm else ()
        self.replicated = tuple(i for i in counted if i not in set(sharded) | set(experts))
        self.sharded = tuple(i for i in counted if i in set(sharded))
        self.experts = tuple(i for i in counted if i in set(experts))
        self.tp_comm, self.ep_comm = tp_comm, ep_comm

    @ms.jit
    def local_squares(self):
        """DP-reduce the gradients (TP partial sums first), sum the shared embedding's over its two
        stages, and return the sum of squares of the gradients this stage counts in the global
        norm: TP shards summed over the TP group, routed experts over the EP group (each EP rank
        holds other experts), replicated gradients (equal on every TP rank once reduced) counted once."""
        if self.grad_reducer is not None:
            self.grad_reducer(self.grads)   # in place, bucket by bucket
        for i in self.shared:
            ops.assign(self.grads[i], self.embed_comm.all_reduce(self.grads[i]))
        total = self.square_sum.total(self.grads, self.replicated)
        part = self.square_sum.total(self.grads, self.sharded).reshape((1,))
        if self.tp_comm is not None:
            part = self.tp_comm.all_reduce(part)
        routed = self.square_sum.total(self.grads, self.experts).reshape((1,))
        if self.ep_comm is not None:
            routed = self.ep_comm.all_reduce(routed)
        return total + part.reshape(()) + routed.reshape(())


def build_pipeline_step(model, optimizer, ctx) -> "PipelineEngine":
    """The step and the engine that drives it for this rank's :class:`PipelineModel`."""
    params = list(optimizer.params)
    embed_comm = _embedding_comm(model, ctx)
    counted = [i for i, p in enumerate(params) if p.name != EMBEDDING or model.holds_first]
    split = tp_split_axes(model)
    sharded = [i for i, p in enumerate(params) if p.name in split]
    tp_comm = ctx.comm("tp") if ctx.tp_size > 1 and sharded else None
    routed = set(ep_split_names(model))   # this stage's routed experts (none on a stage without MoE)
    experts = [i for i, p in enumerate(params) if p.name in routed]
    ep_comm = ctx.comm("ep") if ctx.ep_size > 1 and experts else None
    step = PipelineTrainStep(model, optimizer, ctx.gradient_reducer(params, model), embed_comm, counted,
                             sharded, tp_comm, experts, ep_comm)
    return PipelineEngine(step, model, ctx)


def _embedding_comm(model, ctx):
    """The group of the first and last stage when both hold the embedding (else None)."""
    if not model.shared_embedding or not (model.holds_first or model.holds_last):
        return None
    ranks = (ctx.pp_ranks[0], ctx.pp_ranks[-1])
    group = ctx.group_among("pp", ranks)
    gather, scatter = native_ops(ctx.device_target, group, ctx.world_group)
    return GroupComm(group, 2, sorted(ranks).index(ctx.rank), gather, scatter, tuple(sorted(ranks)))


class PipelineEngine:
    """Runs one optimizer step's micro batches through this rank's stages; TrainStep-like."""

    def __init__(self, step: PipelineTrainStep, model, ctx):
        self.step, self.model, self.ctx = step, model, ctx
        self.optimizer = step.optimizer
        index = {p.name: i for i, p in enumerate(step.params)}
        self.runners = []
        for chunk in model.chunks():
            ps = [p for p in chunk.trainable_params()]
            self.runners.append(StageRunner(chunk, ps, [step.grads[index[p.name]] for p in ps]))
        self.stages, self.chunks = ctx.pp_size, model.num_chunks
        self.last = self.stages * self.chunks - 1
        self.links = self._links()
        self.events, self.idle_share, self._m = None, [], 0

    def _links(self) -> Dict[int, StageLink]:
        """A link to each neighbouring pipeline rank (and the wrap-around one when interleaved)."""
        p, r, links = self.stages, self.ctx.pp_rank, {}
        peers = {(r + 1) % p, (r - 1) % p} if self.chunks > 1 else {q for q in (r - 1, r + 1) if 0 <= q < p}
        for q in sorted(peers):
            peer = self.ctx.pp_ranks[q]
            group = self.ctx.group_among("pp", (self.ctx.rank, peer))
            links[peer] = StageLink(group, self.ctx.rank, peer, self.ctx.world_group, self.ctx.device_target)
        return links

    def activation_shape(self, ids_shape) -> tuple:
        """``[b, s, h]`` of the hidden states between stages; ``s / tp`` under sequence parallelism,
        where the residual stream (and so a stage's output) is split along the sequence."""
        batch, seq = (int(d) for d in ids_shape)
        if self.ctx.sequence_parallel:
            seq //= self.ctx.tp_size
        return (batch, seq, self.model.config.hidden_size)

    def _global_rank(self, stage: int) -> int:
        return self.ctx.pp_ranks[stage % self.stages]

    def forward_backward(self, micro_batches, keys, global_tokens: int, loss_scale: float) -> StepOutput:
        """Every micro batch through the schedule, then the gradient norm over all stages."""
        m = len(micro_batches)
        if self.events is None or self._m != m:
            self._m, self.events = m, timeline(self.stages, self.chunks, m).for_rank(self.ctx.pp_rank, self.stages)
        scale = Tensor(loss_scale / max(global_tokens, 1), mstype.float32)
        inputs = [model_inputs(mb, keys) for mb in micro_batches]
        act_shape = self.activation_shape(micro_batches[0][keys[0]].shape)
        start = time.perf_counter()
        parts, busy = self._run_events(inputs, scale, act_shape)
        self.idle_share.append(max(0.0, 1.0 - busy / max(time.perf_counter() - start, 1e-9)))
        local = float(sum(float(t.asnumpy()) for t in parts))
        loss_sum = float(self.ctx.pp_sum(np.float64(local)))
        squares = float(self.step.local_squares().asnumpy())
        norm = math.sqrt(max(float(self.ctx.pp_sum(np.float32(squares))), 0.0)) / loss_scale
        if not np.isfinite(squares):
            norm = float("nan")
        return StepOutput(loss_sum, global_tokens, norm, bool(np.isfinite(norm)))

    def _run_events(self, inputs, scale, act_shape):
        nothing = Tensor(np.zeros((), np.float32))
        stash, inbox, outbox, parts, busy = {}, {}, {}, [], 0.0
        for ev in self.events:
            if isinstance(ev, Transfer):
                self._transfer(ev, inbox, outbox, act_shape)
                continue
            runner = self.runners[ev.chunk]
            stage = virtual_stage(self.ctx.pp_rank, ev.chunk, self.stages)
            t0 = time.perf_counter()
            if ev.kind == "F":
                x = nothing if stage == 0 else inbox.pop(("act", stage, ev.micro))
                out, part = runner.forward(x, *inputs[ev.micro])
                parts.append(part)
                stash[(ev.chunk, ev.micro)] = x
                if stage < self.last:
                    outbox[Transfer("act", ev.micro, stage, stage + 1)] = out
            else:
                x = stash.pop((ev.chunk, ev.micro))
                dout = nothing if stage == self.last else inbox.pop(("grad", stage, ev.micro))
                counted = _expert_loads(runner.moe)
                dx = runner.backward(x, scale, dout, *inputs[ev.micro])
                _restore_expert_loads(runner.moe, counted)
                if stage > 0:
                    outbox[Transfer("grad", ev.micro, stage, stage - 1)] = dx
            busy += time.perf_counter() - t0
        return parts, busy

    def _transfer(self, ev: Transfer, inbox, outbox, act_shape) -> None:
        src, dst = self._global_rank(ev.src), self._global_rank(ev.dst)
        if src == self.ctx.rank:
            self.links[dst].send(outbox.pop(ev))
        else:
            inbox[(ev.kind, ev.dst, ev.micro)] = self.links[src].recv(act_shape)

    def bubble_record(self) -> dict:
        """Measured idle share of every stage since the last call, next to the theory."""
        own = float(np.mean(self.idle_share)) if self.idle_share else 0.0
        self.idle_share = []
        slots = np.zeros(self.stages, np.float32)
        slots[self.ctx.pp_rank] = own
        measured = self.ctx.pp_sum(slots)
        return {"pipeline_bubble": [round(float(v), 4) for v in measured],
                "pipeline_bubble_theory": round(theoretical_bubble(self.stages, self.chunks, self._m), 4)}

    def eval_loss(self) -> "PipelineEvalLoss":
        return PipelineEvalLoss(self)

    # TrainStep's host interface, so the loop's apply/skip code is shared
    def apply(self, lr, grad_coeff):
        return self.step.apply(lr, grad_coeff)

    def zero_grads(self):
        return self.step.zero_grads()


class PipelineEvalLoss:
    """:func:`mfcore.train.evaluate.evaluate`'s loss callable for a pipelined model: one micro
    batch forward through the stages in order (no backward, so no schedule), its loss sum over
    all stages."""

    def __init__(self, engine: PipelineEngine):
        self.engine, self.model = engine, engine.model

    def __call__(self, *inputs):
        e, ctx = self.engine, self.engine.ctx
        shape = e.activation_shape(inputs[0].shape)
        x, total = Tensor(np.zeros((), np.float32)), 0.0
        for stage in range(e.last + 1):
            if stage > 0:   # stage - 1 -> stage: always two different ranks (P >= 2)
                src, dst = e._global_rank(stage - 1), e._global_rank(stage)
                if ctx.rank == src:
                    e.links[dst].send(x)
                elif ctx.rank == dst:
                    x = e.links[src].recv(shape)
            if e._global_rank(stage) == ctx.rank:
                x, part = e.runners[stage // e.stages].forward(x, *inputs)
                total += float(part.asnumpy())
        return Tensor(np.float32(ctx.pp_sum(np.float64(total))))


_MOE_COUNTERS = ("expert_load", "dropped_tokens")   # dropped_tokens: capacity mode only


def _expert_loads(layers) -> list:
    """Each MoE layer's routing counters (a copy: on CPU asnumpy is a view of the live buffer)."""
    return [{name: getattr(layer, name).asnumpy().copy() for name in _MOE_COUNTERS if hasattr(layer, name)}
            for layer in layers]


def _restore_expert_loads(layers, counted) -> None:
    """The backward graph re-runs its stage's forward, which counts the routed (and dropped) tokens
    again: put back the counts of the forward graph, so each micro batch is counted once, as in one
    process."""
    for layer, before in zip(layers, counted):
        for name, value in before.items():
            ops.assign(getattr(layer, name), Tensor(value))
