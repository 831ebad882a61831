"""The run configuration schema: one dataclass per YAML section, every key with a default and a help.

The help strings are the reference documentation (``docs/configuration.md`` is generated from them),
so each says what the key does and what values it takes. Loading, merging and validation live in
:mod:`mfcore.config.loader`; this module only declares the shape.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mfcore.models.dtypes import COMPUTE_DTYPES
from mfcore.parallel.context import ParallelSection  # one definition, owned by mfcore.parallel


def key(default: Any = None, help: str = "", choices: Optional[tuple] = None, factory=None):
    """A config field with its help text (and allowed values, checked by the loader)."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunSection:
    name: str = key("mfcore-run", "Name of the run, shown in logs and TensorBoard.")
    output_dir: str = key("output", "Directory for the resolved config, logs, metrics and checkpoints.")
    seed: int = key(1234, "Seed of the model initialisation and of every random number generator.")
    device_target: str = key("CPU", "MindSpore device target.", choices=("CPU", "Ascend", "GPU"))
    deterministic: bool = key(False, "Ask MindSpore for deterministic kernels (bitwise repeatable runs).")
    threads: Optional[int] = key(None, "CPU threads per rank for MindSpore's kernels (runtime_num_threads) "
                                 "and mfcore's C++ kernels (e.g. the host's cores divided by the ranks on "
                                 "it). None: MindSpore's default, and all the host's cores for mfcore's "
                                 "kernels. Results do not depend on it.")


@dataclass
class ModelSection:
    name: str = key("tiny-llama3", "A shipped model name (e.g. llama3-8b, tiny-deepseek-v3) or a path "
                    "to a model YAML / Hugging Face config.json (a path contains / or ends in .yaml/"
                    ".json; a bare shipped name always means the shipped config).")
    overrides: Dict[str, Any] = key(help="Model config fields to change, Hugging Face names "
                                    "(e.g. {num_hidden_layers: 2}). Derived fields (head_dim, "
                                    "num_key_value_heads) follow hidden_size/num_attention_heads "
                                    "unless the base model sets them explicitly, then restate them.",
                                    factory=dict)


@dataclass
class DataSection:
    prefixes: List[str] = key(help="Indexed dataset prefixes (path without .bin/.idx); relative paths "
                              "are resolved against the working directory.", factory=list)
    format: str = key("auto", "Dataset format of data.prefixes: megatron (.bin/.idx prefixes), mindrecord "
                      "(MindRecord files or directories of shards, an input_ids column of seq_length + 1 "
                      "tokens, as MindSpore Transformers writes), or auto (mindrecord when the paths are "
                      "MindRecord, else megatron).", choices=("auto", "megatron", "mindrecord"))
    shuffle: bool = key(False, "MindRecord: shuffle the samples with data.seed (Megatron datasets are "
                        "always in their shuffled sample order).")
    weights: Optional[List[float]] = key(None, "Blend weights, one per prefix (None: one prefix, or "
                                         "weights proportional to the datasets' sizes).")
    split: str = key("969,30,1", "Train,valid,test proportions of the documents (Megatron style).")
    seq_length: int = key(4096, "Tokens per training sample.")
    allow_long_sequences: bool = key(False, "Allow data.seq_length above the model's "
                                     "max_position_embeddings (refused otherwise).")
    seed: int = key(1234, "Seed of the sample shuffle (independent of run.seed).")
    eod_id: Optional[int] = key(None, "End-of-document token id (None: the tokenizer's, from the model "
                                "config's eos_token_id).")
    pad_id: Optional[int] = key(None, "Padding token id (None: eod_id).")
    eod_mask_loss: bool = key(False, "Exclude predictions of the EOD token from the loss.")
    reset_position_ids: bool = key(False, "Restart position ids at every document boundary.")
    reset_attention_mask: bool = key(False, "Mask attention across document boundaries.")
    cache_dir: Optional[str] = key(None, "Where the sample indices are cached (None: "
                                   "<output_dir>/data_cache).")
    num_workers: int = key(2, "Batches prefetched by the loader's background thread.")


@dataclass
class TrainingSection:
    global_batch_size: int = key(8, "Samples per optimizer step, over all data-parallel ranks.")
    micro_batch_size: int = key(8, "Samples per forward/backward pass on one rank.")
    gradient_accumulation_steps: Optional[int] = key(
        None, "Micro batches per step (None: global_batch_size / (micro_batch_size * parallel.data)); "
        "if given it must agree.")
    train_steps: Optional[int] = key(None, "Optimizer steps to train (give this or train_tokens).")
    train_tokens: Optional[int] = key(None, "Tokens to train on; steps = ceil(tokens / tokens per step).")
    eval_interval: int = key(0, "Validate every this many steps (0: never; always at the end when > 0).")
    eval_steps: int = key(10, "Global batches of the valid split per validation.")
    loss_chunk_tokens: int = key(
        1024, "Compute the LM head and the cross entropy together for this many tokens at a time in "
        "training, backpropagating each chunk at once, so the [tokens, vocab] logits and their gradient "
        "never exist in full (same loss and gradients, no matmul repeated; holds about three "
        "head-weight-sized float32 buffers instead). Used only where that is less memory: micro "
        "batches of more than hidden_size + loss_chunk_tokens tokens (micro_batch_size x seq_length). "
        "0: never. Evaluation, parallel.tensor > 1 (the vocab-parallel loss holds 1/tensor of the "
        "logits per rank) and parallel.pipeline > 1 (the last stage's forward-only graph would repeat "
        "the head's gradient work) are unchunked.")


@dataclass
class OptimizerSection:
    name: str = key("adamw", "Optimizer.", choices=("adamw",))
    lr: float = key(3.0e-4, "Peak learning rate.")
    beta1: float = key(0.9, "AdamW first-moment decay.")
    beta2: float = key(0.95, "AdamW second-moment decay.")
    eps: float = key(1.0e-8, "AdamW epsilon.")
    weight_decay: float = key(0.1, "Decoupled weight decay (not applied to norms and biases).")
    clip_grad: float = key(1.0, "Global gradient-norm clipping threshold (0: no clipping).")


@dataclass
class ScheduleSection:
    name: str = key("cosine", "Learning-rate schedule after warmup.",
                    choices=("constant", "linear", "cosine", "wsd"))
    warmup_steps: int = key(0, "Linear warmup steps from 0 to optimizer.lr.")
    min_lr: float = key(0.0, "Final learning rate of linear, cosine and wsd.")
    decay_fraction: float = key(0.1, "wsd: fraction of the steps after warmup spent decaying.")
    decay_style: str = key("linear", "wsd: shape of the final decay.", choices=("linear", "cosine"))


@dataclass
class PrecisionSection:
    compute_dtype: str = key("float32", "Dtype of activations and matmuls (weights and optimizer "
                             "states stay float32).", choices=COMPUTE_DTYPES)
    loss_scale: str = key("dynamic", "Loss scaling for float16: dynamic, static or none "
                          "(ignored for float32/bfloat16).", choices=("dynamic", "static", "none"))
    initial_loss_scale: float = key(65536.0, "Starting (dynamic) or fixed (static) loss scale.")
    loss_scale_window: int = key(1000, "Dynamic: steps without overflow before the scale doubles.")
    min_loss_scale: float = key(1.0, "Dynamic: the scale never drops below this.")


@dataclass
class RecomputeSection:
    mode: str = key("none", "Activation recomputation: none, full (every layer) or selective "
                    "(attention core only).", choices=("none", "full", "selective"))


@dataclass
class PlanSection:
    device_memory_gib: Optional[float] = key(
        None, "Memory of one device in GiB (e.g. 64 for Atlas 800T A2). --dry-run refuses a layout "
        "whose planned memory per device exceeds it, naming what to change (None: no fit check).")
    compute_efficiency: Optional[float] = key(
        None, "Share of logging.peak_flops the matmuls achieve, for the step-time estimate (None: 0.5 "
        "on Ascend/GPU, 1.0 on CPU where peak_flops is already a measured figure).")
    intra_node_bandwidth_gbs: Optional[float] = key(
        None, "Per-device bandwidth inside a node in GB/s, for TP/EP/DP collectives that stay in a "
        "node (None: 196, Ascend HCCS).")
    inter_node_bandwidth_gbs: Optional[float] = key(
        None, "Per-device bandwidth between nodes in GB/s (None: 25, a 200 Gb/s RoCE port).")
    devices_per_node: Optional[int] = key(None, "Devices per node: groups wider than this cross nodes "
                                          "(None: 8).")


@dataclass
class CheckpointSection:
    save_interval: int = key(0, "Save every this many steps (0: only at the end of training).")
    keep_last_n: int = key(3, "Checkpoints kept; older ones are deleted after a successful save.")
    async_save: bool = key(False, "Write checkpoints in a background thread.")
    resume: str = key("auto", "auto (newest valid checkpoint in dir, if any), none, or a checkpoint path.")
    dir: Optional[str] = key(None, "Checkpoint directory (None: <output_dir>/checkpoints).")
    format: str = key("safetensors", "Checkpoint file format: safetensors (sharded, with index), or "
                      "safetensors+ckpt to also write the model as a MindSpore .ckpt beside each one.",
                      choices=("safetensors", "safetensors+ckpt"))
    allow_mismatch: bool = key(False, "Resume even if the checkpoint's model config or dataset "
                               "fingerprint differs from this run's (the differences are logged).")
    on_save_failure: str = key("stop", "A checkpoint that cannot be written (full disk, ...): stop the "
                               "run with the error, or warn and train on (the previous checkpoint stays "
                               "the resume point).", choices=("stop", "warn"))
    overwrite: bool = key(False, "With resume none: move another run's checkpoints found in dir aside "
                          "(to <dir>.old-<time>) instead of refusing to start (mf-train --overwrite).")


@dataclass
class LoggingSection:
    log_interval: int = key(1, "Print and record metrics every this many steps.")
    tensorboard: bool = key(True, "Write TensorBoard event files to <output_dir>/tensorboard.")
    jsonl: bool = key(True, "Append metrics to <output_dir>/metrics.jsonl.")
    progress_bar: str = key("auto", "auto (in an interactive terminal), always or never.",
                            choices=("auto", "always", "never"))
    peak_flops: Optional[float] = key(None, "Peak FLOP/s of one device for MFU (None: MFU not shown).")


@dataclass
class FaultsSection:
    max_bad_steps: int = key(5, "Stop with an error after this many consecutive skipped (non-finite "
                             "or spiking) steps.")
    spike_factor: Optional[float] = key(None, "Skip a step whose grad norm exceeds this many times the "
                                        "running mean (None: never).")
    spike_window: int = key(50, "Steps in the running mean of the grad norm.")
    spike_warmup: int = key(20, "Steps before spike detection starts.")


@dataclass
class RunConfig:
    run: RunSection = key(help="Run identity and output.", factory=RunSection)
    model: ModelSection = key(help="Model architecture.", factory=ModelSection)
    data: DataSection = key(help="Training data.", factory=DataSection)
    training: TrainingSection = key(help="Batch sizes and run length.", factory=TrainingSection)
    optimizer: OptimizerSection = key(help="Optimizer.", factory=OptimizerSection)
    schedule: ScheduleSection = key(help="Learning-rate schedule.", factory=ScheduleSection)
    precision: PrecisionSection = key(help="Mixed precision.", factory=PrecisionSection)
    recompute: RecomputeSection = key(help="Activation recomputation.", factory=RecomputeSection)
    parallel: ParallelSection = key(help="Parallelism.", factory=ParallelSection)
    plan: PlanSection = key(help="The device a run plans for (mf-train plan, --dry-run; docs/planning.md).",
                            factory=PlanSection)
    checkpoint: CheckpointSection = key(help="Checkpointing and resume.", factory=CheckpointSection)
    logging: LoggingSection = key(help="Monitoring.", factory=LoggingSection)
    faults: FaultsSection = key(help="NaN/Inf and spike policy.", factory=FaultsSection)
