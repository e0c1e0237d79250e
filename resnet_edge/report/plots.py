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


def pareto_figure(result: dict):
    """Validation accuracy against measured latency of every trial, the Pareto front, the plain grid, the winner and
    the budget (a matplotlib figure; None without a trained trial). The search's page (search.md) and the run report draw it."""
    plt = _pyplot()
    trials = [t for t in result["trials"] if t.get("latency_ms") is not None and t.get("val_acc") is not None]
    if not trials:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter([t["latency_ms"] for t in trials], [100 * t["val_acc"] for t in trials], s=16, color="gray",
               label="trials (pruned ones at their last epoch)")
    front = result.get("pareto") or []
    ax.plot([p["latency_ms"] for p in front], [100 * p["val_acc"] for p in front], "-o", color="black", ms=4,
            label="Pareto front")
    for row in (result.get("baseline") or {}).get("rows") or []:
        if row.get("val_acc") is not None:
            ax.scatter([row["latency_ms"]], [100 * row["val_acc"]], marker="s", color="orange", s=40)
            ax.annotate(row["candidate"].split("-k")[0], (row["latency_ms"], 100 * row["val_acc"]), fontsize=7)
    w = result["winner"]
    ax.scatter([w["searched_ms"] if w.get("searched_ms") is not None else w[f"{result['metric']}_ms"]], [100 * (w["val_acc"] or 0)], marker="*", s=160, color="red", label="winner")
    ax.axvline(result["budget_ms"], color="red", ls="--", lw=1, label=f"budget ({result['metric']})")
    ax.set(xlabel=f"{result['metric']} measured on {result['target']} (ms)", ylabel="validation top-1 (%)",
           title="accuracy against latency (squares: the plain grid)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return fig
