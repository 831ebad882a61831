"""``mf-train --dry-run``: validate the config, build the data indices and (when it fits on this
host) the model, prove the checkpoint save/reload path of the config's parallel layout (a round
trip of a tiny-scaled model over simulated ranks, :mod:`mfcore.train.layout_check`), and report
parameter count, the planner's memory and step-time estimate and tokens per step — then exit. It
runs in one process, whatever the configured number of ranks. A layout whose planned memory exceeds
``plan.device_memory_gib`` is refused, naming what to change (:mod:`mfcore.plan`, docs/planning.md).
A one-process run that fits this host also trains one real step on its first batch (the run's model,
optimizer and compiled graphs; nothing is saved), so the measured peak memory stands beside the
planner's estimate.
"""
import time

from mfcore.config import loader as C
from mfcore.config.schema import RunConfig
from mfcore.errors import ConfigError
from mfcore.plan import plan_run, workload_of
from mfcore.plan.commands import refusal
from mfcore.plan.report import memory_line, time_line

BUILD_LIMIT = 2_000_000_000       # parameters: larger models are only counted, not built here


def planned_memory(cfg: RunConfig, model_cfg):
    """The planner's estimate for this run; refuses a layout that does not fit the declared device."""
    plan = plan_run(cfg, model_cfg)
    if not plan.fits:
        raise ConfigError(f"{cfg.run.name}: {refusal(cfg, model_cfg, plan)}")
    return plan


def dry_run(cfg: RunConfig) -> str:
    """Everything short of training; the report as text. Errors are raised as MfcoreError."""
    from mfcore.models import build_model, count_parameters, flops_per_token
    from mfcore.parallel import ParallelContext
    from mfcore.train.layout_check import checkpoint_round_trip
    from mfcore.train.preflight import check_fit
    from mfcore.train.trainer import build_data, build_model_for, model_config_of, setup_runtime
    model_cfg = model_config_of(cfg)
    plan = planned_memory(cfg, model_cfg)        # before anything is started or built
    setup_runtime(cfg)
    ctx = ParallelContext()  # one process: the data indices are the same for every rank
    steps = C.total_train_steps(cfg)
    data = build_data(cfg, ctx, model_cfg, steps)
    params = count_parameters(model_cfg)
    fit = check_fit(cfg, model_cfg)   # what mf-train refuses before allocating (train/preflight.py)
    built, measured = "not built (too large for this host)", "measured: no step run (the model is not built here)"
    if params <= BUILD_LIMIT and fit.problem() is None:
        one_process = cfg.parallel.ranks == 1
        model = build_model_for(cfg, model_cfg, ctx) if one_process else build_model(model_cfg)
        real = sum(int(p.size) for p in model.trainable_params())
        built = f"built, {real:,} trainable parameters"
        measured = (measured_step(cfg, ctx, data, model) if one_process else
                    "measured: no step run (the layout has several ranks; each logs its peak as memory_gb)")
    round_trip = checkpoint_round_trip(cfg, model_cfg)
    lines = [
        f"config: {cfg.run.name} ({cfg.model.name}), valid",
        f"data: {len(data.train):,} train samples" + (f", {len(data.valid):,} valid samples"
                                                      if data.valid is not None else ""),
        f"model: {params:,} parameters ({params / 1e9:.3f} B); {built}",
        f"tokens per step: {C.tokens_per_step(cfg):,} ({cfg.training.global_batch_size} x "
        f"{cfg.data.seq_length}), {C.grad_accum_steps(cfg)} micro batches of "
        f"{cfg.training.micro_batch_size} per rank",
        f"steps: {steps:,} ({steps * C.tokens_per_step(cfg):,} tokens)",
        f"training FLOPs per token: {flops_per_token(model_cfg, cfg.data.seq_length):.4g}",
        memory_line(plan, "memory per device (estimate):")
        + ("; fits" if plan.device.memory is not None else "; plan.device_memory_gib unset: not checked"),
        measured,
        f"{time_line(plan, workload_of(cfg, model_cfg))} (estimated)",
        fit.line() + ("" if fit.problem() is None else f": mf-train would refuse it ({fit.problem()})"),
        round_trip,
    ]
    return "\n".join(lines)


def measured_step(cfg: RunConfig, ctx, data, model) -> str:
    """Train ``model`` one step on the run's first global batch as ``mf-train`` would (its optimizer,
    compiled graphs and loss scale; learning rate 0) and report this process's peak memory so far."""
    from mfcore.train.data_setup import make_loader
    from mfcore.train.footprint import peak_memory_gb
    from mfcore.train.precision import build_loss_scaler
    from mfcore.train.step import apply_update, forward_backward, loss_tokens
    from mfcore.train.trainer import build_training_step, close_loader, model_keys
    start = time.perf_counter()
    step = build_training_step(cfg, model, ctx)
    loader = make_loader(cfg, ctx, data, data.train)
    try:
        micro_batches = next(loader)
    finally:
        close_loader(loader)
    scale = build_loss_scaler(cfg.precision).scale
    out = forward_backward(step, micro_batches, model_keys(cfg), loss_tokens(micro_batches), scale)
    apply_update(step, 0.0, out.grad_norm, cfg.optimizer.clip_grad, scale)
    peak = peak_memory_gb(cfg.run.device_target) * 1e9 / 2 ** 30
    return (f"measured: one training step ({len(micro_batches)} micro batches, loss "
            f"{out.loss_sum / max(out.loss_tokens, 1):.4f}, {time.perf_counter() - start:.1f} s with "
            f"the graph compile): peak {peak:.2f} GiB for this process")
