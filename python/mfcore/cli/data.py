"""`mf-data`: inspect, check and merge Megatron indexed datasets (.bin/.idx).

    mf-data info PREFIX                         counts, dtype, length statistics and histogram
    mf-data check PREFIX                        full validation: exit 0 when valid, 1 with one line per problem
    mf-data merge OUT IN [IN ...]               concatenate datasets of one dtype
    mf-data show PREFIX --doc N [--tokenizer tokenizer.json]   a document's tokens, or its decoded text
"""
import argparse
import sys
from typing import Optional, Sequence

from mfcore.cli.common import run_main
from mfcore.errors import DataError

HISTOGRAM_WIDTH = 40


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mf-data", description="Inspect, check and merge Megatron indexed datasets (.bin/.idx).")
    sub = p.add_subparsers(dest="command", required=True)
    mm = dict(action="store_true", help="the index carries per-sequence modes (multimodal datasets)")
    info = sub.add_parser("info", help="documents, sequences, tokens, dtype, lengths and a length histogram")
    info.add_argument("prefix", help="dataset prefix (or its .bin/.idx path)")
    info.add_argument("--multimodal", **mm)
    check = sub.add_parser("check", help="validate everything; exit 1 and one line per problem if invalid")
    check.add_argument("prefix")
    check.add_argument("--multimodal", **mm)
    check.add_argument("--max-problems", type=int, default=20, help="stop after this many problems (default 20)")
    merge = sub.add_parser("merge", help="concatenate datasets of the same dtype into OUT")
    merge.add_argument("out", help="output prefix")
    merge.add_argument("inputs", nargs="+", help="input prefixes, in order")
    merge.add_argument("--multimodal", **mm)
    show = sub.add_parser("show", help="print one document's tokens, or its text with --tokenizer")
    show.add_argument("prefix")
    show.add_argument("--doc", type=int, required=True, help="document number (0-based)")
    show.add_argument("--tokenizer", help="a Hugging Face tokenizer.json to decode the tokens with")
    show.add_argument("--multimodal", **mm)
    return p


def _info(args) -> int:
    from mfcore.data import IndexedDataset
    from mfcore.data.indexed_info import summarize

    s = summarize(IndexedDataset(args.prefix, multimodal=args.multimodal))
    print(f"prefix     {s.prefix}")
    print(f"dtype      {s.dtype}")
    print(f"documents  {s.documents:,}")
    print(f"sequences  {s.sequences:,}")
    print(f"tokens     {s.tokens:,}  ({s.bin_bytes / 2**20:,.1f} MiB)")
    print(f"length     min {s.min_length:,}  mean {s.mean_length:,.1f}  max {s.max_length:,}")
    if s.modes:
        print("modes      " + "  ".join(f"{mode}: {count:,}" for mode, count in s.modes))
    if s.histogram:
        print("length histogram (tokens per sequence)")
        top = max(count for _, count in s.histogram) or 1
        for (low, high), count in s.histogram:
            label = "0" if high == 1 else f"[{low}, {high})"
            print(f"  {label:>20}  {count:>12,}  {'#' * round(HISTOGRAM_WIDTH * count / top)}")
    return 0


def _check(args) -> int:
    from mfcore.data import IndexedDataset, check_dataset

    problems = check_dataset(args.prefix, multimodal=args.multimodal, max_problems=args.max_problems)
    for line in problems:
        print(line)
    if problems:
        return 1
    ds = IndexedDataset(args.prefix, multimodal=args.multimodal)
    print(f"ok: {ds.prefix}: {ds.num_documents:,} documents, {len(ds):,} sequences, {ds.num_tokens:,} {ds.dtype.name} tokens")
    return 0


def _merge(args) -> int:
    from mfcore.data import IndexedDataset, merge_datasets

    merge_datasets(args.out, args.inputs, multimodal=args.multimodal)
    ds = IndexedDataset(args.out, multimodal=args.multimodal)
    print(f"merged {len(args.inputs)} datasets into {ds.prefix}: {ds.num_documents:,} documents, "
          f"{len(ds):,} sequences, {ds.num_tokens:,} tokens")
    return 0


def _load_tokenizer(path: str):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises a bare Exception for missing or malformed files
        raise DataError(f"{path}: cannot load tokenizer: {e}") from e


def _show(args) -> int:
    from mfcore.data import IndexedDataset

    ds = IndexedDataset(args.prefix, multimodal=args.multimodal)
    if not 0 <= args.doc < ds.num_documents:
        raise DataError(f"{ds.prefix}: --doc {args.doc} out of range (dataset has {ds.num_documents} documents)")
    tokens = ds.get_document(args.doc)
    if args.tokenizer:
        print(_load_tokenizer(args.tokenizer).decode(tokens.astype("int64").tolist(), skip_special_tokens=False))
    else:
        print(" ".join(str(t) for t in tokens.tolist()))
    return 0


COMMANDS = {"info": _info, "check": _check, "merge": _merge, "show": _show}


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
