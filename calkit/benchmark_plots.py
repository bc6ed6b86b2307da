"""Figures of the OOD benchmark chapter. Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.methods import method_label


def _pair_label(task: str, set_name: str) -> str:
    return f"{task}: {col.set_label(set_name) if set_name != 'validation' else 'validation'}"


def change_heatmap(grid: pd.DataFrame) -> plt.Figure:
    """Each method's loss relative to the IR-net, one row per task and shift.

    Args:
        grid: :func:`calkit.reporting.benchmark.relative_change_grid` (relative changes).

    Returns:
        A heatmap of ``log2(loss / IR-net loss)``: blue is lower than the IR-net, red higher;
        the cells print the change in per cent.
    """
    log_ratio = np.log2(1 + grid.to_numpy(dtype=float))
    bound = max(np.nanmax(np.abs(log_ratio)), 0.1) if np.isfinite(log_ratio).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 3.5, 0.32 * grid.shape[0] + 1.2))
    image = ax.imshow(log_ratio, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            dark = abs(log_ratio[i, j]) > 0.6 * bound
            ax.text(j, i, f"{100 * value:+.0f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(grid.shape[1]), [method_label(m) for m in grid.columns], rotation=30,
                  ha="right")
    ax.set_yticks(range(grid.shape[0]), [_pair_label(t, s) for t, s in grid.index], fontsize=8)
    fig.colorbar(image, ax=ax, label="log2(loss / IR-net loss)", shrink=0.6)
    ax.set_title("Loss against the plain IR-net (%, paired by seed)")
    fig.tight_layout()
    return fig


def rank_bars(counts: pd.DataFrame) -> plt.Figure:
    """How often each method is best, and best or tied, over the task-shift pairs.

    Args:
        counts: :func:`calkit.reporting.benchmark.rank_counts`.
    """
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(counts) + 1.2))
    labels = [method_label(m) for m in counts.index]
    y = np.arange(len(counts))
    ax.barh(y, counts["best or tied"], color="#9ecae1", label="best or tied with the best")
    ax.barh(y, counts["best"], color="#08519c", label="lowest mean loss")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"task-shift pairs (of {int(counts['pairs'].max())})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def distance_dots(distances: pd.DataFrame) -> plt.Figure:
    """Each shift's distance to the training rows, per task (1 = as close as training rows).

    Args:
        distances: :func:`calkit.reporting.benchmark.shift_distances`.
    """
    table = distances[distances.index.get_level_values("set") != col.TRAIN]
    kinds = sorted({col.shift_kind(s) for s in table.index.get_level_values("set")})
    markers = dict(zip(kinds, "osD^vP*X", strict=False))
    tasks = list(dict.fromkeys(table.index.get_level_values("task")))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(tasks) + 1.4))
    for kind in kinds:
        rows = table[[col.shift_kind(s) == kind for s in table.index.get_level_values("set")]]
        ax.scatter(rows["distance ratio"],
                   [tasks.index(t) for t in rows.index.get_level_values("task")],
                   marker=markers[kind], s=36, alpha=0.8, label=kind)
    ax.axvline(1.0, color="0.5", lw=1, ls="--")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.invert_yaxis()
    ax.set_xlabel("mean 5-NN distance to training rows / training rows' own")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), title="shift")
    fig.tight_layout()
    return fig
