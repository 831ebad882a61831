"""`mf-preprocess`: Tokenise raw text (JSONL, JSONL.zst/.gz, plain text, wikitext *.tokens) with a Hugging Face tokenizer.json into Megatron .bin/.idx datasets.

``mf-preprocess train-tokenizer ...`` trains a byte-level BPE ``tokenizer.json`` on the same inputs.
"""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main

DESCRIPTION = ("Tokenise raw text (JSONL, JSONL.zst/.gz, plain text, wikitext *.tokens) with a Hugging Face "
               "tokenizer.json into Megatron .bin/.idx datasets ({prefix}_{key}_document.bin/.idx). "
               "Run 'mf-preprocess train-tokenizer --help' to train a byte-level BPE tokenizer first.")


def _add_input_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input")
    g.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="files, directories or globs (.jsonl/.json, .zst/.gz compressed, text, wikitext *.tokens)")
    g.add_argument("--json-keys", nargs="+", default=["text"], metavar="KEY",
                   help="JSON keys to tokenise, one dataset per key (default: text)")
    g.add_argument("--input-format", choices=["auto", "jsonl", "text", "wikitext"], default="auto",
                   help="input format; auto guesses from the file name (default)")
    g.add_argument("--text-documents", choices=["line", "paragraph"], default="line",
                   help="plain text: one document per line (default) or per blank-line separated paragraph")
    g.add_argument("--wikitext-headings", choices=["drop", "keep"], default="drop",
                   help="wikitext: drop (default) or keep the ' = Heading = ' lines inside articles")
    g.add_argument("--invalid-utf8", choices=["error", "replace"], default="error",
                   help="invalid UTF-8: stop with an error (default) or replace with U+FFFD and count")
    g.add_argument("--skip-bad-lines", action="store_true",
                   help="skip malformed JSON lines (counted in the summary) instead of stopping")


def _add_tokenize_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tokenisation and output")
    g.add_argument("--output-prefix", required=True, help="output path prefix")
    g.add_argument("--tokenizer", required=True, metavar="TOKENIZER_JSON", help="a Hugging Face tokenizer.json")
    g.add_argument("--append-eod", action="store_true", help="append the end-of-document id to every document")
    g.add_argument("--eod-id", type=int, default=None, help="EOD id (default: the tokenizer's end token)")
    g.add_argument("--add-special-tokens", action="store_true",
                   help="let the tokenizer's post-processor add its special tokens (e.g. BOS) to each document")
    g.add_argument("--dtype", choices=["auto", "uint16", "int32"], default="auto",
                   help="token dtype; auto = uint16 below 65,500 tokens of vocabulary, else int32")
    g.add_argument("--seq-length", type=int, default=None, help="block length for --pack (blocks hold N + 1 tokens)")
    g.add_argument("--pack", choices=["none", "stitch", "pad"], default="none",
                   help="stitch: concatenate documents into full N+1 blocks; pad: pad each document's blocks")
    g.add_argument("--pad-id", type=int, default=None, help="pad id for --pack pad (default: pad or EOD token)")
    g.add_argument("--output-format", choices=["megatron", "mindrecord"], default="megatron",
                   help="megatron .bin/.idx (default) or MindRecord (needs --seq-length and --pack)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=1, help="tokenising processes (output is identical for any)")
    g.add_argument("--threads-per-worker", type=int, default=None,
                   help="tokenizer threads per worker (default: 1 with the native backend, "
                        "else CPUs / workers)")
    g.add_argument("--chunk-mb", type=float, default=None,
                   help="input MiB per chunk / partial dataset (default: input size / 64, within 1..64)")
    g.add_argument("--tokenizer-backend", choices=["auto", "native", "hf"], default="auto",
                   help="auto (default): the native C++ byte-level BPE engine when it supports the tokenizer "
                        "(same ids, several times faster), else Hugging Face tokenizers; native: require it; "
                        "hf: always tokenizers")
    g.add_argument("--no-split-long", action="store_true",
                   help="never cut long documents for load balancing (ids are the same either way)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its finished chunks")
    g.add_argument("--allow-empty", action="store_true",
                   help="write an empty dataset for an input without documents (default: an error)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-preprocess", description=DESCRIPTION)
    _add_input_args(p)
    _add_tokenize_args(p)
    _add_run_args(p)
    return p


def build_train_tokenizer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-preprocess train-tokenizer",
                                description="Train a byte-level BPE tokenizer.json (with an <|endoftext|> EOD token).")
    _add_input_args(p)
    p.add_argument("--vocab-size", type=int, required=True, help="vocabulary size, special tokens included")
    p.add_argument("--output", required=True, help="where to write tokenizer.json")
    p.add_argument("--min-frequency", type=int, default=2, help="minimum pair count for a merge (default 2)")
    return p


def _config(args: argparse.Namespace):
    from mfcore.data.preprocess.pipeline import PreprocessConfig
    from mfcore.data.preprocess.readers import ReaderOptions

    reader = ReaderOptions(args.input_format, args.text_documents, args.wikitext_headings)
    return PreprocessConfig(
        inputs=args.input, output_prefix=args.output_prefix, tokenizer=args.tokenizer,
        json_keys=tuple(args.json_keys), append_eod=args.append_eod, eod_id=args.eod_id, dtype=args.dtype,
        workers=args.workers, threads_per_worker=args.threads_per_worker, chunk_mb=args.chunk_mb,
        reader=reader, invalid_utf8=args.invalid_utf8, skip_bad_lines=args.skip_bad_lines,
        seq_length=args.seq_length, pack=args.pack, pad_id=args.pad_id, output_format=args.output_format,
        add_special_tokens=args.add_special_tokens, split_long=not args.no_split_long,
        tokenizer_backend=args.tokenizer_backend, resume=args.resume, allow_empty=args.allow_empty,
        progress=False if args.no_progress else None)


def _train_tokenizer(argv: Sequence[str]) -> int:
    from mfcore.data.preprocess.readers import ReaderOptions
    from mfcore.data.preprocess.train_tokenizer import train_tokenizer

    args = build_train_tokenizer_parser().parse_args(argv)
    reader = ReaderOptions(args.input_format, args.text_documents, args.wikitext_headings)
    info = train_tokenizer(args.input, args.output, args.vocab_size, reader, tuple(args.json_keys),
                           args.min_frequency, args.invalid_utf8, args.skip_bad_lines)
    print(info)
    return 0


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train-tokenizer":
        return _train_tokenizer(argv[1:])
    from mfcore.data.preprocess.pipeline import run

    summary = run(_config(build_parser().parse_args(argv)))
    print(summary)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
