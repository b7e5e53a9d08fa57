"""``metrics.json`` (per epoch and final) and the learning-curve plot, rewritten after every epoch."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_text
from ..provenance import stamp

if TYPE_CHECKING:
    from .loop import TrainSettings

__all__ = ["write_metrics", "summarise", "plot_curves", "METRICS_NAME", "CURVES_NAME"]

METRICS_NAME = "metrics.json"
CURVES_NAME = "curves.png"


def summarise(history: list[dict[str, float]], settings: TrainSettings, fingerprint: dict[str, Any],
              test: dict[str, float] | None = None) -> dict[str, Any]:
    """``test``: the held-out split's figures after the last epoch, where the data has one."""
    last = history[-1] if history else {}
    summary: dict[str, Any] = {
        "arch_id": settings.arch.arch_id,
        "epochs_done": len(history),
        "val_top1": last.get("val_top1"),
        "best_val_top1": max((r["val_top1"] for r in history), default=None),
        "val_top1_ema": last.get("val_ema_top1"),
        **({"test_top1": test["test_top1"], "test_top1_ema": test.get("test_ema_top1"), "test": test} if test else {}),
        "train_img_per_s": statistics.median(r["train_img_per_s"] for r in history) if history else None,
        "train_seconds": sum(r["train_seconds"] for r in history),
        "recipe_name": settings.recipe_name,
        "settings": fingerprint,
        "epochs": history,
        **stamp(),
    }
    return summary


def write_metrics(out_dir: Path, history: list[dict[str, float]], settings: TrainSettings,
                  fingerprint: dict[str, Any], test: dict[str, float] | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(history, settings, fingerprint, test)
    atomic_write_text(out_dir / METRICS_NAME, json.dumps(summary, indent=1) + "\n")
    plot_curves(history, out_dir / CURVES_NAME, title=f"{settings.arch.name or settings.arch.arch_id} "
                                                       f"on {fingerprint['data']['source']}")


def plot_curves(history: list[dict[str, float]], path: Path, title: str,
                accuracies: dict[str, str] | None = None, losses: dict[str, str] | None = None) -> Path:
    """Loss and accuracy per epoch; ``accuracies``/``losses`` map a legend label to a history key
    (keys missing from the history are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracies = accuracies or {"model": "val_top1", "EMA": "val_ema_top1"}
    losses = losses or {"train (augmented)": "train_loss", "validation": "val_loss"}
    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for label, key in losses.items():
        if key in history[0]:
            loss_ax.plot(epochs, [r[key] for r in history], label=label)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    for label, key in accuracies.items():
        if key in history[0]:
            acc_ax.plot(epochs, [r[key] for r in history], marker=".", label=label)
    acc_ax.set(xlabel="epoch", ylabel="top-1 (%)", title="validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
