"""Pipeline bubble on 2 stages (msrun on loopback): the measured idle share of each stage beside
the theory ``(P - 1) / (m + P - 1)`` for 1F1B with m = 2, 4 and 8 micro batches (and, with
``--interleaved``, V = 2 beside the theory divided by V).

Each point is one ``mf-launch --nproc-per-node 2 -- mf-train ... parallel.pipeline=2`` run of
tiny-llama3 (4 decoder layers, synthetic data); the trainer logs ``pipeline_bubble`` (idle share =
1 - time in stage graphs / time of the schedule, per stage) every step, averaged here over the
steps after the first (which compiles). On CPU, point-to-point is an AllReduce in the pair group,
so the measured share also holds the transfer time; the theory counts compute only.

usage: python benchmarks/bench_pipeline.py [--steps 6] [--interleaved]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ("model.overrides={vocab_size: 256, hidden_size: 128, intermediate_size: 256, num_hidden_layers: 4, "
         "num_attention_heads: 4, num_key_value_heads: 2}")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(work: Path, micro: int, chunks: int, steps: int) -> list:
    out = work / f"m{micro}_v{chunks}"
    args = ["--config", "tiny-llama3", MODEL, f"data.prefixes=[{work / 'syn_text_document'}]",
            f"data.cache_dir={work / 'cache'}", f"run.output_dir={out}", "data.seq_length=64",
            f"training.global_batch_size={2 * micro}", "training.micro_batch_size=2",
            f"training.train_steps={steps}", "training.eval_interval=0", "logging.log_interval=1",
            "logging.progress_bar=never", "checkpoint.save_interval=0", "checkpoint.resume=none",
            "parallel.pipeline=2", f"parallel.virtual_stages={chunks}"]
    cmd = [sys.executable, "-m", "mfcore.cli.launch", "--master-port", str(_port()), "--log-dir",
           str(work / f"logs_m{micro}_v{chunks}"), "--nproc-per-node", "2", "--", *args]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "GLOG_v": "3"})
    if proc.returncode != 0:
        raise SystemExit(f"run m={micro} V={chunks} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"pipeline_bubble"' in line]
    later = [r for r in rows if r["step"] > 1] or rows
    stages = [sum(r["pipeline_bubble"][s] for r in later) / len(later) for s in range(2)]
    return [later[-1]["pipeline_bubble_theory"], *stages, sum(r["step_time"] for r in later) / len(later)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--interleaved", action="store_true", help="also V=2 (interleaved 1F1B)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.synthetic_data import write_pattern_corpus
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pattern_corpus(work / "syn_text_document")
        print(f"{'schedule':<16}{'m':>3}{'theory':>9}{'stage 0':>9}{'stage 1':>9}{'step ms':>9}")
        for chunks in ((1, 2) if args.interleaved else (1,)):
            for micro in (2, 4, 8):
                theory, s0, s1, step = _run(work, micro, chunks, args.steps)
                name = "1F1B" if chunks == 1 else f"interleaved V={chunks}"
                print(f"{name:<16}{micro:>3}{theory:>9.3f}{s0:>9.3f}{s1:>9.3f}{step * 1e3:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
