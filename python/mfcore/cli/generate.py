"""`mf-generate`: continue prompts with a trained model (training checkpoint or Hugging Face dir).

    mf-generate -c CHECKPOINT_OR_HF_DIR --tokenizer tokenizer.json --prompt "Once upon a time"
    mf-generate -c ... --tokenizer ... --prompts-file prompts.txt      one prompt per line, batched
    sampling: --temperature T --top-k K --top-p P --seed S (greedy when --temperature is 0)
    ending:   --max-new-tokens N, the end-of-document token, --stop STRING (repeatable)

One prompt streams its continuation to the terminal token by token; a batch prints one block per
prompt when all are done.
"""
import argparse
import sys
from typing import List, Optional, Sequence

from mfcore.cli.common import run_main
from mfcore.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-generate", description="Continue prompts with a trained model "
                                "(mfcore training checkpoint, any parallel layout, or a Hugging Face directory).")
    p.add_argument("-c", "--checkpoint", required=True, metavar="CHECKPOINT_DIR_OR_HF_DIR",
                   help="a checkpoint step directory, a run's checkpoint root (newest valid step), "
                   "or a Hugging Face model directory")
    p.add_argument("--tokenizer", required=True, help="the tokenizer.json the model was trained with")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    src.add_argument("--prompts-file", help="a text file with one prompt per line (batched)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per prompt (default 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--seed", type=int, help="seed of the sampler (same seed, same text)")
    p.add_argument("--stop", action="append", default=[], metavar="STRING",
                   help="end a continuation where this text appears (repeatable; \\n and \\t are "
                   "a newline and a tab)")
    p.add_argument("--eod-id", type=int, help="end-of-document token id (default: the tokenizer's)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="compute dtype")
    return p


def read_prompts(args) -> List[str]:
    if args.prompt:
        return list(args.prompt)
    try:
        with open(args.prompts_file, encoding="utf-8") as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    except OSError as e:
        raise ConfigError(f"{args.prompts_file}: cannot read prompts ({e.strerror})") from None
    if not prompts:
        raise ConfigError(f"{args.prompts_file}: no prompts (one per line expected)")
    return prompts


def eod_of(tokenizer, path: str, given: Optional[int]) -> Optional[int]:
    """``--eod-id``, else the tokenizer's end token, else the model config's ``eos_token_id``."""
    from mfcore.data.preprocess.encode import find_eod_id
    from mfcore.data.preprocess.errors import TokenizerError
    try:
        return find_eod_id(tokenizer, path, given)
    except TokenizerError:
        if given is not None:
            raise
        return None  # generate() falls back to the model config


def stop_strings(given: Sequence[str]) -> List[str]:
    """``--stop`` values with ``\\n`` and ``\\t`` read as a newline and a tab (hard to type in a shell)."""
    out = [s.replace("\\n", "\n").replace("\\t", "\t") for s in given]
    if any(not s for s in out):
        raise ConfigError("--stop needs a non-empty string")
    return out


def _stream(row: int, text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    prompts = read_prompts(args)
    from mfcore.data.preprocess.encode import load_tokenizer
    from mfcore.generation import SamplingOptions, generate, load_model
    SamplingOptions(args.temperature, args.top_k, args.top_p, args.seed)  # bad values fail before loading
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    tokenizer = load_tokenizer(args.tokenizer)
    model = load_model(args.checkpoint, args.dtype)
    single = len(prompts) == 1
    if single:
        sys.stdout.write(prompts[0])
        sys.stdout.flush()
    out = generate(model, tokenizer, prompts, args.max_new_tokens, args.temperature, args.top_k,
                   args.top_p, args.seed, eod_of(tokenizer, args.tokenizer, args.eod_id),
                   stop_strings(args.stop), _stream if single else None)
    if single:
        print()
    else:
        for i, c in enumerate(out):
            print(f"--- [{i}] {c.finish_reason}\n{c.prompt}{c.text}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
