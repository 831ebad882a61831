"""``bench_train_step.py --peak-memory 0,512``: mfcore's trainer step alone, one fresh process per
``training.loss_chunk_tokens`` value (peak RSS is per process: ``VmHWM``), printing the peak after
the model and optimizer are built, after the first forward/backward and after ``--steps`` steps;
``--model benchmarks/llama-160m.yaml --batch 4 --seq 512`` is issue 24's 160M point."""
import json
import os
import subprocess
import sys
import time

from bench_train_step import make_batch, peak_gb


def peak_memory_child(args, ms):
    """One process: the trainer step with ``--peak-memory-child`` chunk tokens; prints one JSON line."""
    from mfcore.models import build_model, set_loss_chunk_tokens
    from mfcore.train.optim import AdamW
    from mfcore.train.step import TrainStep, apply_update, forward_backward, loss_tokens

    ms.set_seed(0)
    model = build_model(args.model)
    set_loss_chunk_tokens(model, int(args.peak_memory_child))
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
    return 0


def peak_memory_table(args):
    """Each chunk setting in its own process, printed side by side."""
    rows = {}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_train_step.py")
    for chunk in (int(c) for c in args.peak_memory.split(",")):
        cmd = [sys.executable, script, "--peak-memory-child", str(chunk), "--model", args.model,
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
