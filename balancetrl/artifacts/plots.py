"""The run's plots: `training.png` (at the end of training) and `hdr/rounds.png` (after each HDR round).

Both are two panels, the right one λ over the steps with the HDR rounds marked. matplotlib is imported when a plot
is drawn, with the Agg backend: training runs headless.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def plot_lambda(ax, log_history: list[dict]) -> None:
    """λ over the steps, HDR rounds as dotted lines (the right panel of `rounds.png` and `training.png`)."""
    points = [(e["step"], e["ssb/lambda"]) for e in log_history if "ssb/lambda" in e]
    if points:
        ax.plot(*zip(*points), color="tab:purple", marker="." if len(points) < 30 else None)
    for entry in log_history:
        if "hdr/round" in entry:
            ax.axvline(entry["step"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("λ")
    ax.set_title("SSB λ (dotted: HDR rounds)")


def _save_with_lambda(path: str | os.PathLike, log_history: list[dict], draw_left: Callable) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    draw_left(left)
    plot_lambda(right, log_history)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rounds(path: str | os.PathLike, summaries: list[dict], log_history: list[dict], initial_hard: int) -> None:
    """Hard-set size and acceptance per HDR round on the left, λ on the right."""

    def draw(ax):
        rounds = [0] + [s["round"] for s in summaries]
        ax.plot(rounds, [initial_hard] + [s["hard_remaining"] for s in summaries], marker="o", label="hard set")
        ax.bar([s["round"] for s in summaries], [s["accepted"] for s in summaries], alpha=0.5, color="tab:green",
               label="accepted")
        ax.set_xlabel("HDR round")
        ax.set_ylabel("samples")
        ax.set_title("Hard set and acceptance")
        ax.legend()

    _save_with_lambda(path, log_history, draw)


def plot_training(path: str | os.PathLike, log_history: list[dict]) -> None:
    """Train/eval loss and the two segment losses (L_c, L_f) on the left, λ on the right."""

    def draw(ax):
        for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
            points = [(e["step"], e[key]) for e in log_history if key in e]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=label)
        for key, label in (("ssb/loss_cot", "L_c (CoT)"), ("ssb/loss_call", "L_f (call)")):
            points = [(e["step"], e[key]) for e in log_history if key in e]
            if points:
                ax.plot(*zip(*points), linestyle="--", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.legend()

    _save_with_lambda(path, log_history, draw)
