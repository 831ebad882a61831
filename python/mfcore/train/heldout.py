"""Held-out loss and perplexity over the Megatron samples of a split (``mf-eval``, and the test split
at the end of ``mf-train``).

The loss is the main head's cross entropy only (DeepSeek-V3's MTP and balance terms are training
objectives, not the model's perplexity), summed over the loss-masked tokens of every sample and
divided by their count: token-weighted, so samples with more masked tokens count less.
"""
import logging
import math
from pathlib import Path
from typing import Dict, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import nn

from mfcore.errors import DataError
from mfcore.train.data_setup import blend_of, data_options
from mfcore.train.step import model_inputs

SPLITS = {"valid": 1, "test": 2}


class MainHeadLoss(nn.Cell):
    """The compiled forward: masked cross-entropy sum of the main output head for one batch."""

    def __init__(self, model: nn.Cell):
        super().__init__(auto_prefix=False)  # keep the model's parameter names
        self.model = model
        from mfcore.models.layers.loss import MaskedCrossEntropySum
        self.loss = MaskedCrossEntropySum()

    @ms.jit
    def construct(self, input_ids, labels, loss_mask, position_ids=None, attention_mask=None):
        logits = self.model(input_ids, None, None, position_ids, attention_mask)
        vocab = logits.shape[-1]
        return self.loss(logits.reshape(-1, vocab), labels.reshape(-1), loss_mask.reshape(-1))


def model_keys(cfg) -> tuple:
    """The batch fields passed to the model, in its positional order (as the trainer passes them)."""
    keys = ("tokens", "labels", "loss_mask")
    if cfg.data.reset_position_ids or cfg.data.reset_attention_mask:
        keys += ("position_ids",)
    if cfg.data.reset_attention_mask:
        keys += ("attention_mask",)
    return keys


def split_dataset(cfg, model_cfg, split: str, samples: Optional[int] = None):
    """The ``split`` (valid|test) dataset of the run's blend: ``samples`` samples (Megatron repeats
    epochs past one), or one epoch when None."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if samples is not None and samples < 1:
        raise DataError(f"samples must be >= 1, got {samples}")
    from mfcore.data import build_gpt_datasets
    sizes = [0, 0, 0]
    sizes[SPLITS[split]] = samples
    cache = cfg.data.cache_dir or str(Path(cfg.run.output_dir) / "data_cache")
    found = build_gpt_datasets(blend_of(cfg), cfg.data.split, cfg.data.seq_length, cfg.data.seed, sizes,
                               cache, **data_options(cfg, model_cfg))[SPLITS[split]]
    if found is None or len(found) == 0:
        raise DataError(f"{', '.join(cfg.data.prefixes)}: the {split} split is empty "
                        f"(data.split={cfg.data.split!r} gives it no documents)")
    return found


def _batch(dataset, indices: Sequence[int], size: int) -> Dict[str, np.ndarray]:
    """Samples ``indices`` stacked, padded to ``size`` rows with loss-masked copies (one graph shape)."""
    rows = [dataset[i] for i in indices]
    pad = dict(rows[0], loss_mask=np.zeros_like(rows[0]["loss_mask"]))
    rows += [pad] * (size - len(rows))
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def heldout_loss(model, dataset, keys: Sequence[str], batch_size: int = 4,
                 samples: Optional[int] = None) -> Dict[str, float]:
    """``{"samples", "tokens", "loss", "perplexity"}`` over the first ``samples`` samples of
    ``dataset`` (default all: Megatron's index covers whole epochs, so it may hold more)."""
    count = len(dataset) if samples is None else min(samples, len(dataset))
    loss_cell = MainHeadLoss(model)
    was_training = model.training
    model.set_train(False)
    total, tokens = 0.0, 0
    try:
        for start in range(0, count, batch_size):
            mb = _batch(dataset, range(start, min(start + batch_size, count)), batch_size)
            tokens += int(np.count_nonzero(mb["loss_mask"]))
            total += float(loss_cell(*model_inputs(mb, keys)).asnumpy())
    finally:
        model.set_train(was_training)
    if tokens == 0:
        raise DataError("no loss tokens in the evaluated samples (every label is masked)")
    loss = total / tokens
    return {"samples": count, "tokens": tokens, "loss": loss, "perplexity": math.exp(min(loss, 700.0))}


def saved_run_config(checkpoint: str):
    """The run config a training checkpoint recorded (its data section gives split, sequence length,
    seed and sample options), or None for a Hugging Face directory or a checkpoint without one."""
    import os

    import yaml

    from mfcore.checkpoint.load import read_trainer_state, resolve_step_dir
    from mfcore.config.loader import config_from_dict
    if os.path.isfile(os.path.join(checkpoint, "config.json")):
        return None
    step_dir = resolve_step_dir(checkpoint)
    text = read_trainer_state(step_dir).get("config")
    if not isinstance(text, str):
        return None
    return config_from_dict(yaml.safe_load(text), f"{step_dir} (saved run config)", validate=False)


def evaluate_test_split(cfg, model, model_cfg, tensor_parallel: int = 1) -> Optional[Dict[str, float]]:
    """The end-of-training test evaluation: ``eval_steps * global_batch_size`` samples of the test
    split (what one validation reads of the valid split), or None when validation is off, the data
    is custom (no model config), the model is tensor-parallel (its logits are sharded) or split
    into pipeline stages (no rank holds the whole model) — run ``mf-eval`` on the checkpoint
    instead — or the split has no test documents (logged)."""
    t = cfg.training
    if model_cfg is None or t.eval_interval <= 0 or t.eval_steps <= 0 or tensor_parallel > 1 \
            or cfg.parallel.pipeline > 1:
        return None
    samples = t.eval_steps * t.global_batch_size
    try:
        dataset = split_dataset(cfg, model_cfg, "test", samples)
    except DataError as e:  # training is done and saved: a split without test documents only skips this
        logging.getLogger("mfcore.train").warning("test split not evaluated: %s", e)
        return None
    return heldout_loss(model, dataset, model_keys(cfg), t.micro_batch_size, samples)
