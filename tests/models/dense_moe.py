"""The dense MoE formulation mfcore used before sparse dispatch, kept as a reference (tests, and the
baseline of ``benchmarks/bench_moe.py``): every routed expert runs on every token (``[E, T, h]``)
and the outputs are summed with the combine weights, zero for the experts a token did not choose.
Exact and dropless, at ``n_routed_experts / num_experts_per_tok`` times the sparse work."""
import mindspore as ms
from mindspore import ops

from mfcore.models.layers.moe import MoE, moe_layers


class DenseMoE(MoE):
    """An :class:`MoE` whose routed experts run densely (same parameters, same routing)."""

    def routed_experts(self, flat, expert_idx, weights):
        tokens, hidden = flat.shape
        chosen = ops.one_hot(expert_idx, self.num_experts, ops.ones((), ms.float32),
                             ops.zeros((), ms.float32))                    # [T, k, E]
        combine = (chosen * weights.expand_dims(-1)).sum(1)                # [T, E]
        e = self.experts
        x = flat.astype(e.gate_proj.compute_dtype)
        xe = x.expand_dims(0).broadcast_to((self.num_experts, tokens, hidden))
        gate = ops.bmm(xe, e.gate_proj.weight.astype(x.dtype))
        up = ops.bmm(xe, e.up_proj.weight.astype(x.dtype))
        y = ops.bmm(e.act(gate, up), e.down_proj.weight.astype(x.dtype))
        out = (y * combine.astype(y.dtype).transpose(1, 0).expand_dims(-1)).sum(0)
        return out, chosen.sum((0, 1)), ops.zeros((), ms.float32)


def make_dense(model):
    """Switch every MoE layer of ``model`` (built, not yet compiled) to the dense formulation."""
    for layer in moe_layers(model):
        layer.__class__ = DenseMoE
    return model
