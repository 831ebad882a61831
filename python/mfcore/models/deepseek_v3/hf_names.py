"""Hugging Face names of DeepSeek-V3 beyond the 1:1 parameter names: the MTP modules share the
embedding and the output head, of which Hugging Face's checkpoint keeps per-module copies
(``model.layers.{L+k}.embed_tokens.weight``, ``...shared_head.head.weight``): written on export,
not read back."""

ARCHITECTURES = {"deepseek_v3": "DeepseekV3ForCausalLM"}


def hf_copies(config):
    """``{HF copy name: our tensor it duplicates}`` for the MTP modules."""
    copies = {}
    for k in range(config.num_nextn_predict_layers):
        base = f"model.layers.{config.num_hidden_layers + k}"
        copies[f"{base}.embed_tokens.weight"] = "model.embed_tokens.weight"
        copies[f"{base}.shared_head.head.weight"] = "lm_head.weight"
    return copies
