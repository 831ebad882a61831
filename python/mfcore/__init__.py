"""mfcore: an LLM pretraining framework for MindSpore.

Data flows one way: raw text -> ``mf-preprocess`` -> Megatron ``.bin/.idx`` -> the C++ sample engine
(``mfcore._core``) -> batches -> model -> optimizer -> checkpoints. Subpackages:

- ``mfcore.io``          safetensors, atomic writes, paths contained in their directory
- ``mfcore.data``        indexed datasets, GPT samples, MindRecord, samplers, loaders, preprocessing
- ``mfcore.models``      Llama and DeepSeek-V3 as MindSpore Cells, one folder per family
- ``mfcore.config``      the run config: schema, YAML loading and overrides, checks
- ``mfcore.plan``        memory and step time of a parallel layout, layouts that fit
- ``mfcore.optim``       the AdamW update shared by the dense and ZeRO-1 optimizers
- ``mfcore.parallel``    process groups, collectives, tensor/pipeline parallel, optimizer sharding
- ``mfcore.checkpoint``  sharded safetensors checkpoints, resume, Hugging Face interchange
- ``mfcore.train``       compiled step, schedules, monitoring, held-out evaluation, the loop
- ``mfcore.generation``  text from a trained model (KV cache, sampling): ``mfcore.generate``
- ``mfcore.launch``      ``mf-launch``'s msrun driver
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
