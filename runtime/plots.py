"""PNG plots for a run directory: α weights over epochs, losses and accuracies over epochs.

Matplotlib is used headless (Agg) and imported here only, so nothing else pays for it.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from dasc.fsutil import atomic_write_bytes


def _figure_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def plot_alpha_history(history: list[dict], candidates: dict[str, tuple[str, ...]],
                       path: Path, max_panels: int = 24) -> None:
    """One panel per α key (the first `max_panels`), one line per candidate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(candidates)[:max_panels]
    if not keys or not history:
        return
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes.flat, keys):
        for i, name in enumerate(candidates[key]):
            ax.plot(epochs, [h["weights"][key][i] if i < len(h["weights"][key]) else float("nan")
                             for h in history], label=name, marker="." if len(epochs) < 30 else None)
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="best")
    fig.suptitle("gate weights over the search")
    atomic_write_bytes(path, _figure_bytes(fig))
    plt.close(fig)


def plot_curves(metrics: list[dict], path: Path) -> None:
    """Training/validation loss and accuracy (and expected cost when it was penalised)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics:
        return
    epochs = [m["epoch"] for m in metrics]
    has_cost = any(m.get("expected_cost") is not None for m in metrics)
    fig, axes = plt.subplots(1, 3 if has_cost else 2, figsize=(12 if has_cost else 8, 3))
    axes[0].plot(epochs, [m["train_loss"] for m in metrics], label="train (weights)")
    axes[0].plot(epochs, [m["val_loss"] for m in metrics], label="validation (α)")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [m["train_acc"] for m in metrics], label="train")
    axes[1].plot(epochs, [m["val_acc"] for m in metrics], label="validation")
    axes[1].set_title("accuracy")
    if has_cost:
        axes[2].plot(epochs, [m.get("expected_cost") for m in metrics])
        unit = next((m["cost_unit"] for m in reversed(metrics) if m.get("cost_unit")), "millions")
        axes[2].set_title(f"expected cost ({unit})")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    atomic_write_bytes(path, _figure_bytes(fig))
    plt.close(fig)
