"""`hdr/rounds.png`: hard-set size and acceptance per round, and λ over the steps."""

from __future__ import annotations

import os


def plot_lambda(ax, log_history: list[dict]) -> None:
    """λ over the steps, HDR rounds as dotted lines (shared by `rounds.png` and the run's `training.png`)."""
    points = [(e["step"], e["ssb/lambda"]) for e in log_history if "ssb/lambda" in e]
    if points:
        ax.plot(*zip(*points), color="tab:purple", marker="." if len(points) < 30 else None)
    for entry in log_history:
        if "hdr/round" in entry:
            ax.axvline(entry["step"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("λ")
    ax.set_title("SSB λ (dotted: HDR rounds)")


def plot_rounds(path: str | os.PathLike, summaries: list[dict], log_history: list[dict], initial_hard: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    rounds = [0] + [s["round"] for s in summaries]
    left.plot(rounds, [initial_hard] + [s["hard_remaining"] for s in summaries], marker="o", label="hard set")
    left.bar([s["round"] for s in summaries], [s["accepted"] for s in summaries], alpha=0.5, color="tab:green",
             label="accepted")
    left.set_xlabel("HDR round")
    left.set_ylabel("samples")
    left.set_title("Hard set and acceptance")
    left.legend()
    plot_lambda(right, log_history)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
