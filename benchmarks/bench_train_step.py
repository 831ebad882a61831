"""Training step of a Llama, side by side: PyTorch eager, torch.compile and mfcore, one process each.

Issue 24's table: for each size, every framework trains the IDENTICAL model (mfcore's seeded initial
weights, written with ``save_pretrained`` and loaded by all three: mfcore's ``from_pretrained`` and
``transformers.LlamaForCausalLM`` with PyTorch's ``sdpa`` attention) on the same batch, float32,
AdamW (betas 0.9/0.95, weight decay 0.1), gradient clipping at 1.0:

- ``tiny``: the shipped ``tiny-llama3`` (hidden 256, 4 layers, 8/4 heads, FFN 688, vocab 4096),
  batch 8 x seq 256;
- ``160m``: ``benchmarks/llama-160m.yaml`` (hidden 1024, 8 layers, 16/8 heads, FFN 2816, vocab 32k),
  batch 4 x seq 512 (slow on 2 cores: few steps).

Each framework runs in its own fresh process (never PyTorch beside MindSpore), one after the other,
for ``--rounds`` interleaved rounds; a process reports its tokens/s (median over its timed steps),
its peak RSS (``VmHWM``), its time to first step (process start to the end of the first step:
imports, model load, graph compile / torch.compile, first step) and its first loss (the three must
agree: same model, same batch). mfcore runs the trainer's step (``mfcore.train.step``: the graphs
``mf-train`` runs). The achieved fraction of the machine's fp32 GEMM peak uses the model FLOPs per
token (6 x matmul parameters + 12 x layers x hidden x seq, PaLM's count) against the best of a
large float32 MatMul timed in both frameworks in every round of the same run (each in its own
process). On a shared machine every figure moves with the load; read the ratios of one run, and
with several rounds the round-by-round ratios it prints (each against the same round's baseline,
so a slow spell of the host shifts both).

    .venv/bin/python benchmarks/bench_train_step.py [--sizes tiny,160m] [--rounds 3] [--steps 4]

PyTorch columns need ``torch`` and ``transformers`` (the ``bench`` extra: ``pip install -e .[bench]``);
without them the script says so and prints mfcore alone. ``--compare-plain`` adds mfcore without
our C++ CPU kernels (plain MindSpore ops). ``--peak-memory 0,512`` instead measures
mfcore's trainer step per ``training.loss_chunk_tokens`` value (one process each, peak after build,
after the first forward/backward and after ``--steps`` steps).
"""
import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"tiny": ("tiny-llama3", 8, 256), "160m": (os.path.join(HERE, "llama-160m.yaml"), 4, 512)}
FRAMEWORKS = ("pytorch eager", "torch.compile", "mfcore")
LR, CLIP = 1e-4, 1.0


def peak_gb() -> float:
    """This process's peak resident set (``VmHWM``) in GB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def make_batch(vocab, b, s, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (b, s + 1)).astype(np.int32)
    return {"tokens": tokens[:, :-1].copy(), "labels": tokens[:, 1:].copy(),
            "loss_mask": np.ones((b, s), np.float32)}


def timed_steps(step, args, t0):
    """First step (its end timed from the process start ``t0``), then ``--steps`` timed steps."""
    first_loss = step()
    first = time.time() - t0
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first_step_s": first, "step_s": statistics.median(times), "loss": first_loss, "peak_gb": peak_gb()}


# ---------------------------------------------------------------- workers (one process each)
def ms_setup(threads):
    import mindspore as ms
    from mfcore.train.trainer import host_blocking_run, use_threads
    host_blocking_run()   # as mf-train does on CPU
    ms.set_context(mode=ms.GRAPH_MODE)
    use_threads(threads)  # run.threads: MindSpore's kernels and ours
    return ms


def worker_export(args):
    """Seeded initial weights of the model, in Hugging Face layout (shared by all workers)."""
    ms = ms_setup(args.threads)
    from mfcore.models import build_model
    from mfcore.models.hf import save_pretrained
    ms.set_seed(0)
    model = build_model(args.model)
    save_pretrained(model, args.hf_dir)
    cfg = model.config
    matmul = sum(p.size for p in model.trainable_params() if len(p.shape) == 2 and "embed" not in p.name)
    return {"vocab": cfg.vocab_size, "flops_per_token": 6 * matmul + 12 * cfg.num_hidden_layers
            * cfg.hidden_size * args.seq}


def worker_mfcore(args):
    ms = ms_setup(args.threads)
    from mfcore.config.schema import TrainingSection
    from mfcore.models import set_loss_chunk_tokens
    from mfcore.models.hf import from_pretrained
    from mfcore.train.optim import AdamW
    from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens
    model = from_pretrained(args.hf_dir)
    set_loss_chunk_tokens(model, TrainingSection().loss_chunk_tokens)   # mf-train's default
    model.set_train(True)
    batch = make_batch(model.config.vocab_size, args.batch, args.seq)
    step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.1))
    keys, tokens = ("tokens", "labels", "loss_mask"), loss_tokens([batch])

    def run():
        out = forward_backward(step, [batch], keys, tokens, 1.0)
        apply_update(step, LR, out.grad_norm, CLIP, 1.0)
        return out.loss_sum / tokens

    return timed_steps(run, args, args.t0)


def worker_torch(args):
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    model = transformers.LlamaForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32,
                                                          attn_implementation="sdpa")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    forward = torch.compile(model) if args.worker == "torch.compile" else model
    batch = make_batch(model.config.vocab_size, args.batch, args.seq)
    ids, labels = (torch.tensor(batch[k], dtype=torch.long) for k in ("tokens", "labels"))

    def run():
        logits = forward(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return timed_steps(run, args, args.t0)


def worker_gemm(args, n=2048, repeats=8):
    """Best float32 GFLOP/s of an n x n x n MatMul in this framework."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    if args.worker == "gemm-torch":
        import torch
        torch.set_num_threads(args.threads)
        x = torch.from_numpy(a)
        run = lambda: torch.mm(x, x)  # noqa: E731
    else:
        ms = ms_setup(args.threads)
        x, matmul = ms.Tensor(a), ms.ops.MatMul()
        run = lambda: matmul(x, x).asnumpy()  # noqa: E731 (asnumpy: wait for the result)
    run()
    best = min(_seconds(run) for _ in range(repeats))
    return {"gflops": 2 * n ** 3 / best / 1e9}


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


WORKERS = {"export": worker_export, "mfcore": worker_mfcore, "mfcore plain": worker_mfcore,
           "pytorch eager": worker_torch, "torch.compile": worker_torch, "gemm-torch": worker_gemm,
           "gemm-ms": worker_gemm}


# ---------------------------------------------------------------- the driver (imports neither)
def spawn(worker, args, **extra):
    """Run ``worker`` in a fresh process; its last stdout line is a JSON record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--threads", str(args.threads),
           "--steps", str(args.steps), "--t0", repr(time.time())]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, GLOG_v="3")
    if worker == "mfcore plain":   # --compare-plain: the plain MindSpore layers, no C++ kernels
        env["MFCORE_CPU_KERNELS"] = "0"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker {worker} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_size(name, args, frameworks, gemm):
    """Interleaved rounds of every framework; each round also re-measures the GEMM peak (``gemm``:
    framework -> GFLOP/s list), since a shared machine's load moves between rounds."""
    model, batch, seq = SIZES[name]
    hf_dir = tempfile.mkdtemp(prefix="bench_train_step_")
    try:
        info = spawn("export", args, model=model, hf_dir=hf_dir, seq=seq)
        runs = {f: [] for f in frameworks}
        for _ in range(args.rounds if name == "tiny" else args.rounds_160m):
            for worker, values in gemm.items():
                values.append(spawn(worker, args)["gflops"])
            for f in frameworks:
                runs[f].append(spawn(f, args, hf_dir=hf_dir, batch=batch, seq=seq))
        return info, runs, batch * seq
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)


def print_table(name, info, runs, tokens, peak):
    model, batch, seq = SIZES[name]
    print(f"\n{os.path.basename(model)}: batch {batch} x seq {seq}, float32, {info['flops_per_token'] / 1e6:.0f} "
          f"MFLOP/token, {len(next(iter(runs.values())))} round(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'':15s} {'tokens/s':>9s} {'vs eager':>9s} {'vs compile':>11s} {'peak RSS GB':>12s} "
          f"{'1st step s':>11s} {'GEMM peak':>10s} {'first loss':>11s}")
    rate = {f: statistics.median(tokens / r["step_s"] for r in rs) for f, rs in runs.items()}
    for f, rs in runs.items():
        vs = [f"{rate[f] / rate[b]:.2f}x" if b in rate else "-" for b in FRAMEWORKS[:2]]
        frac = rate[f] * info["flops_per_token"] / (peak * 1e9)
        print(f"{f:15s} {rate[f]:9.0f} {vs[0]:>9s} {vs[1]:>11s} {max(r['peak_gb'] for r in rs):12.2f} "
              f"{statistics.median(r['first_step_s'] for r in rs):11.1f} {frac:10.0%} "
              f"{rs[0]['loss']:11.6f}")
    if len(runs.get("mfcore", ())) > 1:   # the same round's processes ran minutes apart at most
        for base in (f for f in FRAMEWORKS[:2] if f in runs):
            ratios = [theirs["step_s"] / ours["step_s"] for ours, theirs in zip(runs["mfcore"], runs[base])]
            print(f"mfcore / {base}, round by round: " + ", ".join(f"{r:.2f}x" for r in ratios)
                  + f" (median {statistics.median(ratios):.2f}x)")
    losses = [rs[0]["loss"] for rs in runs.values()]
    if max(losses) - min(losses) > 1e-3 * abs(losses[0]):
        print("warning: the first losses differ: the frameworks did not train the same model")


def main_table(args):
    have_torch = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
    frameworks = (FRAMEWORKS if have_torch else ("mfcore",)) + (("mfcore plain",) if args.compare_plain else ())
    if not have_torch:
        print("torch and/or transformers are not installed (pip install -e .[bench]): "
              "PyTorch columns skipped, mfcore alone")
    gemm = {"gemm-ms": []}
    if have_torch:
        gemm["gemm-torch"] = []
    for name in args.sizes.split(","):
        info, runs, tokens = measure_size(name, args, frameworks, gemm)
        peak = max(max(v) for v in gemm.values())
        print(f"\nfp32 GEMM peak so far (2048^3 MatMul, best of 8 per round, {args.threads} threads): "
              + ", ".join(f"{k[5:]} {max(v):.1f} GFLOP/s (rounds: {', '.join(f'{x:.0f}' for x in v)})"
                          for k, v in gemm.items()))
        print_table(name, info, runs, tokens, peak)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,160m", help="comma-separated: tiny, 160m")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds at the tiny size")
    ap.add_argument("--rounds-160m", type=int, default=1, help="interleaved rounds at 160M (slow)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per process, after the first")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="kernel threads, every framework")
    ap.add_argument("--compare-plain", action="store_true",
                    help="also run mfcore without its C++ CPU kernels (MFCORE_CPU_KERNELS=0)")
    ap.add_argument("--peak-memory", metavar="CHUNKS",
                    help="mfcore alone: peak RSS per loss_chunk_tokens value, e.g. 0,512")
    ap.add_argument("--model", default="tiny-llama3", help="--peak-memory's model (name or YAML)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    for hidden in ("--worker", "--hf-dir", "--t0", "--peak-memory-child"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.t0 = float(args.t0)
        print(json.dumps(WORKERS[args.worker](args)), flush=True)
        return 0
    if args.peak_memory_child is not None:
        from bench_train_step_memory import peak_memory_child
        return peak_memory_child(args, ms_setup(args.threads))
    if args.peak_memory:
        from bench_train_step_memory import peak_memory_table
        return peak_memory_table(args)
    return main_table(args)


if __name__ == "__main__":
    sys.exit(main())
