"""Figures of the OOD benchmark chapter. Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.methods import method_label
from calkit.plots import legend_entries


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


SHIFT_STYLE = {"covariate": ("C0", "covariate"), "prior low": ("C2", "prior, low tail"),
               "prior high": ("C3", "prior, high tail"), "extreme": ("C1", "extreme"),
               "element": ("C4", "element hold-outs"), "cluster": ("C5", "cluster hold-out")}
"""Colour and legend label of each kind of shift in the benchmark's per-task figures."""


def _shift_style(name: str) -> tuple[str, str]:
    kind = col.shift_kind(name)
    if kind == "prior":
        kind = "prior low" if name.endswith("_lower") else "prior high"
    return SHIFT_STYLE.get(kind, ("0.4", kind))


def risk_coverage_panels(curves: dict[str, pd.DataFrame]) -> plt.Figure:
    """The ensemble's risk-coverage curve per task: one panel a task, one line a shift.

    Args:
        curves: :func:`calkit.reporting.benchmark.task_risk_curves` (errors in units of the
            training rows' standard deviation, so the panels share their y axis).

    Returns:
        A grid of panels, the validation rows dashed black, each shift coloured by its kind.
    """
    columns = min(4, max(len(curves), 1))
    rows = -(-max(len(curves), 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows), sharey=True,
                             squeeze=False)
    for ax, (task, table) in zip(axes.flat, curves.items(), strict=False):
        for name in table.columns:
            color, label = ("black", "validation rows") if name == "val" else _shift_style(name)
            ax.plot(100 * table.index, table[name], color=color, label=label,
                    ls="--" if name == "val" else "-", lw=1.4 if name == "val" else 1.1)
        ax.set_yscale("log")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("rows kept, most confident first (%)", fontsize=8)
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("MAE (training std units)", fontsize=8)
    handles, labels = legend_entries(axes)
    fig.legend(handles, labels, fontsize=8, ncol=min(len(labels), 7), loc="lower center",
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.12, 1, 1))
    return fig
