"""mfcore.generation: text from a trained model, with a key/value cache.

- ``generate(model, tokenizer, prompts, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0,
  seed=None, eod_id=None, stop=(), on_text=None)`` → list of :class:`Completion`
- ``load_model(path)``: a training checkpoint (any parallel layout, merged on load) or a Hugging
  Face directory → the model in evaluation mode
- :class:`CachedDecoder`: the two compiled graphs (prefill, one-token decode) and their caches,
  for Llama (per-head keys/values, GQA) and DeepSeek-V3 (MLA: compressed latent + rotary key)
"""
from mfcore.generation.decoder import CachedDecoder
from mfcore.generation.loading import load_model
from mfcore.generation.loop import Completion, generate
from mfcore.generation.sampling import Sampler, SamplingOptions

__all__ = ["CachedDecoder", "Completion", "Sampler", "SamplingOptions", "generate", "load_model"]
