"""PNG plots with matplotlib's Agg backend (no display needed); written atomically."""

from __future__ import annotations

from pathlib import Path

from resnet_edge.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(runs: dict[str, list[dict]], out: str | Path, title: str = "", metric: str = "train_error") -> Path:
    """One line per run: ``metric`` (thin, training) and validation error (dashed) against epochs, in %."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for name, history in runs.items():
        epochs = [r["epoch"] for r in history]
        line = axes[0].plot(epochs, [100 * r[metric] for r in history], label=f"{name} train")[0]
        axes[0].plot(epochs, [100 * (1 - r["val_acc"]) for r in history], "--", color=line.get_color(), label=f"{name} val")
        axes[1].plot(epochs, [r["loss"] for r in history], color=line.get_color(), label=name)
    axes[0].set(xlabel="epoch", ylabel="error (%)", title="error (solid: training, dashed: validation)")
    axes[1].set(xlabel="epoch", ylabel="training loss (with weight decay)", title="loss", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
