"""The data side of a run: the configured blend → GPT datasets (train/valid) → this rank's loader.

:class:`DataBundle` is also the seam for custom data: give ``train()`` a bundle with your own
datasets and a ``loader_factory`` and the loop uses them instead.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from mfcore.errors import ConfigError
from mfcore.config import loader as C
from mfcore.config.schema import RunConfig


@dataclass
class DataBundle:
    train: Any                      # dataset (ds[i] → dict of numpy arrays)
    valid: Any = None
    fingerprint: str = ""
    # (dataset, consumed_samples) → iterator of per-step micro-batch lists; None: PretrainingLoader
    loader_factory: Optional[Callable[[Any, int], Any]] = None


def data_options(cfg: RunConfig, model_cfg) -> Dict[str, Any]:
    d = cfg.data
    eod = d.eod_id if d.eod_id is not None else getattr(model_cfg, "eos_token_id", None)
    if isinstance(eod, (list, tuple)):
        eod = eod[0]
    if eod is None:
        raise ConfigError("data.eod_id is not set and the model config has no eos_token_id")
    return {"eod_id": int(eod), "pad_id": d.pad_id if d.pad_id is not None else -1,
            "eod_mask_loss": d.eod_mask_loss, "reset_position_ids": d.reset_position_ids,
            "reset_attention_mask": d.reset_attention_mask,
            "create_attention_mask": d.reset_attention_mask}


def blend_of(cfg: RunConfig) -> List[str]:
    """Megatron's blend list: prefixes, or ``[w1, p1, w2, p2, ...]`` when weights are given."""
    if cfg.data.weights is None:
        return list(cfg.data.prefixes)
    return [x for w, p in zip(cfg.data.weights, cfg.data.prefixes) for x in (str(w), p)]


def build_data(cfg: RunConfig, ctx, model_cfg, total_steps: int) -> DataBundle:
    """Train/valid datasets over the configured blend, and this rank's train loader."""
    from mfcore.data import build_gpt_datasets
    t = cfg.training
    evals = (total_steps // t.eval_interval + 1) if t.eval_interval > 0 else 0
    num_samples = [total_steps * t.global_batch_size, evals and t.eval_steps * t.global_batch_size, 0]
    cache = C.optional_path(cfg.data.cache_dir, Path(cfg.run.output_dir) / "data_cache")
    train_ds, valid_ds, _ = build_gpt_datasets(
        blend_of(cfg), cfg.data.split, cfg.data.seq_length, cfg.data.seed, num_samples, str(cache),
        **data_options(cfg, model_cfg))
    fingerprint = train_ds.fingerprint() if hasattr(train_ds, "fingerprint") else ""
    return DataBundle(train_ds, valid_ds if evals else None, fingerprint)


def make_loader(cfg: RunConfig, ctx, data: DataBundle, dataset, consumed_samples: int = 0):
    """This rank's loader over ``dataset`` starting after ``consumed_samples`` global samples."""
    if data.loader_factory is not None:
        return data.loader_factory(dataset, consumed_samples)
    from mfcore.data import PretrainingLoader
    return PretrainingLoader(dataset, cfg.training.global_batch_size, cfg.training.micro_batch_size,
                             ctx.dp_rank, ctx.dp_size, consumed_samples=consumed_samples,
                             prefetch=max(1, cfg.data.num_workers))


class RunLoader:
    """This rank's train loader as a stateful component (the owner of the consumed-sample count):
    built on the first ``next`` at the sample a checkpoint restored, so resuming needs no second
    pass. Works for :class:`~mfcore.data.PretrainingLoader` and for custom ``loader_factory``
    iterators alike."""

    def __init__(self, make: Callable[[int], Any], global_batch_size: int):
        self._make, self._gbs = make, int(global_batch_size)
        self.consumed_samples = 0
        self._loader = None

    def state_dict(self) -> dict:
        return {"consumed_samples": self.consumed_samples}

    def load_state_dict(self, state: dict) -> None:
        if self._loader is not None:
            raise RuntimeError("RunLoader.load_state_dict: the loader has already started")
        self.consumed_samples = int(state["consumed_samples"])

    def __iter__(self):
        return self

    def __next__(self):
        if self._loader is None:
            self._loader = self._make(self.consumed_samples)
        batches = next(self._loader)
        self.consumed_samples = int(getattr(self._loader, "consumed_samples",
                                            self.consumed_samples + self._gbs))
        return batches

    def close(self) -> None:
        close = getattr(self._loader, "close", None)
        if close is not None:
            close()


def run_loader(cfg: RunConfig, ctx, data: DataBundle) -> RunLoader:
    """The run's train loader (see :class:`RunLoader`)."""
    return RunLoader(lambda consumed: make_loader(cfg, ctx, data, data.train, consumed),
                     cfg.training.global_batch_size)
