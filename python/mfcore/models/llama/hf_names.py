"""Hugging Face names of the Llama family: parameter names are HF's already (``model.layers.N.
self_attn.q_proj.weight``); only the ``architectures`` entry of ``config.json`` depends on the type."""

ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM"}
