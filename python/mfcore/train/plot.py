"""``mf-train plot OUTPUT_DIR``: loss (train and valid), learning rate, grad norm and throughput
curves of a run's ``metrics.jsonl`` in one PNG."""
from pathlib import Path
from typing import Optional

from mfcore.errors import MfcoreError
from mfcore.train.monitor import METRICS_FILE, read_metrics

PANELS = (("loss", "loss"), ("lr", "learning rate"), ("grad_norm", "grad norm"),
          ("tokens_per_s", "tokens/s"))


def plot_run(output_dir, out_path: Optional[str] = None) -> Path:
    """Render the run's curves; returns the PNG path (default ``<output_dir>/metrics.png``)."""
    records = read_metrics(output_dir)
    train = [r for r in records if "loss" in r]
    if not train:
        raise MfcoreError(f"{Path(output_dir) / METRICS_FILE}: no training metrics to plot "
                          f"(is this a run's output directory?)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, PANELS):
        points = [(r["step"], r[key]) for r in train if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label="train", linewidth=1.2)
        if key == "loss":
            valid = [(r["step"], r["valid_loss"]) for r in records if "valid_loss" in r]
            if valid:
                ax.plot(*zip(*valid), "o-", label="valid", markersize=3)
            ax.legend()
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    path = Path(out_path) if out_path else Path(output_dir) / "metrics.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
