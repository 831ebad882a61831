"""The end-to-end recipe shared by the e2e/golden tests and ``tools/regen_golden_losses.py``: a
shipped tiny config, trained on a synthetic indexed dataset, shrunk to test size by overrides."""
import json
from pathlib import Path

from helpers.synthetic_data import write_pattern_corpus
from mfcore.config.loader import load_config
from mfcore.train.trainer import train

TINY_CONFIGS = ("tiny-llama2", "tiny-llama3", "tiny-deepseek-v3")
GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_STEPS = 20
OVERRIDES = ["data.seq_length=32", "training.global_batch_size=8", "training.micro_batch_size=4",
             "training.train_steps=30", "schedule.warmup_steps=5", "optimizer.lr=3e-3",
             "training.eval_interval=0", "logging.log_interval=10",
             "logging.progress_bar=never", "run.deterministic=true", "precision.compute_dtype=float32",
             "checkpoint.resume=none", "checkpoint.save_interval=0"]


def run_tiny(name: str, workdir: Path, extra=()):
    """Train the shipped config ``name`` on a fresh synthetic corpus under ``workdir``."""
    workdir = Path(workdir)
    prefix = write_pattern_corpus(workdir / "syn_text_document")
    cfg = load_config(name, [f"data.prefixes=[{prefix}]", f"data.cache_dir={workdir / 'cache'}",
                             f"run.output_dir={workdir / 'out'}", *OVERRIDES, *extra])
    return train(cfg)


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"losses_{name.replace('-', '_')}.json"


def read_golden(name: str) -> dict:
    return json.loads(golden_path(name).read_text())


def write_golden(name: str, losses) -> Path:
    path = golden_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"config": name, "overrides": OVERRIDES, "steps": GOLDEN_STEPS,
            "note": "first losses in deterministic fp32 CPU mode; regenerate with "
                    "tools/regen_golden_losses.py after a deliberate, reviewed change of the numerics",
            "losses": [float(x) for x in losses[:GOLDEN_STEPS]]}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def run_in_subprocess(name: str, workdir: Path) -> list:
    """The losses of :func:`run_tiny` in a fresh Python process (deterministic mode can only be
    switched on before MindSpore runs its first kernel, and no earlier test may have touched it)."""
    import os
    import subprocess
    import sys
    # MindSpore's CPU MatMul (oneDNN) picks its kernels by the host's instruction set, and AVX-512
    # kernels round differently from AVX2 ones: the goldens are made with AVX2 kernels, which every
    # x86-64 host that can run MindSpore has, so they hold on any such machine.
    env = {**os.environ, "GLOG_v": "3", "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": _tests_path()}
    proc = subprocess.run([sys.executable, "-m", "helpers.e2e_recipe", name, str(workdir)], cwd=str(workdir),
                          env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: training subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["losses"]


def _tests_path() -> str:
    """PYTHONPATH for a child process that imports ``helpers`` (tests/, before what was there)."""
    import os
    tests = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)


def regenerate(name: str) -> Path:
    """Two fresh runs of ``name``; refuses to write unless they agree in every bit."""
    import tempfile
    runs = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(run_in_subprocess(name, Path(tmp))[:GOLDEN_STEPS])
    if runs[0] != runs[1]:
        raise SystemExit(f"{name}: two runs differ, not deterministic: {runs[0]} vs {runs[1]}")
    return write_golden(name, runs[0])


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--regen"]:  # tools/regen_golden_losses.py
        for config in sys.argv[2:] or TINY_CONFIGS:
            if config not in TINY_CONFIGS:
                raise SystemExit(f"unknown tiny config {config!r}; choose from {', '.join(TINY_CONFIGS)}")
            print(f"{config}: wrote {regenerate(config)}")
    else:
        result = run_tiny(sys.argv[1], Path(sys.argv[2]), ["logging.log_interval=1000"])
        print(json.dumps({"losses": result.losses}))
