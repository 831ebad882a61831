"""Training throughput of the tiny Llama: mfcore's compiled MindSpore step vs PyTorch eager.

Model (``tiny-llama3``): hidden 256, 4 layers, 8 heads / 4 KV heads, FFN 688, vocab 4096; sequence
256, micro batch 8, AdamW, float32. Both sides train the IDENTICAL model: mfcore's initial weights
are exported with ``save_pretrained`` and loaded into ``transformers.LlamaForCausalLM`` (PyTorch's
default attention, eager mode), and the script first checks that the two give the same logits.

mfcore is measured through the trainer's step (``mfcore.train.step``: forward/backward into
gradient buffers, global norm, clipped AdamW; three graphs per step) and, to show what the model
itself costs, as one fused ``ms.jit`` graph (value_and_grad + AdamW); ``--compare-plain`` adds the
fused graph built without our C++ CPU kernels (``MFCORE_CPU_KERNELS=0``). The machine is shared, so
the runs are interleaved round by round, and both wall-clock and process CPU time are reported;
the ratio to PyTorch is taken per round and the median printed. Target: >= 1.0x PyTorch.

    .venv/bin/python benchmarks/bench_train_step.py [--steps 4 --rounds 3 --batch 8 --seq 256] [--compare-plain]

``--peak-memory 0,512`` instead measures mfcore's trainer step alone: one fresh process per
``training.loss_chunk_tokens`` value (peak RSS is per process: ``VmHWM``), printing the peak after
the model and optimizer are built, after the first forward/backward and after ``--steps`` steps,
side by side; ``--model benchmarks/llama-160m.yaml --batch 4 --seq 512`` is the issue's 160M point.

Needs the ``bench`` extra (``pip install -e .[bench]``: torch, transformers), except ``--peak-memory``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from mfcore.models import build_model, set_loss_chunk_tokens
from mfcore.models.hf import save_pretrained
from mfcore.train.trainer import host_blocking_run


def _timed(run, steps):
    """(wall seconds, process CPU seconds) of ``steps`` calls of ``run``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        run()
    return time.perf_counter() - wall, time.process_time() - cpu


def torch_runner(hf_dir, batch):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.tensor(batch["tokens"], dtype=torch.long)
    labels = torch.tensor(batch["labels"], dtype=torch.long)
    mask = torch.tensor(batch["loss_mask"])

    def step():
        logits = model(input_ids=ids).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                                 reduction="none")
        loss = (loss * mask.view(-1)).sum() / mask.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    with torch.no_grad():
        logits = model(input_ids=ids).logits.numpy()
    return step, logits


def trainer_runner(model, batch):
    """One optimizer step through mfcore.train.step (what ``mf-train`` runs)."""
    from mfcore.train.optim import AdamW
    from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens

    step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.1))
    keys = ("tokens", "labels", "loss_mask")
    tokens = loss_tokens([batch])

    def run():
        out = forward_backward(step, [batch], keys, tokens, 1.0)
        apply_update(step, 1e-4, out.grad_norm, 1.0, 1.0)
        return out.loss_sum / tokens

    return run


def fused_runner(model, batch):
    """The model alone: one ``ms.jit`` graph with value_and_grad and AdamW."""
    opt = nn.AdamWeightDecay(model.trainable_params(), 1e-4, beta2=0.95, weight_decay=0.1)
    grad_fn = ms.value_and_grad(model, None, opt.parameters)
    inputs = [Tensor(batch[k]) for k in ("tokens", "labels", "loss_mask")]

    @ms.jit
    def step(ids, labels, mask):
        loss, grads = grad_fn(ids, labels, mask)
        opt(grads)
        return loss

    return lambda: float(step(*inputs).asnumpy())


def plain_model(name, like):
    """``name`` built with the plain MindSpore layers (kernels switched off), ``like``'s weights."""
    previous = os.environ.get("MFCORE_CPU_KERNELS")
    os.environ["MFCORE_CPU_KERNELS"] = "0"
    try:
        model = build_model(name)
    finally:
        if previous is None:
            del os.environ["MFCORE_CPU_KERNELS"]
        else:
            os.environ["MFCORE_CPU_KERNELS"] = previous
    ms.load_param_into_net(model, {p.name: ms.Parameter(ms.Tensor(p.asnumpy()), p.name) for p in like.get_parameters()})
    model.set_train(True)
    return model


def peak_gb():
    from mfcore.train.footprint import peak_rss_bytes
    return peak_rss_bytes() / 1e9


def peak_memory_child(args):
    """One process: the trainer step with ``--peak-memory-child`` chunk tokens; prints one JSON line."""
    from mfcore.train.optim import AdamW
    from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens

    ms.set_seed(0)
    model = build_model(args.model)
    set_loss_chunk_tokens(model, args.peak_memory_child)
    model.set_train(True)
    batch = make_batch(model.config.vocab_size, args.batch, args.seq)
    step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.1))
    keys, tokens, record = ("tokens", "labels", "loss_mask"), loss_tokens([batch]), {"built": peak_gb()}
    start = time.perf_counter()
    for i in range(args.steps):
        out = forward_backward(step, [batch], keys, tokens, 1.0)
        if i == 0:
            record.update(first_backward=peak_gb(), first_step_s=time.perf_counter() - start)
            start = time.perf_counter()
        apply_update(step, 1e-4, out.grad_norm, 1.0, 1.0)
    record.update(peak=peak_gb(), loss=out.loss_sum / tokens, grad_norm=out.grad_norm,
                  step_s=(time.perf_counter() - start) / max(args.steps - 1, 1))
    print(json.dumps(record), flush=True)


def peak_memory_table(args):
    """Each chunk setting in its own process, printed side by side."""
    rows = {}
    for chunk in (int(c) for c in args.peak_memory.split(",")):
        cmd = [sys.executable, __file__, "--peak-memory-child", str(chunk), "--model", args.model,
               "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows[chunk] = json.loads(out.strip().splitlines()[-1])
    print(f"\n{args.model}: batch {args.batch} x seq {args.seq}, {args.steps} steps, peak RSS (VmHWM) in GB, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'loss_chunk_tokens':>18s} {'built':>7s} {'1st fwd/bwd':>12s} {'peak':>7s} {'loss':>10s} "
          f"{'grad norm':>10s} {'1st step s':>11s} {'s/step':>7s}")
    for chunk, r in rows.items():
        print(f"{chunk:18d} {r['built']:7.3f} {r['first_backward']:12.3f} {r['peak']:7.3f} {r['loss']:10.6f} "
              f"{r['grad_norm']:10.6f} {r['first_step_s']:11.1f} {r['step_s']:7.1f}")
    return 0


def make_batch(vocab, b, s, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (b, s + 1)).astype(np.int32)
    return {"tokens": tokens[:, :-1].copy(), "labels": tokens[:, 1:].copy(),
            "loss_mask": np.ones((b, s), np.float32)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-llama3")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per side per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-trainer", action="store_true", help="skip the trainer-step measurement")
    ap.add_argument("--compare-plain", action="store_true",
                    help="also time the fused step without the C++ CPU kernels (plain MindSpore ops)")
    ap.add_argument("--pipelined-host", action="store_true",
                    help="keep MindSpore's default graph pipeline (its Python thread spin-waits)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="kernel threads for both frameworks (1 gives a fairer figure on a busy machine)")
    ap.add_argument("--peak-memory", metavar="CHUNKS",
                    help="peak RSS of the trainer step per loss_chunk_tokens value, e.g. 0,512 (no PyTorch)")
    ap.add_argument("--peak-memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peak_memory:
        return peak_memory_table(args)
    if not args.pipelined_host:
        host_blocking_run()  # as mf-train does on CPU (mfcore.train.trainer.setup_runtime)
    ms.set_context(mode=ms.GRAPH_MODE, runtime_num_threads=args.threads)
    if args.peak_memory_child is not None:
        return peak_memory_child(args)
    import torch
    torch.set_num_threads(args.threads)

    model = build_model(args.model)
    batch = make_batch(model.config.vocab_size, args.batch, args.seq)
    with tempfile.TemporaryDirectory() as hf_dir:
        save_pretrained(model, hf_dir)
        torch_step, torch_logits = torch_runner(hf_dir, batch)
    ms_logits = model(Tensor(batch["tokens"])).asnumpy()
    diff = float(np.abs(ms_logits - torch_logits).max())
    print(f"identical model check: max |logits difference| = {diff:.2e}")
    if diff > 1e-3:
        print("error: the two models disagree; figures would not be comparable", file=sys.stderr)
        return 1

    runners = {"pytorch eager": torch_step}
    if not args.no_trainer:
        trainer_model = build_model(args.model)
        trainer_model.set_train(True)
        runners["mfcore trainer step"] = trainer_runner(trainer_model, batch)
    model.set_train(True)
    runners["mfcore fused step"] = fused_runner(model, batch)
    if args.compare_plain:
        runners["fused, no C++ kernels"] = fused_runner(plain_model(args.model, model), batch)
    tokens = args.batch * args.seq * args.steps
    for name, run in runners.items():  # warm-up: compiles, allocator
        start = time.perf_counter()
        run(), run()
        print(f"warm-up {name}: {time.perf_counter() - start:.1f} s")
    results = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            results[name].append(_timed(run, args.steps))
    load = os.getloadavg()[0]
    print(f"\n{args.model}: batch {args.batch} x seq {args.seq}, {args.steps} steps x {args.rounds} "
          f"rounds, {args.threads} kernel threads on {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"{'':22s} {'tokens/s':>10s} {'tokens/CPU-s':>13s} {'vs PyTorch (wall)':>18s} {'(CPU)':>7s}")
    base = results["pytorch eager"]
    for name, runs in results.items():
        wall = statistics.median(tokens / w for w, _ in runs)
        cpu = statistics.median(tokens / c for _, c in runs)
        ratio_w = statistics.median(b[0] / r[0] for r, b in zip(runs, base))
        ratio_c = statistics.median(b[1] / r[1] for r, b in zip(runs, base))
        print(f"{name:22s} {wall:10.0f} {cpu:13.0f} {ratio_w:17.2f}x {ratio_c:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
