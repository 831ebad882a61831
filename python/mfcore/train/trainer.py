"""The training loop, readable top to bottom.

    train(cfg):
        runtime (mode, seeds) → parallel context → output dir + resolved config
        → data (datasets, loaders) → model (+ tensor parallel) → optimizer → compiled step
        → checkpointing (resume) → loop: batch, forward/backward, policy, update, log, eval, save

Each piece is built by one small function (``build_parallel``, ``build_data``, ``build_model_for``,
``build_training_step``, ``build_checkpointing``) so the parallel and checkpoint parts plug in at
one obvious place each.
"""
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import mindspore as ms
import numpy as np

from mfcore.errors import ConfigError
from mfcore.train import config as C
from mfcore.train.data_setup import DataBundle, build_data, make_loader
from mfcore.train.evaluate import EvalLoss, evaluate
from mfcore.train.heldout import evaluate_test_split
from mfcore.train.faults import build_fault_policy
from mfcore.train.monitor import IntervalMeter, Monitor
from mfcore.train.optim import build_optimizer
from mfcore.train import checkpointing as CK
from mfcore.train.precision import build_loss_scaler, compute_dtype
from mfcore.train.resilience import StopRequest, save_on_failure
from mfcore.train.schedules import build_schedule
from mfcore.train.schema import RunConfig
from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens, skip_update


@dataclass
class TrainState:
    """Everything the loop advances; checkpoints carry it (with the RNG and component states)."""
    step: int = 0
    consumed_samples: int = 0
    consumed_tokens: int = 0
    skipped_steps: int = 0


@dataclass
class TrainResult:
    state: TrainState
    losses: List[float] = field(default_factory=list)        # per step, token-averaged
    grad_norms: List[float] = field(default_factory=list)
    valid: List[Tuple[int, float]] = field(default_factory=list)
    data_wait_share: float = 0.0
    stopped_by: Optional[str] = None   # a signal name when stopped early (after a final checkpoint)


# ----------------------------------------------------------------------------- setup
def setup_runtime(cfg: RunConfig) -> None:
    """Graph mode on the configured device, and one seed for every generator."""
    ms.set_context(mode=ms.GRAPH_MODE)
    _set_once("device_target", cfg.run.device_target, ms.set_device)
    _set_once("deterministic", "ON" if cfg.run.deterministic else "OFF",
              lambda v: ms.set_deterministic(v == "ON"))
    seed_everything(cfg.run.seed)
    if ms.get_context("device_target") == "CPU":
        host_blocking_run()


def host_blocking_run() -> None:
    """Run compiled graphs on the calling thread. Otherwise MindSpore's graph pipeline leaves the
    Python thread spin-waiting (``AsyncRQueue::Wait``) for the whole run; on a small CPU that thread
    takes a core from the kernels: ~25% of a training step's wall and CPU time on 2 cores."""
    os.environ.setdefault("MS_DEV_HOST_BLOCKING_RUN", "1")


def _set_once(key: str, value: str, setter) -> None:
    """MindSpore fixes device and determinism once kernels ran; a second run in the same process
    (tests, notebooks) keeps them, with a warning when they differ, instead of failing."""
    if ms.get_context(key) == value:
        return
    try:
        setter(value)
    except RuntimeError:
        if key == "device_target":
            raise ConfigError(f"run.device_target {value} cannot be set: this process already runs "
                              f"MindSpore on {ms.get_context(key)}") from None
        logging.getLogger("mfcore.train").warning(
            "run.%s=%s ignored: MindSpore already ran kernels in this process with %s",
            key, value, ms.get_context(key))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    ms.set_seed(seed)


def build_parallel(cfg: RunConfig):
    """The parallel context (trivial in one process; ranks and groups under msrun)."""
    from mfcore.parallel import init_parallel
    return init_parallel(cfg.parallel)


def prepare_output(cfg: RunConfig, ctx) -> Path:
    out = Path(cfg.run.output_dir)
    if ctx.is_main:
        C.write_resolved_config(cfg, out)
    return out


def model_config_of(cfg: RunConfig):
    from mfcore.models import config_from_dict, config_to_dict, load_model_config
    from mfcore.train.checks import check_model_fit
    model_cfg = load_model_config(cfg.model.name)
    if cfg.model.overrides:
        merged = {**config_to_dict(model_cfg), **cfg.model.overrides}
        model_cfg = config_from_dict(merged, strict=True, source=f"{cfg.model.name} + model.overrides")
    check_model_fit(cfg, model_cfg)
    return model_cfg


def build_model_for(cfg: RunConfig, model_cfg, ctx):
    """The model in the configured precision and recompute mode, parallelized by the context."""
    from mfcore.models import build_model
    model = build_model(model_cfg, compute_dtype=compute_dtype(cfg.precision.compute_dtype),
                        recompute=cfg.recompute.mode)
    return ctx.parallelize_model(model)


def build_training_step(cfg: RunConfig, model, ctx) -> TrainStep:
    """Optimizer + compiled step (the DP gradient reducer and ZeRO-1 plug in here)."""
    params = [p for p in model.trainable_params()]
    optimizer = ctx.shard_optimizer(build_optimizer(cfg.optimizer, params))  # ZeRO-1 when configured
    return TrainStep(model, optimizer, grad_reducer=ctx.gradient_reducer(params, model),
                     grad_norm_fn=ctx.grad_norm(params, model) if ctx.tp_size > 1 else None)


def build_checkpointing(cfg: RunConfig, ctx):
    """The checkpoint manager (saves under ``checkpoint.dir``, resumes per ``checkpoint.resume``)."""
    from mfcore.train.checkpointing import build_manager
    return build_manager(cfg, ctx)


def global_loss_tokens(ctx, local_tokens: int) -> int:
    """Loss tokens over all DP ranks (the step averages the loss over the global count)."""
    return int(ctx.dp_sum(np.int64(local_tokens)))


def global_loss_sum(ctx, local_sum: float) -> float:
    """The step's loss sum over all DP ranks (what the logged loss is divided from)."""
    return float(ctx.dp_sum(np.float64(local_sum)))  # float64: one process logs the exact sum


def global_expert_load(ctx, local_load) -> np.ndarray:
    """Tokens routed to each expert over all DP ranks (numpy ``[moe_layers, experts]``): every
    replica must apply the same routing-bias update, or the replicas drift apart."""
    return np.asarray(ctx.dp_sum(np.asarray(local_load, np.float32)), np.float32)


# ----------------------------------------------------------------------------- the loop
def train(cfg: RunConfig, model=None, data: Optional[DataBundle] = None) -> TrainResult:
    """Train as configured. ``model`` / ``data`` replace the configured ones (custom models, tests)."""
    setup_runtime(cfg)
    ctx = build_parallel(cfg)
    out_dir = prepare_output(cfg, ctx)
    total_steps = C.total_train_steps(cfg)
    model_cfg = model_config_of(cfg) if model is None or data is None else None
    data = data or build_data(cfg, ctx, model_cfg, total_steps)
    model = model or build_model_for(cfg, model_cfg, ctx)
    step_fn = build_training_step(cfg, model, ctx)
    state = TrainState()
    ckpt = build_checkpointing(cfg, ctx)
    resumed = CK.resume_counters(cfg, ckpt, model, step_fn, state, data, model_cfg)
    loader = make_loader(cfg, ctx, data, data.train, state.consumed_samples)
    run = _Run(cfg, ctx, out_dir, total_steps, model, step_fn, data, loader, state, model_cfg)
    try:
        if resumed is not None:
            CK.restore(run, resumed)
            run.monitor.print(f"resumed from {resumed.path} at step {state.step}")
        result = run.loop(ckpt)
        if not result.stopped_by:
            run.test()
        return result
    finally:
        run.close()
        ckpt.wait()


class _Run:
    """The pieces of one run and the per-step work, so :func:`train` stays a table of contents."""

    def __init__(self, cfg, ctx, out_dir, total_steps, model, step_fn, data, loader, state, model_cfg):
        self.cfg, self.ctx, self.total_steps = cfg, ctx, total_steps
        self.model, self.step_fn, self.data, self.loader, self.state = model, step_fn, data, loader, state
        self.model_cfg = model_cfg
        self.schedule = build_schedule(cfg.schedule, cfg.optimizer.lr, total_steps)
        self.scaler = build_loss_scaler(cfg.precision)
        self.faults = build_fault_policy(cfg.faults)
        self.flops_per_token = _flops_per_token(cfg, model_cfg)
        self.monitor = Monitor(out_dir, total_steps, cfg.logging, C.dump_config(cfg),
                               enabled=ctx.is_main, start_step=state.step)
        self.meter = IntervalMeter()
        self.keys = _model_keys(cfg)
        self.eval_loss = EvalLoss(model) if data.valid is not None else None
        self.moe = _has_moe(model)
        self.expert_load = None   # tokens per expert since the last log line, [moe_layers, experts]
        self.result = TrainResult(state)
        self.wait_total = self.time_total = 0.0

    def loop(self, ckpt) -> TrainResult:
        cfg = self.cfg
        model_params = sum(int(np.prod(p.shape)) for p in self.model.trainable_params())
        self.monitor.print(f"training {cfg.run.name}: {model_params / 1e6:.2f}M parameters, "
                           f"{self.total_steps} steps of {C.tokens_per_step(cfg)} tokens "
                           f"({C.grad_accum_steps(cfg)} micro batches of {cfg.training.micro_batch_size})")
        self.model.set_train(True)
        with StopRequest() as stop:
            while self.state.step < self.total_steps:
                self.guarded_step(ckpt)
                step = self.state.step
                if step % cfg.logging.log_interval == 0 or step == self.total_steps:
                    self.log()
                if self._due(cfg.training.eval_interval, step):
                    self.validate()
                stopping = stop.should_stop(getattr(self.ctx, "any_rank", None))
                if self._due(cfg.checkpoint.save_interval, step) or step == self.total_steps or stopping:
                    self.save(ckpt)
                if stopping:
                    self.result.stopped_by = stop.signal_name or "another rank"
                    self.monitor.print(f"stopped at step {step} ({self.result.stopped_by}); "
                                       f"resume with --resume auto")
                    break
        self.result.data_wait_share = self.wait_total / max(self.time_total, 1e-9)
        return self.result

    def _due(self, interval: int, step: int) -> bool:
        return interval > 0 and (step % interval == 0 or step == self.total_steps)

    def one_step(self) -> None:
        start = time.perf_counter()
        micro_batches = next(self.loader)
        waited = time.perf_counter() - start
        tokens = global_loss_tokens(self.ctx, loss_tokens(micro_batches))
        out = forward_backward(self.step_fn, micro_batches, self.keys, tokens, self.scaler.scale)
        out.loss_sum = global_loss_sum(self.ctx, out.loss_sum)
        verdict = self._judge(out)
        if verdict.apply:
            apply_update(self.step_fn, self.schedule.lr_at(self.state.step), out.grad_norm,
                         self.cfg.optimizer.clip_grad, self.scaler.scale)
        else:
            skip_update(self.step_fn)
            self.state.skipped_steps += 1
            self.monitor.print(f"step {self.state.step + 1}: skipped ({verdict.reason}, grad norm "
                               f"{out.grad_norm:.4g})")
        if self.moe:
            self.balance_experts()
        self._advance(out, time.perf_counter() - start, waited, not verdict.apply)

    def balance_experts(self) -> None:
        """DeepSeek-V3's aux-loss-free balancing: nudge each expert's routing bias toward the mean
        load of this step (summed over data-parallel ranks), between optimizer steps."""
        from mfcore.models import expert_load, update_expert_bias
        load = global_expert_load(self.ctx, expert_load(self.model))
        update_expert_bias(self.model, load=load)
        self.expert_load = load if self.expert_load is None else self.expert_load + load

    def _judge(self, out):
        expected_overflow = self.scaler.mode == "dynamic" and self.scaler.scale > self.scaler.min_scale
        finite_ok = self.scaler.update(out.finite)
        verdict = self.faults.judge(self.state.step + 1, out.grad_norm, expected_overflow)
        verdict.apply = verdict.apply and finite_ok
        return verdict

    def _advance(self, out, elapsed: float, waited: float, skipped: bool) -> None:
        cfg, state = self.cfg, self.state
        state.step += 1
        state.consumed_samples += cfg.training.global_batch_size
        state.consumed_tokens += C.tokens_per_step(cfg)
        loss = out.loss_sum / max(out.loss_tokens, 1)
        self.result.losses.append(loss)
        self.result.grad_norms.append(out.grad_norm)
        self.meter.add(elapsed, waited, C.tokens_per_step(cfg), out.loss_sum, out.loss_tokens, skipped)
        self.wait_total += waited
        self.time_total += elapsed

    def log(self) -> None:
        s, state = self.meter.summary(), self.state
        record = {"step": state.step, "total_steps": self.total_steps,
                  "consumed_tokens": state.consumed_tokens, "loss": s["loss"],
                  "lr": self.schedule.lr_at(state.step - 1), "grad_norm": self.result.grad_norms[-1],
                  "loss_scale": self.scaler.scale if self.scaler.mode != "none" else None,
                  "tokens_per_s": s["tokens_per_s"], "step_time": s["step_time"],
                  "mfu": self._mfu(s["tokens_per_s"]), "data_wait": s["data_wait"],
                  "data_wait_share": s["data_wait_share"],
                  "eta_s": self.monitor.eta(state.step, s["step_time"]), "skipped": s["skipped"]}
        if self.expert_load is not None:
            record.update(expert_load_record(self.expert_load))
            self.expert_load = None
        self.monitor.log_train(record)
        self.meter.reset()

    def _mfu(self, tokens_per_s: float) -> Optional[float]:
        peak = self.cfg.logging.peak_flops
        if peak is None or self.flops_per_token is None:
            return None
        return self.flops_per_token * tokens_per_s / (peak * self.ctx.world_size)

    def validate(self) -> None:
        if self.eval_loss is None:
            return
        batches = make_loader(self.cfg, self.ctx, self.data, self.data.valid, 0)
        loss, ppl = evaluate(self.eval_loss, batches, self.cfg.training.eval_steps, self.keys)
        _close(batches)
        self.result.valid.append((self.state.step, loss))
        self.monitor.log_valid(self.state.step, loss, ppl)

    def test(self) -> None:
        """The test split once at the end, as ``mf-eval`` computes it (:mod:`mfcore.train.heldout`)."""
        found = evaluate_test_split(self.cfg, self.model, self.model_cfg, self.cfg.parallel.tensor)
        if found is not None:
            self.monitor.log_test(self.state.step, found["loss"], found["perplexity"], found["samples"])

    def guarded_step(self, ckpt) -> None:
        """One step; if it raises, save the last good state when it is healthy, then re-raise."""
        try:
            self.one_step()
        except Exception as e:
            save_on_failure(lambda: self.save(ckpt), lambda: CK.healthy(self), e)
            raise

    def save(self, ckpt) -> None:
        report = CK.save(self, ckpt)
        self.monitor.print(f"checkpoint step {self.state.step}: training stalled {report.stall_s:.3f} s "
                           f"({'async' if ckpt.async_save else 'sync'}) -> {report.path}")

    def close(self) -> None:
        self.monitor.close()
        _close(self.loader)


def _close(loader) -> None:
    close = getattr(loader, "close", None)
    if close is not None:
        close()


def expert_load_record(load: np.ndarray) -> dict:
    """The logged view of the routed-token counts: per layer and expert, and the worst layer's
    max/mean ratio (1.0 = perfectly balanced), the number to watch while balancing converges."""
    mean = np.maximum(load.mean(axis=1), 1e-9)
    return {"expert_load": load.astype(np.int64).tolist(),
            "expert_imbalance": float((load.max(axis=1) / mean).max())}


def _has_moe(model) -> bool:
    from mfcore.models.layers.moe import moe_layers
    return bool(moe_layers(model))


def _model_keys(cfg: RunConfig) -> Tuple[str, ...]:
    """The batch fields passed to the model, in its positional order."""
    keys = ("tokens", "labels", "loss_mask")
    if cfg.data.reset_position_ids or cfg.data.reset_attention_mask:
        keys += ("position_ids",)
    if cfg.data.reset_attention_mask:
        keys += ("attention_mask",)
    return keys


def _flops_per_token(cfg: RunConfig, model_cfg) -> Optional[float]:
    """Training FLOPs per token of the configured model (None for a custom model without config)."""
    if model_cfg is None:
        return None
    from mfcore.models import flops_per_token
    return float(flops_per_token(model_cfg, cfg.data.seq_length))
