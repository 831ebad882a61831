"""Raw text to Megatron indexed datasets: readers, tokenisation with safe cuts, packing, the pipeline.

``run(PreprocessConfig(...))`` is what ``mf-preprocess`` calls; the modules, in data-flow order:
``readers`` (inputs → raw records), ``cutrule`` + ``regex_analysis`` (where long documents may be
cut), ``encode`` (tokenizer, EOD, batch encoding), ``worker`` (a chunk → partial datasets),
``state`` (resume), ``packing`` + ``assemble`` + ``mindrecord`` (final outputs), ``progress``,
``pipeline``; ``train_tokenizer`` and ``demo_corpus`` serve users without a tokenizer or a corpus.
"""
from mfcore.data.preprocess.errors import InputError, OutputError, PreprocessError, TokenizerError

__all__ = ["InputError", "OutputError", "PreprocessError", "TokenizerError"]
