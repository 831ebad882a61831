"""What a model family tells the rest of mfcore about itself: its config class, its Cell (imported
on first build, with MindSpore), its parameter counts, its Hugging Face names and its tensor-parallel
plan. Each family folder (``llama/``, ``deepseek_v3/``) defines one :class:`ModelFamily`; the table
in :mod:`mfcore.models.registry` lists them. Nothing here imports MindSpore."""
import importlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple


@dataclass(frozen=True)
class TensorParallelPlan:
    """Which cells split how over the tensor-parallel group; :mod:`mfcore.parallel.tensor_parallel`
    applies it without knowing any layer name. Paths are attribute paths (``self_attn.q_proj``);
    a path the model or a layer does not have is skipped (optional parts: DeepSeek's ``q_proj``
    or ``q_a_proj``/``q_b_proj``, the MTP modules' extra cells). Cells no entry names stay
    replicated.

    Styles: ``column`` (output features split), ``row`` (input features split, outputs summed),
    ``vocab_embedding`` (the table split over the vocabulary), ``output`` (column over the vocabulary,
    skipped when the embeddings are tied), ``enter`` (a norm whose output enters the TP region),
    ``enter_input`` (a cell whose input enters the TP region), ``sequence`` (a replicated cell that
    runs on sequence shards under sequence parallelism, so its gradients are partial sums there),
    ``full_sequence`` (under sequence parallelism, a cell that runs replicated on the whole
    sequence: its input is gathered, its first output cut back to this rank's part; the entries
    under its path are applied without sequence parallelism)."""

    model: Tuple[Tuple[str, str], ...]         #: (path from the model, style), applied first
    layer: Tuple[Tuple[str, str], ...]         #: (path inside each decoder layer, style), in order
    #: (marker path, entries): after ``layer``, the entries of the first variant whose marker path
    #: the layer has (e.g. MoE layers vs dense layers)
    layer_variants: Tuple[Tuple[str, Tuple[Tuple[str, str], ...]], ...] = ()
    divided: Tuple[str, ...] = ()              #: per-layer attributes counting heads, divided by TP
    partial_grads: Tuple[str, ...] = ()        #: replicated parameters (if the layer has them) whose
    #: gradient is a partial sum on each rank (e.g. qk-norm weights: each rank sees only its heads)
    divisible: Tuple[str, ...] = ()            #: config fields the TP size must divide
    vocab_parallel_loss: bool = True           #: the loss reads vocabulary-split logits


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: Tuple[str, ...]               #: HF ``model_type`` values that select the family
    config_class: type
    model_class_path: str                      #: ``module:Class`` of the Cell (imported on build)
    adapt_fields: Callable                     #: (model_type, data, kwargs, source) -> dataclass kwargs
    parameter_breakdown: Callable              #: config -> {"main", "mtp", "total", ...}
    attention_shape: Callable                  #: config -> (layers, heads, d_qk, d_v)
    hf_architectures: Dict[str, str]           #: model_type -> HF ``architectures`` entry
    hf_copies: Callable = lambda config: {}    #: config -> {HF-only copy name: our tensor it copies}
    tensor_parallel_plan: Optional[TensorParallelPlan] = None

    def model_class(self):
        module, name = self.model_class_path.split(":")
        return getattr(importlib.import_module(module), name)
