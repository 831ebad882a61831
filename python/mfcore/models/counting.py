"""Exact parameter counts and training FLOPs per token, computed from a config alone.

Counts match the Cells ``build_model`` creates (and Hugging Face's checkpoints). For DeepSeek-V3 the
multi-token-prediction (MTP) modules share the embedding and output head with the main model, so
they add only their own layers; Hugging Face's checkpoint stores copies of both, which
``parameter_breakdown(...)["hf_checkpoint"]`` includes.

FLOPs follow the PaLM / Megatron convention: ``6 * N_active`` over every matrix product a token goes
through (embedding lookup excluded, output head included) plus ``6 * s * heads * (d_qk + d_v)`` per
layer for attention scores and context, counted without halving for causality.
"""
from mfcore.models.config import load_model_config
from mfcore.models.registry import family_of


def parameter_breakdown(config):
    """``main``, ``mtp``, ``total`` (= the built model), ``hf_checkpoint``, ``active_matmul`` (matrix
    parameters one token's forward multiplies by, output head included) and ``embedding``."""
    c = load_model_config(config)
    return family_of(c).parameter_breakdown(c)


def count_parameters(config):
    """Exact number of parameters of the model ``build_model(config)`` creates (MTP included)."""
    return parameter_breakdown(config)["total"]


def flops_per_token(config, seq_length):
    """Training (forward + backward) FLOPs per token at ``seq_length`` (see module docstring)."""
    c = load_model_config(config)
    layers, heads, d_qk, d_v = family_of(c).attention_shape(c)
    attention = 6 * layers * seq_length * heads * (d_qk + d_v)
    return 6 * parameter_breakdown(c)["active_matmul"] + attention
