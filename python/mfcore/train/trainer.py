"""The training loop, readable top to bottom.

    train(cfg):
        runtime (mode, seeds) → parallel context → output dir + resolved config
        → data (datasets, loaders) → model (+ tensor parallel) → optimizer → compiled step
        → stateful components (+ one-pass resume) → loop: batch, forward/backward, policy,
          update, log, eval, save

Each piece is built by one small function (``build_parallel``, ``build_data``, ``build_model_for``,
``build_training_step``, ``build_checkpointing``) so the parallel and checkpoint parts plug in at
one obvious place each.
"""
import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import List, Optional, Tuple

import mindspore as ms
import numpy as np

from mfcore.errors import CheckpointError, ConfigError
from mfcore.config import loader as C
from mfcore.models.layers.cpu_kernels import KERNEL_THREADS_ENV
from mfcore.train.data_setup import DataBundle, build_data, make_loader, run_loader
from mfcore.train.evaluate import EvalLoss, evaluate
from mfcore.train.expert_balance import ExpertBalance
from mfcore.train.heldout import evaluate_test_split
from mfcore.train.faults import build_fault_policy
from mfcore.train.footprint import FirstStepClock, peak_memory_gb
from mfcore.train.monitor import IntervalMeter, Monitor
from mfcore.train.optim import build_optimizer
from mfcore.train.preflight import preflight
from mfcore.train import checkpointing as CK
from mfcore.train.precision import build_loss_scaler
from mfcore.train.resilience import StopRequest, save_on_failure
from mfcore.train.schedules import build_schedule
from mfcore.config.schema import RunConfig
from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens, skip_update


@dataclass
class TrainState:
    """Everything the loop advances; checkpoints carry it (with the RNG and component states)."""
    step: int = 0
    consumed_samples: int = 0
    consumed_tokens: int = 0
    skipped_steps: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for f in fields(self):
            setattr(self, f.name, int(state[f.name]))


@dataclass
class TrainResult:
    state: TrainState
    losses: List[float] = field(default_factory=list)        # per step, token-averaged
    grad_norms: List[float] = field(default_factory=list)
    valid: List[Tuple[int, float]] = field(default_factory=list)
    data_wait_share: float = 0.0
    stopped_by: Optional[str] = None   # a signal name when stopped early (after a final checkpoint)
    time_to_first_step: Optional[float] = None   # seconds from train() to the end of the first step
    first_step_s: Optional[float] = None         # the first step alone (graph compile included)


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
        if cfg.run.threads is not None:
            use_threads(cfg.run.threads)


def host_blocking_run() -> None:
    """Run compiled graphs on the calling thread. Otherwise MindSpore's graph pipeline leaves the
    Python thread spin-waiting (``AsyncRQueue::Wait``) for the whole run; on a small CPU that thread
    takes a core from the kernels: ~25% of a training step's wall and CPU time on 2 cores."""
    os.environ.setdefault("MS_DEV_HOST_BLOCKING_RUN", "1")


def use_threads(threads: int) -> None:
    """``run.threads``: MindSpore's CPU kernel threads and mfcore's C++ kernels' (which read
    ``MFCORE_KERNEL_THREADS`` on every call; their results do not depend on it)."""
    os.environ[KERNEL_THREADS_ENV] = str(threads)
    _set_once("runtime_num_threads", threads, lambda v: ms.set_context(runtime_num_threads=v))


def _set_once(key: str, value, setter) -> None:
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
    from mfcore.models import apply_overrides, load_model_config
    from mfcore.config.checks import check_model_fit
    model_cfg = apply_overrides(load_model_config(cfg.model.name), cfg.model.overrides,
                                source=f"{cfg.model.name} + model.overrides")
    check_model_fit(cfg, model_cfg)
    return model_cfg


def build_model_for(cfg: RunConfig, model_cfg, ctx):
    """The model in the configured precision, recompute mode and loss chunking, parallelized by the
    context (pipeline stages keep the unchunked head: their forward-only graph computes the loss too,
    and the chunked head would do its gradient work there in vain)."""
    from mfcore.models import build_model
    chunk = cfg.training.loss_chunk_tokens if ctx.pp_size == 1 else 0
    model = build_model(model_cfg, compute_dtype=cfg.precision.compute_dtype,
                        recompute=cfg.recompute.mode, loss_chunk_tokens=chunk)
    model = ctx.parallelize_model(model)
    if ctx.pp_size > 1:   # keep this rank's pipeline stages only
        from mfcore.parallel.pipeline_model import build_pipeline_model
        model = build_pipeline_model(model, ctx)
    return model


def build_training_step(cfg: RunConfig, model, ctx, layouts=None) -> TrainStep:
    """Optimizer + compiled step (the DP gradient reducer and ZeRO-1 plug in here)."""
    params = [p for p in model.trainable_params()]
    optimizer = build_optimizer(cfg.optimizer, params, ctx, layouts)  # ZeRO-1 when configured
    if ctx.pp_size > 1:   # stage graphs driven by the pipeline schedule
        from mfcore.train.pipeline_step import build_pipeline_step
        return build_pipeline_step(model, optimizer, ctx)
    return TrainStep(model, optimizer, grad_reducer=ctx.gradient_reducer(params, model),
                     grad_norm_fn=ctx.grad_norm(params, model) if ctx.tp_size > 1 or ctx.ep_size > 1 else None)


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


# ----------------------------------------------------------------------------- the loop
def train(cfg: RunConfig, model=None, data: Optional[DataBundle] = None) -> TrainResult:
    """Train as configured. ``model`` / ``data`` replace the configured ones (custom models, tests)."""
    clock = FirstStepClock()
    setup_runtime(cfg)
    ctx = build_parallel(cfg)
    moved = CK.claim_checkpoint_dir(cfg, ctx)  # before anything is built or written
    out_dir = prepare_output(cfg, ctx)
    total_steps = C.total_train_steps(cfg)
    model_cfg = model_config_of(cfg) if model is None or data is None else None
    if model is None:
        preflight(cfg, model_cfg)  # the --dry-run size check, before anything is allocated
    data = data or build_data(cfg, ctx, model_cfg, total_steps)
    model = model or build_model_for(cfg, model_cfg, ctx)
    parts = build_components(cfg, ctx, model, data, total_steps)
    ckpt = build_checkpointing(cfg, ctx)
    resumed = CK.resume(cfg, ckpt, parts.components, CK.expected_on_resume(data, model_cfg))
    run = _Run(cfg, ctx, out_dir, total_steps, parts, data, model_cfg, clock)
    try:
        if moved:
            run.monitor.print(f"--overwrite: the previous checkpoints were moved to {moved}")
        if resumed is not None:
            run.monitor.print(f"resumed from {resumed.path} at step {parts.state.step}")
        result = run.loop(ckpt)
        if not result.stopped_by:
            run.test()
        return result
    finally:
        run.close()
        run.finish_saves(ckpt)


@dataclass
class RunParts:
    """The run's stateful pieces; ``components`` names them for checkpoints."""
    model: object
    step_fn: TrainStep
    state: TrainState
    schedule: object
    scaler: object
    faults: object
    loader: object
    components: dict


def build_components(cfg: RunConfig, ctx, model, data: DataBundle, total_steps: int) -> RunParts:
    """Every stateful piece of the run, built before anything is resumed into them."""
    from mfcore.parallel.param_layout import coords_of, param_layouts
    layouts = param_layouts(model, ctx)
    step_fn = build_training_step(cfg, model, ctx, layouts)
    state = TrainState()
    schedule = build_schedule(cfg.schedule, cfg.optimizer.lr, total_steps)
    scaler, faults = build_loss_scaler(cfg.precision), build_fault_policy(cfg.faults)
    loader = run_loader(cfg, ctx, data)
    components = CK.run_components(model, step_fn.optimizer, layouts, coords_of(ctx), schedule, scaler,
                                   faults, loader, state)
    if cfg.checkpoint.format == "safetensors+ckpt":
        CK.check_ms_ckpt_possible(components)
    return RunParts(model, step_fn, state, schedule, scaler, faults, loader, components)


class _Run:
    """The pieces of one run and the per-step work, so :func:`train` stays a table of contents."""

    def __init__(self, cfg, ctx, out_dir, total_steps, parts: RunParts, data, model_cfg,
                 clock: Optional[FirstStepClock] = None):
        self.cfg, self.ctx, self.total_steps = cfg, ctx, total_steps
        self.model, self.step_fn, self.loader, self.state = parts.model, parts.step_fn, parts.loader, parts.state
        self.data, self.model_cfg = data, model_cfg
        self.schedule, self.scaler, self.faults = parts.schedule, parts.scaler, parts.faults
        self.components = parts.components
        self.metadata = CK.run_metadata(cfg, data, model_cfg)
        self.flops_per_token = _flops_per_token(cfg, model_cfg)
        self.monitor = Monitor(out_dir, total_steps, cfg.logging, C.dump_config(cfg),
                               enabled=ctx.is_main, start_step=self.state.step)
        self.meter = IntervalMeter()
        self.keys = model_keys(cfg)
        self.eval_loss = None
        if data.valid is not None:   # a pipelined model evaluates through its stages
            self.eval_loss = self.step_fn.eval_loss() if ctx.pp_size > 1 else EvalLoss(self.model)
        self.experts = ExpertBalance(self.model, ctx)
        self.result = TrainResult(self.state)
        self.wait_total = self.time_total = 0.0
        self.clock = clock or FirstStepClock()   # train()'s started before the set-up

    def loop(self, ckpt) -> TrainResult:
        cfg = self.cfg
        model_params = sum(int(np.prod(p.shape)) for p in self.model.trainable_params())
        self.monitor.print(f"training {cfg.run.name}: {model_params / 1e6:.2f}M parameters, "
                           f"{self.total_steps} steps of {C.tokens_per_step(cfg)} tokens "
                           f"({C.grad_accum_steps(cfg)} micro batches of {cfg.training.micro_batch_size})")
        self.model.set_train(True)
        self.clock.loop_started()
        with StopRequest() as stop:
            while self.state.step < self.total_steps:
                self.guarded_step(ckpt)
                self.report_first_step()
                self.experts.measure_exchange(self.cfg, C.grad_accum_steps(self.cfg), self.monitor.print)
                self.check_saves(ckpt)  # an async save that failed is reported now, not at the next save
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

    def report_first_step(self) -> None:
        line = self.clock.step_done()
        if line is not None:
            self.result.first_step_s = self.clock.first_step_s
            self.result.time_to_first_step = self.clock.time_to_first_step
            self.monitor.print(line)

    def _due(self, interval: int, step: int) -> bool:
        return interval > 0 and (step % interval == 0 or step == self.total_steps)

    def one_step(self) -> None:
        start = time.perf_counter()
        micro_batches = next(self.loader)
        waited = time.perf_counter() - start
        tokens = global_loss_tokens(self.ctx, loss_tokens(micro_batches))
        if self.ctx.pp_size > 1:
            out = self.step_fn.forward_backward(micro_batches, self.keys, tokens, self.scaler.scale)
        else:
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
        self.experts.after_step()
        self._advance(out, time.perf_counter() - start, waited, not verdict.apply)

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
                  "eta_s": self.monitor.eta(state.step, s["step_time"]), "skipped": s["skipped"],
                  "memory_gb": peak_memory_gb(self.cfg.run.device_target)}
        if self.ctx.pp_size > 1:
            record.update(self.step_fn.bubble_record())
        record.update(self.experts.record(s["step_time"]))
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
        close_loader(batches)
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
            save_on_failure(lambda: self.save(ckpt), lambda: CK.healthy(self.model), e)
            raise

    def save(self, ckpt) -> None:
        try:
            report = CK.save(ckpt, self.state.step, self.components, self.metadata)
            if self.cfg.checkpoint.format == "safetensors+ckpt" and self.ctx.is_main:
                CK.save_model_ms_ckpt(self.model, ckpt.directory, self.state.step)
        except CheckpointError as e:
            return self.save_failed(e)
        self.monitor.print(f"checkpoint step {self.state.step}: training stalled {report.stall_s:.3f} s "
                           f"({'async' if ckpt.async_save else 'sync'}) -> {report.path}")

    def check_saves(self, ckpt) -> None:
        try:
            ckpt.check()
        except CheckpointError as e:
            self.save_failed(e)

    def finish_saves(self, ckpt) -> None:
        try:
            ckpt.wait()
        except CheckpointError as e:
            self.save_failed(e)

    def save_failed(self, error: CheckpointError) -> None:
        """checkpoint.on_save_failure: stop (raise: one clear error) or warn and train on."""
        if self.cfg.checkpoint.on_save_failure != "warn":
            raise error
        logging.getLogger("mfcore.train").warning("%s", error)
        self.monitor.print(f"warning: {error}; training goes on (checkpoint.on_save_failure: warn)")

    def close(self) -> None:
        self.monitor.close()
        close_loader(self.loader)


def close_loader(loader) -> None:
    close = getattr(loader, "close", None)
    if close is not None:
        close()


def model_keys(cfg: RunConfig) -> Tuple[str, ...]:
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
