"""Validation loss and perplexity: token-averaged masked loss over ``eval_steps`` global batches of
the valid split, always the same batches (the loader restarts at sample 0) so evaluations along a
run are comparable."""
import math
from typing import Callable, Iterator, List, Sequence, Tuple

import mindspore as ms
from mindspore import nn

from mfcore.train.step import loss_tokens, model_inputs


class EvalLoss(nn.Cell):
    """The compiled forward pass: the masked loss sum of one micro batch."""

    def __init__(self, model: nn.Cell):
        super().__init__(auto_prefix=False)
        self.model = model

    @ms.jit
    def construct(self, input_ids, labels, loss_mask, position_ids=None, attention_mask=None):
        return self.model(input_ids, labels, loss_mask, position_ids, attention_mask)


def evaluate(eval_loss: EvalLoss, batches: Iterator[List[dict]], steps: int, keys: Sequence[str],
             reduce_sums: Callable[[float, int], Tuple[float, int]] = lambda s, n: (s, n)
             ) -> Tuple[float, float]:
    """(loss, perplexity) over ``steps`` optimizer-step batches; ``reduce_sums`` sums over DP ranks."""
    model = eval_loss.model
    was_training = model.training
    model.set_train(False)
    total, tokens = 0.0, 0
    try:
        for _ in range(steps):
            micro_batches = next(batches)
            tokens += loss_tokens(micro_batches)
            for mb in micro_batches:
                total += float(eval_loss(*model_inputs(mb, keys)).asnumpy())
    finally:
        model.set_train(was_training)
    total, tokens = reduce_sums(total, tokens)
    loss = total / max(tokens, 1)
    return loss, math.exp(min(loss, 700.0))
