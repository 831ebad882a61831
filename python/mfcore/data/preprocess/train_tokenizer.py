"""Training a byte-level BPE ``tokenizer.json`` on a corpus, for users (and the demo) that have none.

GPT-2 style: the ByteLevel pre-tokenizer with its regex and no prefix space, every byte in the
initial alphabet (so any text encodes, nothing is unknown), and ``<|endoftext|>`` as the EOD token so
``mf-preprocess --append-eod`` works with the result.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence, Tuple

from mfcore.data.preprocess.errors import OutputError, PreprocessError
from mfcore.io.atomic import atomic_path
from mfcore.data.preprocess.readers import CorpusReader, ReaderOptions
from mfcore.data.preprocess.worker import ChunkStats, EncodeOptions, decode_record

EOD_TOKEN = "<|endoftext|>"
MIN_VOCAB = 256 + 1  # the byte alphabet plus the EOD token


def corpus_texts(inputs: Sequence[str], reader_options: ReaderOptions, keys: Tuple[str, ...],
                 invalid_utf8: str = "error", skip_bad_lines: bool = False) -> Iterator[str]:
    """Every non-empty document text of the inputs, read as ``mf-preprocess`` reads them."""
    options = EncodeOptions(tokenizer="", keys=keys, invalid_utf8=invalid_utf8, skip_bad_lines=skip_bad_lines)
    stats = ChunkStats()
    for record in CorpusReader(inputs, reader_options):
        fields = decode_record(record, options, stats)
        for text in fields or ():
            if text.strip():
                yield text


def build_trainable(vocab_size: int, min_frequency: int = 2):
    """An untrained byte-level BPE tokenizer and its trainer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOD_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return tok, trainer


def train_tokenizer(inputs: Sequence[str], output: str, vocab_size: int,
                    reader_options: ReaderOptions = ReaderOptions(), keys: Tuple[str, ...] = ("text",),
                    min_frequency: int = 2, invalid_utf8: str = "error", skip_bad_lines: bool = False) -> str:
    """Trains on the inputs and writes ``output``; returns a one-line description."""
    if vocab_size < MIN_VOCAB:
        raise PreprocessError(f"--vocab-size must be at least {MIN_VOCAB} (256 bytes + {EOD_TOKEN}), got {vocab_size}")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise OutputError(f"{directory}: output directory does not exist or is not writable")
    tok, trainer = build_trainable(vocab_size, min_frequency)
    tok.train_from_iterator(corpus_texts(inputs, reader_options, keys, invalid_utf8, skip_bad_lines), trainer)
    with atomic_path(output) as tmp:
        tok.save(tmp)
    return (f"wrote {output}: byte-level BPE, {tok.get_vocab_size():,} tokens, "
            f"EOD {EOD_TOKEN} = {tok.token_to_id(EOD_TOKEN)}")
