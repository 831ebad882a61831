"""The translation rules, one function per part of a MindSpore Transformers config (see
:mod:`mfcore.migrate.mindformers_config`). Each reads its source keys through ``src.get`` (which marks
them handled) and writes mfcore keys with a comment naming where they came from."""
import os
from typing import Any, Optional

from mfcore.migrate.mindformers_model import MC, MOE, flat_values
from mfcore.migrate.translation import SourceConfig, Translation

PC = "parallel_config"
NO_EP = "mfcore has no expert parallelism yet: every data-parallel rank holds all experts"
SCHEDULES = {"CosineWithWarmUpLR": "cosine", "ConstantWarmUpLR": "constant", "LinearWithWarmUpLR": "linear"}
ADAMW = ("AdamW", "AdamWeightDecay", "FP32StateAdamWeightDecay", "FusedAdamWeightDecay")


# ----------------------------------------------------------------------------- parallelism
def parallel(src: SourceConfig, t: Translation) -> None:
    use = src.get("use_parallel", True)
    note = "" if use else " (use_parallel False: one device)"
    dp = src.get(f"{PC}.data_parallel", 1) if use else 1
    tp = src.get(f"{PC}.model_parallel", 1) if use else 1
    t.set("parallel.data", dp, f"{PC}.data_parallel{note}")
    t.set("parallel.tensor", tp, f"{PC}.model_parallel{note}")
    sp = bool(src.get(f"{PC}.use_seq_parallel", False))
    t.set("parallel.sequence_parallel", sp and tp > 1,
          f"{PC}.use_seq_parallel" + (" (no effect without model_parallel > 1)" if sp and tp == 1 else ""))
    zero = bool(src.get("parallel.enable_parallel_optimizer", False))
    t.set("parallel.optimizer_sharding", zero and dp > 1,
          "parallel.enable_parallel_optimizer" + (" (needs data_parallel > 1)" if zero and dp == 1 else ""))
    pp = src.get(f"{PC}.pipeline_stage", 1)
    if pp and pp > 1 and use:   # with or without model_parallel: pipelines compose with tensor parallelism
        t.set("parallel.pipeline", pp, f"{PC}.pipeline_stage (balanced layers; micro_batch_num micro batches)")
    elif pp and pp > 1:
        t.ignore(f"{PC}.pipeline_stage", pp, "use_parallel False: one device")
    ep = src.get(f"{PC}.expert_parallel", 1)
    if ep and ep > 1:
        t.unsupported(f"{PC}.expert_parallel", ep, NO_EP)
    ep2 = src.get(f"{MOE}.expert_model_parallel", 1)
    if ep2 and ep2 > 1:
        t.unsupported(f"{MOE}.expert_model_parallel", ep2, NO_EP)


def batches(src: SourceConfig, t: Translation) -> None:
    """Global batch = batch_size x data_parallel x micro_batch_num (pipeline) x gradient accumulation."""
    mbs = src.get("runner_config.batch_size", 1)
    gas = src.get("runner_config.gradient_accumulation_steps", 1) or 1
    pp = src.leaves.get(f"{PC}.pipeline_stage", 1) or 1
    micro = src.get(f"{PC}.micro_batch_num", 1) or 1
    folded = micro if pp > 1 else 1
    dp = t.values["parallel.data"][0]
    t.set("training.micro_batch_size", mbs, "runner_config.batch_size")
    t.set("training.gradient_accumulation_steps", gas * folded,
          "runner_config.gradient_accumulation_steps" + (" x parallel_config.micro_batch_num" if folded > 1 else ""))
    t.set("training.global_batch_size", mbs * dp * gas * folded,
          "batch_size x data_parallel x gradient_accumulation_steps" + (" x micro_batch_num" if folded > 1 else ""))
    if pp <= 1 and micro > 1:
        t.ignore(f"{PC}.micro_batch_num", micro, "pipeline micro batches; no pipeline stages here")


def optimizer(src: SourceConfig, t: Translation) -> None:
    kind = src.get("optimizer.type", "AdamW")
    if kind not in ADAMW:
        t.unsupported("optimizer.type", kind, "mfcore trains with AdamW; translated as adamw")
    t.set("optimizer.name", "adamw", f"optimizer.type {kind}")
    betas = src.get("optimizer.betas")
    b1 = betas[0] if betas else src.get("optimizer.beta1", 0.9)
    b2 = betas[1] if betas else src.get("optimizer.beta2", 0.999)
    where = "optimizer.betas" if betas else "optimizer.beta1/beta2"
    t.set("optimizer.beta1", float(b1), where)
    t.set("optimizer.beta2", float(b2), where)
    t.set("optimizer.eps", float(src.get("optimizer.eps", 1e-8)), "optimizer.eps")
    t.set("optimizer.weight_decay", float(src.get("optimizer.weight_decay", 0.0)),
          "optimizer.weight_decay (their default 0.0)")
    lr = src.get("lr_schedule.learning_rate")
    opt_lr = src.get("optimizer.learning_rate")
    t.set("optimizer.lr", float(lr if lr is not None else (opt_lr if opt_lr is not None else 1e-3)),
          "lr_schedule.learning_rate" if lr is not None else "optimizer.learning_rate")
    if lr is not None and opt_lr is not None:
        t.ignore("optimizer.learning_rate", opt_lr, "the lr_schedule's learning_rate is the one used")
    clip = src.get("runner_wrapper.use_clip_grad", False)
    t.set("optimizer.clip_grad", float(src.get("runner_wrapper.max_grad_norm", 1.0)) if clip else 0.0,
          "runner_wrapper.use_clip_grad / max_grad_norm")
    _loss_scale(src, t)


def _loss_scale(src: SourceConfig, t: Translation) -> None:
    kind = src.get("runner_wrapper.scale_sense.type")
    if kind == "DynamicLossScaleUpdateCell":
        t.set("precision.loss_scale", "dynamic", "runner_wrapper.scale_sense.type")
        t.set("precision.initial_loss_scale", float(src.get("runner_wrapper.scale_sense.loss_scale_value", 65536)),
              "runner_wrapper.scale_sense.loss_scale_value")
        t.set("precision.loss_scale_window", src.get("runner_wrapper.scale_sense.scale_window", 1000),
              "runner_wrapper.scale_sense.scale_window")
        factor = src.get("runner_wrapper.scale_sense.scale_factor", 2)
        if factor != 2:
            t.unsupported("runner_wrapper.scale_sense.scale_factor", factor, "mfcore's dynamic scale grows/shrinks by 2")
    elif kind is not None:
        t.unsupported("runner_wrapper.scale_sense.type", kind, "only DynamicLossScaleUpdateCell is translated")
    else:
        value = src.get("runner_wrapper.scale_sense", 1.0)
        static = isinstance(value, (int, float)) and value != 1.0
        t.set("precision.loss_scale", "static" if static else "none", "runner_wrapper.scale_sense")
        if static:
            t.set("precision.initial_loss_scale", float(value), "runner_wrapper.scale_sense")


# ----------------------------------------------------------------------------- data and length
def data(src: SourceConfig, t: Translation) -> None:
    base = "train_dataset.data_loader"
    kind = src.get(f"{base}.type", "MindDataset")
    seq = src.get(f"{MC}.seq_length", 4096)
    t.set("data.seq_length", seq, f"{MC}.seq_length")
    if kind == "BlendedMegatronDatasetDataLoader":
        _megatron_data(src, t, base)
    elif kind == "MindDataset":
        path = src.get(f"{base}.dataset_dir", "")
        t.set("data.format", "mindrecord", f"{base}.type MindDataset")
        t.set("data.prefixes", [path] if path else [], f"{base}.dataset_dir" + ("" if path else
              " is empty: give the MindRecord with --train_dataset_dir or data.prefixes"))
        t.set("data.shuffle", bool(src.get(f"{base}.shuffle", False)), f"{base}.shuffle")
        t.set("data.seed", src.leaves.get("seed", 0), "seed")
        pad = src.get(f"{MC}.pad_token_id")
        if pad is not None:
            t.set("data.pad_id", pad, f"{MC}.pad_token_id (pad positions get no loss)")
        t.set("data.split", "1,0,0", "MindDataset: every record trains")
    else:
        t.unsupported(f"{base}.type", kind, "only MindDataset and BlendedMegatronDatasetDataLoader are translated")
    src.get(f"{MC}.pad_token_id")
    t.set("training.eval_interval", 0, "do_eval" + (" (evaluation has no translation: see below)"
                                                    if src.leaves.get("do_eval") else ""))
    if src.get("do_eval", False):
        t.unsupported("do_eval", True, "a separate eval dataset is not translated; mfcore validates on data.split")


def _megatron_data(src: SourceConfig, t: Translation, base: str) -> None:
    cfg = f"{base}.config"
    path = src.get(f"{cfg}.data_path") or []
    weights, prefixes = [float(w) for w in path[0::2]], [str(p) for p in path[1::2]]
    t.set("data.format", "megatron", f"{base}.type BlendedMegatronDatasetDataLoader")
    t.set("data.prefixes", prefixes, f"{cfg}.data_path")
    if len(prefixes) > 1:
        t.set("data.weights", weights, f"{cfg}.data_path weights")
    t.set("data.split", str(src.get(f"{cfg}.split", "1,0,0")).replace(" ", ""), f"{cfg}.split")
    t.set("data.seed", src.get(f"{cfg}.random_seed", 1234), f"{cfg}.random_seed")
    for name in ("reset_position_ids", "reset_attention_mask", "eod_mask_loss"):
        t.set(f"data.{name}", bool(src.get(f"{cfg}.{name}", False)), f"{cfg}.{name}")
    for ours, theirs in (("eod", "eod_id"), ("pad", "pad_id")):
        if src.has(f"{cfg}.{ours}"):
            t.set(f"data.{theirs}", src.get(f"{cfg}.{ours}"), f"{cfg}.{ours}")
    seq = src.get(f"{cfg}.seq_length")
    if seq is not None and seq != t.values["data.seq_length"][0]:
        t.unsupported(f"{cfg}.seq_length", seq, "differs from model_config.seq_length, which is used")
    src.get(f"{base}.shuffle")  # the GPT sample order is already shuffled by its seed
    src.get(f"{base}.datasets_type")


def _dataset_samples(src: SourceConfig, t: Translation) -> Optional[int]:
    """Train samples per epoch, when known without training: Megatron sizes[0], or the MindRecord's count."""
    sizes = src.get("train_dataset.data_loader.sizes")
    if sizes:
        return int(sizes[0])
    if t.values.get("data.format", ("",))[0] != "mindrecord" or not t.values["data.prefixes"][0]:
        return None
    from mfcore.data.mindrecord import is_mindrecord_path, mindrecord_files
    paths = t.values["data.prefixes"][0]
    if not all(is_mindrecord_path(p) for p in paths):
        return None
    import mindspore.dataset as mds
    return int(mds.MindDataset(mindrecord_files(paths), columns_list=["input_ids"], shuffle=False).get_dataset_size())


def steps(src: SourceConfig, t: Translation) -> None:
    """total_steps, or epochs x samples / global batch; warmup from warmup_steps or warmup_ratio."""
    total = src.get("lr_schedule.total_steps", -1)
    epochs = src.get("runner_config.epochs", 1)
    gbs = t.values["training.global_batch_size"][0]
    if total is None or total <= 0:
        samples = _dataset_samples(src, t)
        total = max(1, samples * epochs // gbs) if samples else None
        where = "runner_config.epochs x dataset samples / global batch (lr_schedule.total_steps -1)"
    else:
        where = "lr_schedule.total_steps"
    if total is None:
        t.unsupported("lr_schedule.total_steps", -1, "the dataset size is unknown here (no readable "
                      "dataset): set training.train_steps")
    t.set("training.train_steps", total, where)
    kind = src.get("lr_schedule.type", "ConstantWarmUpLR")
    name = SCHEDULES.get(kind)
    if name is None:
        t.unsupported("lr_schedule.type", kind, f"translated schedules: {', '.join(SCHEDULES)}; using cosine")
    t.set("schedule.name", name or "cosine", f"lr_schedule.type {kind}")
    ratio, warm = src.get("lr_schedule.warmup_ratio"), src.get("lr_schedule.warmup_steps")
    if warm is None and ratio is not None:
        warm = int(total * ratio) if total else 0
    t.set("schedule.warmup_steps", int(warm or 0),
          "lr_schedule.warmup_ratio x steps" if ratio is not None else "lr_schedule.warmup_steps")
    if name in ("cosine", None):
        t.set("schedule.min_lr", float(src.get("lr_schedule.lr_end", 0.0)), "lr_schedule.lr_end")
    init = src.get("lr_schedule.warmup_lr_init", 0.0)
    if init:
        t.unsupported("lr_schedule.warmup_lr_init", init, "mfcore's warmup starts at 0")
    cycles = src.get("lr_schedule.num_cycles", 0.5)
    if cycles != 0.5:
        t.unsupported("lr_schedule.num_cycles", cycles, "mfcore's cosine is one half cycle")


# ----------------------------------------------------------------------------- the rest
def recompute(src: SourceConfig, t: Translation) -> None:
    full, select = src.get("recompute_config.recompute", False), src.get("recompute_config.select_recompute", False)
    mode = "full" if _any_on(full) else ("selective" if _any_on(select) else "none")
    t.set("recompute.mode", mode, "recompute_config.recompute / select_recompute")
    for key, value in (("recompute", full), ("select_recompute", select)):
        if isinstance(value, list) and _any_on(value):
            t.unsupported(f"recompute_config.{key}", value, f"per-stage layer counts: mfcore recomputes every "
                          f"layer or none; translated as {mode}")


def _any_on(value: Any) -> bool:
    return any(bool(v) for v in flat_values(value)) if isinstance(value, list) else bool(value)


def callbacks(src: SourceConfig, t: Translation) -> None:
    cb = "callbacks.CheckpointMonitor"
    if src.has(f"{cb}.type") or src.under(cb):
        src.get(f"{cb}.type")
        t.set("checkpoint.save_interval", src.get(f"{cb}.save_checkpoint_steps", 1), f"{cb}.save_checkpoint_steps")
        t.set("checkpoint.keep_last_n", src.get(f"{cb}.keep_checkpoint_max", 5), f"{cb}.keep_checkpoint_max")
        t.set("checkpoint.async_save", bool(src.get(f"{cb}.async_save", False)), f"{cb}.async_save")
        fmt = src.get(f"{cb}.checkpoint_format", "ckpt")
        t.set("checkpoint.format", "safetensors" if fmt == "safetensors" else "safetensors+ckpt",
              f"{cb}.checkpoint_format {fmt}" + ("" if fmt == "safetensors" else
                                                 ": a MindSpore .ckpt of the model beside each checkpoint"))
        if src.has(f"{cb}.directory"):
            t.set("checkpoint.dir", src.get(f"{cb}.directory"), f"{cb}.directory")
    every = src.get("callbacks.MFLossMonitor.per_print_times")
    src.get("callbacks.MFLossMonitor.type")
    t.set("logging.log_interval", every or 1, "callbacks.MFLossMonitor.per_print_times")
    src.mark("callbacks.TopkBiasBalanceCallback.*")  # its rate is moe_config's, translated with it


def run_section(src: SourceConfig, t: Translation) -> None:
    t.set("run.name", src.get("trainer.model_name", "mindformers-run"), "trainer.model_name")
    src.get("trainer.type")
    out = str(src.get("output_dir", "./output"))
    t.set("run.output_dir", os.path.normpath(out), "output_dir")
    t.set("run.seed", src.get("seed", 0), "seed")
    t.set("run.device_target", src.get("context.device_target", "Ascend"), "context.device_target")
    mode = src.get("context.mode", 0)
    if mode != 0:
        t.unsupported("context.mode", mode, "mfcore trains in graph mode (0)")
    load = src.get("load_checkpoint", "")
    resume = src.get("resume_training", False)
    if load and any(os.path.isfile(os.path.join(str(load), f)) for f in ("trainer_state.json", "latest")):
        t.set("checkpoint.resume", str(load), "load_checkpoint (an mfcore checkpoint)")
    elif load:
        t.unsupported("load_checkpoint", load, "a MindSpore Transformers checkpoint: convert it first with "
                      f"`mf-ckpt import-ms {load} -c CKPT_ROOT` and set checkpoint.resume: CKPT_ROOT/step_00000000")
    elif resume:
        t.set("checkpoint.resume", "auto", "resume_training True: mfcore resumes from its newest checkpoint")
