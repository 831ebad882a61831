"""Consistency checks of a run config: sizes that cannot work together are refused before anything
starts, each with a message that names the keys and the numbers."""
import dataclasses
import math
from typing import Any, List

from mfcore.config.schema import RunConfig
from mfcore.data import parse_split
from mfcore.errors import ConfigError, DataError
from mfcore.models.dtypes import device_problem
from mfcore.parallel.context import expert_size_problem
from mfcore.plan import layout_of, unrunnable


def check_config(cfg: RunConfig, source: str = "<config>") -> None:
    """Raise :class:`ConfigError` listing every problem found in ``cfg`` (not just the first)."""
    problems: List[str] = []
    for check in (_check_finite, _check_batches, _check_length, _check_optim, _check_schedule,
                  _check_precision, _check_parallel, _check_data, _check_misc):
        problems.extend(check(cfg))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def _check_finite(cfg: RunConfig) -> List[str]:
    """Every number must be finite (YAML reads .inf and .nan as floats; lr=.inf passed `> 0`)."""
    out = []
    for section in dataclasses.fields(cfg):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            value = getattr(getattr(cfg, section.name), f.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                out.append(f"{section.name}.{f.name} must be a finite number, got {value}")
    return out


def _positive(problems: List[str], name: str, value: Any) -> None:
    if value is not None and value <= 0:
        problems.append(f"{name} must be > 0, got {value}")


def _check_batches(cfg: RunConfig) -> List[str]:
    t, dp, out = cfg.training, cfg.parallel.data, []
    _positive(out, "training.global_batch_size", t.global_batch_size)
    _positive(out, "training.micro_batch_size", t.micro_batch_size)
    if out:
        return out
    per_step = t.micro_batch_size * dp
    if t.global_batch_size % per_step:
        out.append(f"training.global_batch_size ({t.global_batch_size}) must be divisible by "
                   f"training.micro_batch_size ({t.micro_batch_size}) x parallel.data ({dp}) = {per_step}")
    elif t.gradient_accumulation_steps is not None and \
            t.gradient_accumulation_steps != t.global_batch_size // per_step:
        out.append(f"training.gradient_accumulation_steps ({t.gradient_accumulation_steps}) disagrees "
                   f"with global_batch_size / (micro_batch_size x parallel.data) = "
                   f"{t.global_batch_size // per_step}")
    return out


def _check_length(cfg: RunConfig) -> List[str]:
    t, out = cfg.training, []
    if (t.train_steps is None) == (t.train_tokens is None):
        out.append("give exactly one of training.train_steps and training.train_tokens")
    _positive(out, "training.train_steps", t.train_steps)
    _positive(out, "training.train_tokens", t.train_tokens)
    if t.eval_interval < 0:
        out.append(f"training.eval_interval must be >= 0, got {t.eval_interval}")
    if t.eval_interval > 0:
        _positive(out, "training.eval_steps", t.eval_steps)
    if t.loss_chunk_tokens < 0:
        out.append(f"training.loss_chunk_tokens must be >= 0 (0: unchunked), got {t.loss_chunk_tokens}")
    _positive(out, "data.seq_length", cfg.data.seq_length)
    return out


def _check_optim(cfg: RunConfig) -> List[str]:
    o, out = cfg.optimizer, []
    _positive(out, "optimizer.lr", o.lr)
    _positive(out, "optimizer.eps", o.eps)
    for name in ("beta1", "beta2"):
        value = getattr(o, name)
        if not 0.0 <= value < 1.0:
            out.append(f"optimizer.{name} must be in [0, 1), got {value}")
    if o.weight_decay < 0:
        out.append(f"optimizer.weight_decay must be >= 0, got {o.weight_decay}")
    if o.clip_grad < 0:
        out.append(f"optimizer.clip_grad must be >= 0 (0 disables clipping), got {o.clip_grad}")
    return out


def _check_schedule(cfg: RunConfig) -> List[str]:
    s, out = cfg.schedule, []
    if s.warmup_steps < 0:
        out.append(f"schedule.warmup_steps must be >= 0, got {s.warmup_steps}")
    if not 0.0 <= s.min_lr <= cfg.optimizer.lr:
        out.append(f"schedule.min_lr ({s.min_lr}) must be between 0 and optimizer.lr ({cfg.optimizer.lr})")
    if not 0.0 < s.decay_fraction <= 1.0:
        out.append(f"schedule.decay_fraction must be in (0, 1], got {s.decay_fraction}")
    return out


def _check_precision(cfg: RunConfig) -> List[str]:
    p, out = cfg.precision, []
    problem = device_problem(p.compute_dtype, cfg.run.device_target)
    if problem:
        out.append(f"precision.compute_dtype {problem} (run.device_target {cfg.run.device_target})")
    _positive(out, "precision.initial_loss_scale", p.initial_loss_scale)
    _positive(out, "precision.loss_scale_window", p.loss_scale_window)
    _positive(out, "precision.min_loss_scale", p.min_loss_scale)
    return out


def _check_parallel(cfg: RunConfig) -> List[str]:
    p, out = cfg.parallel, []
    _positive(out, "parallel.data", p.data)
    _positive(out, "parallel.tensor", p.tensor)
    for name in ("pipeline", "virtual_stages", "expert", "expert_tensor"):
        _positive(out, f"parallel.{name}", getattr(p, name))
    if not out:
        out.extend(unrunnable(layout_of(cfg)))
    out += _pipeline_problems(cfg)
    if p.sequence_parallel and p.tensor == 1:
        out.append("parallel.sequence_parallel needs parallel.tensor > 1")
    if p.tensor > 1 and cfg.data.seq_length % p.tensor and p.sequence_parallel:
        out.append(f"data.seq_length ({cfg.data.seq_length}) must be divisible by parallel.tensor "
                   f"({p.tensor}) with sequence_parallel")
    if p.expert_tensor > 0 and p.tensor % p.expert_tensor:
        out.append(f"parallel.expert_tensor ({p.expert_tensor}) must divide parallel.tensor ({p.tensor})")
    if expert_size_problem(p):
        out.append(expert_size_problem(p))
    if p.optimizer_sharding and p.data == 1:
        out.append("parallel.optimizer_sharding needs parallel.data > 1")
    return out


def _check_data(cfg: RunConfig) -> List[str]:
    d, out = cfg.data, []
    if not d.prefixes:
        out.append("data.prefixes is empty: give at least one indexed dataset prefix")
    if d.weights is not None:
        if len(d.weights) != len(d.prefixes):
            out.append(f"data.weights has {len(d.weights)} entries for {len(d.prefixes)} data.prefixes")
        elif any(w < 0 for w in d.weights) or sum(d.weights) <= 0:
            out.append("data.weights must be non-negative with a positive sum")
    try:
        split = parse_split(d.split)  # the data engine's own parser: one rule for the format
        if split[0] <= 0:
            out.append(f"data.split gives no documents to the train split: {d.split!r}")
        if cfg.training.eval_interval > 0 and split[1] <= 0:
            out.append(f"training.eval_interval > 0 needs a valid split, data.split is {d.split!r}")
    except DataError as e:
        out.append(f"data.{e}")
    if d.num_workers < 0:
        out.append(f"data.num_workers must be >= 0, got {d.num_workers}")
    return out


def _check_misc(cfg: RunConfig) -> List[str]:
    out: List[str] = []
    _positive(out, "run.threads", cfg.run.threads)
    _positive(out, "logging.log_interval", cfg.logging.log_interval)
    _positive(out, "logging.peak_flops", cfg.logging.peak_flops)
    for name in ("device_memory_gib", "compute_efficiency", "intra_node_bandwidth_gbs",
                 "inter_node_bandwidth_gbs", "devices_per_node"):
        _positive(out, f"plan.{name}", getattr(cfg.plan, name))
    _positive(out, "faults.max_bad_steps", cfg.faults.max_bad_steps)
    _positive(out, "faults.spike_factor", cfg.faults.spike_factor)
    _positive(out, "faults.spike_window", cfg.faults.spike_window)
    if cfg.checkpoint.save_interval < 0:
        out.append(f"checkpoint.save_interval must be >= 0, got {cfg.checkpoint.save_interval}")
    _positive(out, "checkpoint.keep_last_n", cfg.checkpoint.keep_last_n)
    return out


def check_model_fit(cfg: RunConfig, model_cfg: Any) -> None:
    """Checks that need the model config: a layout today's code runs for this model (the rule of
    :func:`mfcore.plan.unrunnable`), heads divisible by TP, token ids inside the vocabulary."""
    problems = unrunnable(layout_of(cfg), model_cfg)
    tp = cfg.parallel.tensor
    for attr in ("num_attention_heads", "num_key_value_heads"):
        heads = getattr(model_cfg, attr, None)
        if heads and heads % tp:
            problems.append(f"model {attr} ({heads}) must be divisible by parallel.tensor ({tp})")
    problems += _expert_problems(cfg.parallel.expert, model_cfg)
    max_positions = getattr(model_cfg, "max_position_embeddings", None)
    if max_positions and cfg.data.seq_length > max_positions and not cfg.data.allow_long_sequences:
        problems.append(f"data.seq_length ({cfg.data.seq_length}) exceeds the model's max_position_embeddings "
                        f"({max_positions}); shorten it, or set data.allow_long_sequences: true to train "
                        "beyond the positions the model was designed for")
    vocab = getattr(model_cfg, "vocab_size", None)
    for name in ("eod_id", "pad_id"):
        value = getattr(cfg.data, name)
        if value is not None and vocab is not None and not 0 <= value < vocab:
            problems.append(f"data.{name} ({value}) is outside the model vocabulary [0, {vocab})")
    if problems:
        raise ConfigError("; ".join(problems))


def _expert_problems(ep: int, model_cfg: Any) -> List[str]:
    """Expert parallelism needs routed experts, a whole number of them per expert-parallel rank."""
    if ep == 1:
        return []
    experts = getattr(model_cfg, "n_routed_experts", None)
    if not experts:
        return [f"parallel.expert ({ep}) needs a model with routed experts (this model has none); "
                "use parallel.expert: 1"]
    if experts % ep:
        return [f"model n_routed_experts ({experts}) must be divisible by parallel.expert ({ep})"]
    return []


def _pipeline_problems(cfg: RunConfig) -> List[str]:
    """What pipeline parallelism does not combine with yet (each refused with its key)."""
    p, out = cfg.parallel, []
    pp = getattr(p, "pipeline", 1)
    if pp == 1:
        return out
    chunks = getattr(p, "virtual_stages", 1)
    micro = cfg.training.global_batch_size // max(
        cfg.training.micro_batch_size * p.data, 1)
    if chunks > 1 and micro % pp:
        out.append(f"interleaved pipelining (parallel.virtual_stages={chunks}) needs the micro batch "
                   f"count ({micro}) to be a multiple of parallel.pipeline ({pp})")
    return out
