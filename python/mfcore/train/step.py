"""The compiled training step: forward, backward and gradient accumulation over micro batches,
global-norm clipping and the optimizer update, as a few ``ms.jit`` graphs driven from the host.

One optimizer step is::

    scale = loss_scale / global_loss_tokens           # token average over ALL micro batches
    for mb in micro_batches:                          # graph 1, compiled once for any K
        loss_sum += accumulate(scale, mb)             #   grad buffers += grads(model(mb) * scale)
    norm = grad_norm(1 / loss_scale)                  # graph 2: DP reduce, norm of unscaled grads
    if finite and not a spike:                        # decided on the host (precision, faults)
        apply(lr, clip_coeff / loss_scale)            # graph 3: AdamW on coeff * grads, zero them
    else:
        zero_grads()                                  # graph 4: drop the step's gradients

Because the loss of every micro batch is divided by the *global* loss-token count before the
backward, K micro batches give exactly the gradient of one batch K times larger. One graph serves
every micro batch (a fresh compile of the forward/backward is the expensive part of start-up).

Note: a host-side ``Parameter.set_data`` after these graphs compiled is not seen by them (MindSpore
2.10 keeps the compiled device buffers); write parameters in place instead (``param.copy_(t)``).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops
import mindspore.common.dtype as mstype

from mfcore.optim.grad_norm import SquareSum


class ScaledLoss(nn.Cell):
    """``model(...)`` (the masked loss sum) times ``scale``; the unscaled sum rides along as aux."""

    def __init__(self, model: nn.Cell):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, scale, input_ids, labels, loss_mask, position_ids=None, attention_mask=None):
        loss_sum = self.model(input_ids, labels, loss_mask, position_ids, attention_mask)
        return loss_sum * scale, ops.stop_gradient(loss_sum)


class TrainStep(nn.Cell):
    """Owns the gradient buffers; ``grad_reducer`` (a Cell given the buffers) sums them in place
    over data-parallel ranks when given (see :mod:`mfcore.parallel`)."""

    def __init__(self, model: nn.Cell, optimizer: nn.Cell, grad_reducer: Optional[nn.Cell] = None,
                 grad_norm_fn: Optional[nn.Cell] = None):
        super().__init__(auto_prefix=False)
        self.loss_fn = ScaledLoss(model)
        self.optimizer = optimizer
        self.params = optimizer.params
        self.grad_fn = ms.value_and_grad(self.loss_fn, None, self.params, has_aux=True)
        self.grads = self.params.clone(prefix="grad_acc", init="zeros")
        self.grad_reducer = grad_reducer
        # tensor parallelism: shards' squares are summed over the TP group (mfcore.parallel)
        self.grad_norm_fn = grad_norm_fn
        self.square_sum = SquareSum()
        # the dense CPU AdamW clears these buffers in its own pass (mfcore.train.optim)
        clear = getattr(optimizer, "clear_grads_in_update", None)
        self.optimizer_zeroes_grads = bool(clear()) if clear is not None else False

    @ms.jit
    def accumulate(self, scale, input_ids, labels, loss_mask, position_ids=None, attention_mask=None):
        (_, loss_sum), grads = self.grad_fn(scale, input_ids, labels, loss_mask, position_ids,
                                            attention_mask)
        for buf, g in zip(self.grads, grads):
            ops.assign_add(buf, g)
        return loss_sum

    @ms.jit
    def grad_norm(self, inv_scale):
        if self.grad_reducer is not None:
            self.grad_reducer(self.grads)   # in place, bucket by bucket
        if self.grad_norm_fn is not None:
            return self.grad_norm_fn(self.grads) * inv_scale
        return ops.sqrt(self.square_sum.total(self.grads)) * inv_scale

    @ms.jit
    def apply(self, lr, grad_coeff):
        step = self.optimizer(self.grads, lr, grad_coeff)
        if self.optimizer_zeroes_grads:
            return step   # the fused AdamW cleared them in the same pass
        return self._zero(step)

    @ms.jit
    def zero_grads(self):
        return self._zero(0)

    def _zero(self, after):
        for buf in self.grads:
            ops.assign(buf, ops.depend(ops.zeros_like(buf), after))
        return after


@dataclass
class StepOutput:
    loss_sum: float      # masked loss sum over this rank's micro batches (unscaled)
    loss_tokens: int     # global loss-token count the loss was averaged over
    grad_norm: float     # global norm of the unscaled, unclipped gradient
    finite: bool


def loss_tokens(micro_batches: Sequence[Dict[str, np.ndarray]]) -> int:
    """This rank's number of loss tokens (non-zero loss-mask entries) over its micro batches."""
    return int(sum(np.count_nonzero(mb["loss_mask"]) for mb in micro_batches))


def model_inputs(mb: Dict[str, np.ndarray], keys: Sequence[str]) -> List[Tensor]:
    """The micro batch as the model's positional inputs (``tokens, labels, loss_mask[, ...]``)."""
    return [Tensor.from_numpy(np.ascontiguousarray(mb[k])) for k in keys]


def forward_backward(step: TrainStep, micro_batches, keys: Sequence[str], global_tokens: int,
                     loss_scale: float) -> StepOutput:
    """Run every micro batch through graph 1, then the norm graph; nothing is applied yet."""
    scale = Tensor(loss_scale / max(global_tokens, 1), mstype.float32)
    sums = [step.accumulate(scale, *model_inputs(mb, keys)) for mb in micro_batches]
    norm = float(step.grad_norm(Tensor(1.0 / loss_scale, mstype.float32)).asnumpy())
    total = float(sum(float(s.asnumpy()) for s in sums))
    return StepOutput(total, global_tokens, norm, bool(np.isfinite(norm)))


def skip_update(step: TrainStep) -> None:
    """Drop the accumulated gradients of a skipped step."""
    step.zero_grads()


def apply_update(step: TrainStep, lr: float, grad_norm: float, clip_grad: float,
                 loss_scale: float) -> None:
    """AdamW on the accumulated gradients, unscaled and clipped to ``clip_grad`` in one factor."""
    clip = min(1.0, clip_grad / (grad_norm + 1e-6)) if clip_grad > 0 else 1.0
    step.apply(Tensor(lr, mstype.float32), Tensor(clip / loss_scale, mstype.float32))
