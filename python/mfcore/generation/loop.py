"""``generate``: prompts in, completions out, one compiled prefill and one compiled decode step per
token, streaming each row's new text to a callback as soon as it is known."""
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from mfcore.errors import ConfigError
from mfcore.generation.decoder import CachedDecoder
from mfcore.generation.sampling import Sampler, SamplingOptions


@dataclass
class Completion:
    """One prompt's result: the new text (up to a stop string), its token ids, and why it ended
    (``"eod"``, ``"stop"`` — a stop string —, or ``"length"``)."""
    prompt: Union[str, List[int]]
    text: str = ""
    tokens: List[int] = field(default_factory=list)
    finish_reason: str = "length"


class _Row:
    """Decoding state of one prompt: its tokens so far and the text already streamed."""

    def __init__(self, prompt, tokenizer, stop, on_text, index):
        self.completion = Completion(prompt)
        self.tokenizer, self.stop, self.on_text, self.index = tokenizer, stop, on_text, index
        self.done = False

    def add(self, token: int, eod_id: Optional[int]) -> None:
        if self.done:
            return
        if eod_id is not None and token == eod_id:
            self.finish("eod")
            return
        self.completion.tokens.append(token)
        if self.tokenizer is None:
            return
        text = self.tokenizer.decode(self.completion.tokens)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self._emit(text[:cut])
            self.finish("stop")
        elif not text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
            self._emit(text)

    def _emit(self, text: str) -> None:
        new = text[len(self.completion.text):] if text.startswith(self.completion.text) else ""
        self.completion.text = text
        if new and self.on_text is not None:
            self.on_text(self.index, new)

    def finish(self, reason: str) -> None:
        self.done = True
        self.completion.finish_reason = reason


def _encode(tokenizer, prompts):
    if isinstance(prompts, str):
        prompts = [prompts]
    encoded = []
    for p in prompts:
        if isinstance(p, str):
            if tokenizer is None:
                raise ConfigError("text prompts need a tokenizer (or pass lists of token ids)")
            p = tokenizer.encode(p).ids
        encoded.append([int(t) for t in p])
    return list(prompts), encoded


def generate(model, tokenizer, prompts, max_new_tokens: int = 64, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: Optional[int] = None,
             eod_id: Optional[int] = None, stop: Sequence[str] = (),
             on_text: Optional[Callable[[int, str], None]] = None) -> List[Completion]:
    """Continue each prompt (text, or a list of token ids) by up to ``max_new_tokens`` tokens.

    ``tokenizer``: a ``tokenizers.Tokenizer`` (None when prompts are token ids); ``temperature=0``
    is greedy; ``eod_id`` ends a row (default: the model config's ``eos_token_id``), as does any
    of ``stop`` in the decoded text (cut off there); ``on_text(row, text)`` receives new text as it
    is decoded. The model runs in two compiled graphs with a key/value cache.
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    sampler = Sampler(SamplingOptions(temperature, top_k, top_p, seed))
    texts, encoded = _encode(tokenizer, prompts)
    if eod_id is None:
        eos = getattr(model.config, "eos_token_id", None)
        eod_id = eos[0] if isinstance(eos, (list, tuple)) else eos
    rows = [_Row(t, tokenizer, list(stop), on_text, i) for i, t in enumerate(texts)]
    was_training = model.training
    model.set_train(False)
    try:
        decoder = CachedDecoder(model)
        logits = decoder.prefill(encoded, max_new_tokens)
        for step in range(max_new_tokens):
            tokens = sampler(logits)
            for row, token in zip(rows, tokens):
                row.add(int(token), eod_id)
            if all(r.done for r in rows) or step == max_new_tokens - 1:
                break
            logits = decoder.step(tokens)
    finally:
        model.set_train(was_training)
    return [r.completion for r in rows]
