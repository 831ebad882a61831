"""Building blocks shared by the model families (composable, torchtitan style).

Parallelism is applied from outside: it replaces :class:`Linear` instances held as Hugging Face named
attributes and divides the head counts that attention reads at construct time.
"""
from mfcore.models.layers.attention import Attention, AttentionMask, CoreAttention, use_flash_attention
from mfcore.models.layers.head_loss import ChunkedHeadLoss
from mfcore.models.layers.linear import Embedding, GroupedLinear, Linear
from mfcore.models.layers.loss import MaskedCrossEntropySum
from mfcore.models.layers.mlp import MLP, SwiGLU
from mfcore.models.layers.norm import RMSNorm
from mfcore.models.layers.rope import Rotate, RotaryEmbedding, inverse_frequencies

__all__ = ["Attention", "AttentionMask", "ChunkedHeadLoss", "CoreAttention", "Embedding", "GroupedLinear", "Linear",
           "MLP", "MaskedCrossEntropySum", "RMSNorm", "Rotate", "RotaryEmbedding", "SwiGLU",
           "inverse_frequencies", "use_flash_attention"]
