"""The README's demo: the whole pretraining journey on a tiny embedded default, in a few minutes.

Every stage runs the very command a user would type (``mf-preprocess``, ``mf-data``, ``mf-train``,
``mf-ckpt``) as a subprocess, so the demo cannot drift from the documented workflow:

1. write a small English corpus from text found on every machine (the Python standard library)
2. train a 4k byte-level BPE ``tokenizer.json`` on it
3. tokenise it into a Megatron ``.bin/.idx`` dataset (2 workers)
4. train the tiny Llama 3 for a while, saving checkpoints, until the loss has clearly fallen
5. resume from the newest checkpoint and train a few more steps
6. export the weights in Hugging Face layout and render the loss curves to a PNG
7. generate a line of text from the trained checkpoint (``mf-generate``: KV cache, sampling)

    python -m mfcore.demo [--out demo_output] [--steps 120] [--resume-steps 20]
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

CONFIG = "tiny-llama3"
PROMPT = "The function returns"  # mid-sentence: the corpus is Python docs, full of blank lines


def run(stage: str, args: Sequence[str], cwd: Path) -> None:
    """Run one ``mfcore.cli`` command in a subprocess; stop the demo with its output if it fails."""
    print(f"\n=== {stage}\n$ {shlex.join(args)}", flush=True)
    module = {"mf-preprocess": "preprocess", "mf-data": "data", "mf-train": "train", "mf-ckpt": "ckpt",
              "mf-generate": "generate"}
    cmd = [sys.executable, "-m", f"mfcore.cli.{module[args[0]]}", *args[1:]]
    env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        sys.exit(f"demo: stage '{stage}' failed with exit code {proc.returncode}")
    print(f"--- {stage}: {time.perf_counter() - started:.1f} s", flush=True)


def losses(output_dir: Path) -> List[float]:
    """Training losses logged to ``metrics.jsonl``, in order."""
    path = output_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if "loss" in r and r.get("split", "train") == "train"]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m mfcore.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_output", help="where every artefact goes (default: demo_output)")
    p.add_argument("--steps", type=int, default=120, help="training steps of the first run (default 120)")
    p.add_argument("--resume-steps", type=int, default=20, help="extra steps after resuming (default 20)")
    p.add_argument("--corpus-mb", type=float, default=4.0, help="size of the generated corpus (default 4 MiB)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    # The shipped tiny configs read their data from demo_output/ relative to the working directory.
    workdir = out.parent
    rel = out.name
    (out / "data").mkdir(parents=True, exist_ok=True)
    corpus, tokenizer, prefix = f"{rel}/corpus.jsonl", f"{rel}/tokenizer.json", f"{rel}/data/demo"
    train_dir = f"{rel}/train_tiny_llama3"
    common = [f"run.output_dir={train_dir}", f"data.prefixes=[{prefix}_text_document]",
              f"data.cache_dir={rel}/data/cache"]

    from mfcore.data.preprocess.demo_corpus import write_demo_corpus

    # The demo owns its output directory and starts over: mf-train refuses to start a fresh run
    # beside an earlier run's checkpoints, and export-hf to replace a directory it did not mark.
    for earlier in (workdir / train_dir, out / "hf_model"):
        shutil.rmtree(earlier, ignore_errors=True)

    print(f"=== corpus\nwriting ~{args.corpus_mb} MiB of text to {out / 'corpus.jsonl'}")
    stats = write_demo_corpus(str(workdir / corpus), args.corpus_mb)
    print(f"{stats['documents']} documents, {stats['bytes'] / 2**20:.1f} MiB")

    run("tokenizer", ["mf-preprocess", "train-tokenizer", "--input", corpus, "--vocab-size", "4096",
                      "--output", tokenizer], workdir)
    run("preprocess", ["mf-preprocess", "--input", corpus, "--output-prefix", prefix, "--tokenizer",
                       tokenizer, "--append-eod", "--workers", "2", "--no-progress"], workdir)
    run("inspect", ["mf-data", "info", f"{prefix}_text_document"], workdir)
    run("train", ["mf-train", "--config", CONFIG, "--resume", "none", *common,
                  f"training.train_steps={args.steps}", f"checkpoint.save_interval={args.steps}"], workdir)
    first = losses(workdir / train_dir)
    total = args.steps + args.resume_steps
    run("resume", ["mf-train", "--config", CONFIG, "--resume", "auto", *common,
                   f"training.train_steps={total}", f"checkpoint.save_interval={total}"], workdir)
    run("export", ["mf-ckpt", "export-hf", f"{rel}/hf_model", "-c", f"{train_dir}/checkpoints"], workdir)
    run("plot", ["mf-train", "plot", train_dir, "--out", f"{rel}/loss_curves.png"], workdir)
    status = report(out, first, losses(workdir / train_dir))
    run("generate", ["mf-generate", "-c", f"{train_dir}/checkpoints", "--tokenizer", tokenizer,
                     "--prompt", PROMPT, "--max-new-tokens", "32", "--temperature", "0.7", "--top-k", "40",
                     "--seed", "1", "--stop", "\\n"], workdir)
    return status


def report(out: Path, first_run: List[float], all_losses: List[float]) -> int:
    """Check that the loss clearly fell and tell the user where everything went."""
    start, end = first_run[0], all_losses[-1]
    print("\n=== done")
    print(f"loss: {start:.3f} at the first logged step -> {end:.3f} after resuming")
    artefacts = [("corpus", "corpus.jsonl"), ("tokenizer", "tokenizer.json"),
                 ("dataset", "data/demo_text_document.{bin,idx}"), ("run (config, logs, metrics, "
                 "TensorBoard)", "train_tiny_llama3/"), ("checkpoints", "train_tiny_llama3/checkpoints/"),
                 ("Hugging Face export", "hf_model/"), ("loss curves", "loss_curves.png")]
    for what, rel in artefacts:
        print(f"  {what:<40} {out / rel}")
    if not end < 0.8 * start:
        print(f"demo: the loss did not clearly fall ({start:.3f} -> {end:.3f})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
