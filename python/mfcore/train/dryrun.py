"""``mf-train --dry-run``: validate the config, build the data indices and (when it fits on this
host) the model, and report parameter count, memory estimate and tokens per step — then exit.

The memory estimate per device is an estimate, not a measurement: fp32 master weights, gradients
and AdamW moments (16 bytes per parameter, weights and gradients divided by TP, the moments also by
DP with optimizer sharding) plus activations by Korthikanti et al. (2022), "Reducing Activation
Recomputation in Large Transformer Models": ``s*b*h*(34 + 5*a*s/h)`` bytes per layer in 16-bit,
divided by TP (with sequence parallelism), doubled for fp32, and ``2*s*b*h`` per layer plus one full
layer with full recomputation.
"""
from typing import Dict

from mfcore.config import loader as C
from mfcore.config.schema import RunConfig

BUILD_LIMIT = 2_000_000_000       # parameters: larger models are only counted, not built here


def memory_estimate(cfg: RunConfig, model_cfg, params: int) -> Dict[str, float]:
    """Bytes per device: weights+grads, optimizer states, activations."""
    tp, dp = cfg.parallel.tensor, cfg.parallel.data
    weights_grads = 8.0 * params / tp
    optimizer = 8.0 * params / tp / (dp if cfg.parallel.optimizer_sharding else 1)
    s, b, h = cfg.data.seq_length, cfg.training.micro_batch_size, model_cfg.hidden_size
    a, layers = model_cfg.num_attention_heads, model_cfg.num_hidden_layers
    width = 2.0 if cfg.precision.compute_dtype == "float32" else 1.0
    per_layer = s * b * h * (34 + 5 * a * s / h) * width / tp
    if cfg.recompute.mode == "full":
        activations = layers * 2 * s * b * h * width + per_layer
    elif cfg.recompute.mode == "selective":
        activations = layers * s * b * h * 34 * width / tp
    else:
        activations = layers * per_layer
    logits = 4.0 * s * b * model_cfg.vocab_size / tp * 2       # fp32 logits and their gradient
    return {"weights_and_grads": weights_grads, "optimizer": optimizer,
            "activations": activations + logits}


def dry_run(cfg: RunConfig) -> str:
    """Everything short of training; the report as text. Errors are raised as MfcoreError."""
    from mfcore.models import build_model, count_parameters, flops_per_token
    from mfcore.train.trainer import build_data, build_parallel, model_config_of, setup_runtime
    setup_runtime(cfg)
    ctx = build_parallel(cfg)
    model_cfg = model_config_of(cfg)
    steps = C.total_train_steps(cfg)
    data = build_data(cfg, ctx, model_cfg, steps)
    params = count_parameters(model_cfg)
    built = "not built (too large for this host)"
    if params <= BUILD_LIMIT:
        model = build_model(model_cfg)
        real = sum(int(p.size) for p in model.trainable_params())
        built = f"built, {real:,} trainable parameters"
    mem = memory_estimate(cfg, model_cfg, params)
    gib = 1024 ** 3
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
        "memory per device (estimate): " + ", ".join(f"{k.replace('_', ' ')} {v / gib:.2f} GiB"
                                                     for k, v in mem.items())
        + f"; total {sum(mem.values()) / gib:.2f} GiB",
    ]
    return "\n".join(lines)
