"""mfcore: an LLM pretraining framework for MindSpore.

Data flows one way: raw text -> ``mf-preprocess`` -> Megatron ``.bin/.idx`` -> the C++ sample engine
(``mfcore._core``) -> batches -> model -> optimizer -> checkpoints. Subpackages:

- ``mfcore.data``        indexed datasets, GPT samples, samplers, loaders, preprocessing
- ``mfcore.models``      Llama and DeepSeek-V3 as MindSpore Cells
- ``mfcore.parallel``    process groups, collectives, tensor parallel, optimizer sharding
- ``mfcore.train``       config, compiled step, optimizer, schedules, monitoring, the loop
- ``mfcore.checkpoint``  sharded safetensors checkpoints, resume, Hugging Face interchange
- ``mfcore.generation``  text from a trained model (KV cache, sampling): ``mfcore.generate``
- ``mfcore.cli``         the ``mf-*`` commands (parse and call, nothing else)
"""

__version__ = "0.1.0"


def core_version() -> str:
    """Version of the compiled C++ core (imports the extension lazily)."""
    from mfcore import _core

    return _core.core_version()


def generate(model, tokenizer, prompts, **kwargs):
    """Continue ``prompts`` with ``model``: see :func:`mfcore.generation.generate` (imported on first
    use, since it needs MindSpore)."""
    from mfcore.generation import generate as _generate

    return _generate(model, tokenizer, prompts, **kwargs)
