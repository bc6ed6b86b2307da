"""Figures for the book. Each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from calkit import columns as col

# One colour per set, reused by every figure so a set looks the same throughout the book.
SET_COLORS = {
    col.TRAIN: "#9e9e9e",
    col.COVARIATE: "#1f77b4",
    col.PRIOR: "#d62728",
    col.EXTREME: "#ff7f0e",
    col.HIGH_GAP: "#2ca02c",
    col.GAP_PRIOR: "#17becf",
    col.RELATION: "#9467bd",
    "validation": "#bcbd22",
}


def legend_entries(axes: Any) -> tuple[list, list[str]]:
    """The legend handles and labels of several panels, each label once, for one figure legend."""
    handles: list = []
    labels: list[str] = []
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels


def set_color(name: str) -> str:
    """The colour of a set, including the target-named prior and extreme sets of any data set."""
    if name in SET_COLORS:
        return SET_COLORS[name]
    if name.startswith("infoY_"):
        return SET_COLORS[col.PRIOR]
    if name.startswith("statY_"):
        return SET_COLORS[col.EXTREME]
    return "k"


def target_label(target: str, unit: str = "") -> str:
    """Axis label of a target column with its unit."""
    names = {col.DELTA_E: r"$\Delta E_f$", col.BAND_GAP: "band gap",
             col.PHDOS_PEAK: "last phonon DOS peak"}
    name = names.get(target, target)
    return f"{name} ({unit})" if unit else name


def target_distributions(frames: dict[str, pd.DataFrame], target: str = col.DELTA_E) -> plt.Figure:
    """Histograms of a target column for several data sets, side by side."""
    present = {name: f for name, f in frames.items() if target in f}
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, (name, frame) in zip(axes[0], present.items(), strict=True):
        sns.histplot(frame[target], bins=80, ax=ax, color="#4c72b0")
        ax.set_title(f"{name} (n = {len(frame):,})")
        ax.set_xlabel(target)
    fig.tight_layout()
    return fig


def feature_overview(features: pd.DataFrame, n_show: int = 12) -> plt.Figure:
    """Standardised distributions of a spread of features: which are skewed or near-constant."""
    z = (features - features.mean()) / features.std().replace(0, 1)
    picks = np.linspace(0, features.shape[1] - 1, n_show).astype(int)
    long = z.iloc[:, picks].melt(var_name="feature", value_name="z-score")
    long["feature"] = long["feature"].str.replace("MagpieData ", "", regex=False)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    sns.boxplot(data=long, y="feature", x="z-score", ax=ax, fliersize=1, color="#c7d7ea")
    ax.set_xscale("symlog", linthresh=3)
    ax.set_title(f"{n_show} of the {features.shape[1]} features, standardised over all rows")
    fig.tight_layout()
    return fig


def _set_membership(sets: pd.DataFrame, order: tuple[str, ...]) -> pd.Series:
    """One label per row: the first set in ``order`` it belongs to, else validation/train."""
    label = pd.Series("validation", index=sets.index, dtype=object)
    label[sets[col.TRAIN]] = col.TRAIN
    for name in reversed(order):
        if name in sets:
            label[sets[name]] = name
    return label


def embedding_by_set(
    embedding: np.ndarray,
    sets: pd.DataFrame,
    order: tuple[str, ...] = (col.RELATION, col.HIGH_GAP, col.PRIOR, col.COVARIATE),
    title: str = "",
    max_points: int = 30_000,
    seed: int = 0,
) -> plt.Figure:
    """Scatter a 2-D embedding coloured by set membership (the paper's UMAP figure)."""
    labels = _set_membership(sets, order)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(labels))
    if len(rows) > max_points:
        rows = np.sort(rng.choice(rows, max_points, replace=False))
    fig, ax = plt.subplots(figsize=(7.5, 6.2))
    for name in ("validation", col.TRAIN, *reversed(order)):
        pick = rows[labels.to_numpy()[rows] == name]
        if len(pick) == 0:
            continue
        size = 14 if name == col.RELATION else 3
        ax.scatter(
            embedding[pick, 0],
            embedding[pick, 1],
            s=size,
            alpha=0.6,
            lw=0,
            color=set_color(name),
            label=f"{col.set_label(name)} ({int((labels == name).sum()):,})",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8, loc="best", frameon=True)
    fig.tight_layout()
    return fig


def prior_shift_histogram(frame: pd.DataFrame, sets: pd.DataFrame, target: str = col.DELTA_E,
                          unit: str = "eV/atom") -> plt.Figure:
    """The target on the training rows against the prior-shift and extreme sets (log counts)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    bins = np.linspace(frame[target].min(), frame[target].max(), 90).tolist()
    for name in (col.TRAIN, col.extreme_set(target), col.prior_set(target)):
        ax.hist(
            frame.loc[sets[name], target],
            bins=bins,
            alpha=0.55,
            log=True,
            color=set_color(name),
            label=f"{col.set_label(name)} ({int(sets[name].sum()):,})",
        )
    ax.set_xlabel(target_label(target, unit))
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


_RELATION_MARKERS = {  # (outside local clusters, outside the global structure) -> marker
    (False, False): ("o", "inside a local cluster, inside the global structure"),
    (True, False): ("^", "outside local clusters, inside the global structure"),
    (False, True): ("s", "inside a local cluster, outside the global structure"),
    (True, True): ("*", "outside local clusters and the global structure"),
}


def ood_map(embedding: np.ndarray, sets: pd.DataFrame, relation: pd.DataFrame,
            ood_names: tuple[str, ...], ax=None) -> plt.Figure:
    """The OOD test rows on the 2-D composition-feature map (the paper's figure 5a).

    Colour: the row's OOD set (the first of ``ood_names`` it is in); marker: how it relates
    to the training rows' local clusters and global structure (:func:`cluster_relation`).
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7.5, 6.2))
    train = sets[col.TRAIN].to_numpy()
    ax.scatter(embedding[train, 0], embedding[train, 1], s=4, lw=0, color="#d0d0d0",
               label=f"training ({int(train.sum()):,})")
    labels = _set_membership(sets, ood_names).to_numpy()
    for name in ood_names:
        rows = labels == name
        for (local, glob), (marker, _) in _RELATION_MARKERS.items():
            pick = rows & (relation["outside_local"].to_numpy() == local) & \
                (relation["outside_global"].to_numpy() == glob)
            if pick.any():
                ax.scatter(embedding[pick, 0], embedding[pick, 1], s=30 if marker == "*" else 14,
                           marker=marker, lw=0.3, edgecolor="k", color=set_color(name), alpha=0.85)
    handles = [plt.Line2D([], [], ls="", marker="o", color=set_color(n),
                          label=f"{col.set_label(n)} ({int((labels == n).sum()):,})")
               for n in ood_names]
    handles += [plt.Line2D([], [], ls="", marker=m, color="w", markeredgecolor="k", label=text)
                for m, text in _RELATION_MARKERS.values()]
    ax.legend(handles=handles, fontsize=7, loc="best", frameon=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("(a) OOD test rows on the 2-D UMAP of all compositions")
    return fig


def target_by_set(frame: pd.DataFrame, sets: pd.DataFrame, target: str, unit: str,
                  names: tuple[str, ...], ax=None) -> plt.Figure:
    """The target's distribution in each set on a log count axis (the paper's figure 5b)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7.5, 3.6))
    bins = np.linspace(frame[target].min(), frame[target].max(), 50)
    for name in (col.TRAIN, *names):
        filled = name == col.TRAIN  # sets overlap (prior and extreme share a tail): outlines
        ax.hist(frame.loc[sets[name].to_numpy(), target], bins=bins, log=True,
                alpha=0.45 if filled else 0.95, lw=0 if filled else 1.8,
                color=set_color(name), histtype="stepfilled" if filled else "step",
                label=f"{col.set_label(name)} ({int(sets[name].sum()):,})")
    ax.set_xlabel(target_label(target, unit))
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=7)
    ax.set_title("(b) the target in each set")
    return fig


def covariate_density(
    embedding: np.ndarray, density: np.ndarray, covariate: np.ndarray
) -> plt.Figure:
    """The covariate set on the embedding: kernel density and the sparsest rows picked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    order = np.argsort(density)
    sc = axes[0].scatter(
        embedding[order, 0],
        embedding[order, 1],
        c=np.log10(density[order] + 1e-12),
        s=2,
        lw=0,
        cmap="viridis",
    )
    fig.colorbar(sc, ax=axes[0], label="log10 kernel density")
    axes[0].set_title("density on the 2-D UMAP")
    axes[1].scatter(embedding[~covariate, 0], embedding[~covariate, 1], s=2, lw=0, color="#cccccc")
    axes[1].scatter(
        embedding[covariate, 0],
        embedding[covariate, 1],
        s=2,
        lw=0,
        color=SET_COLORS[col.COVARIATE],
        label=f"covariate set ({int(covariate.sum()):,})",
    )
    axes[1].legend(markerscale=4, fontsize=8)
    axes[1].set_title("the sparsest rows form the covariate set")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def distance_bars(table: pd.DataFrame) -> plt.Figure:
    """Bar chart of each set's kNN distance to the training rows, relative to training."""
    data = table.sort_values("ratio_to_train")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(data) + 1.2))
    colors = [set_color(name) if set_color(name) != "k" else SET_COLORS["validation"]
              for name in data.index]
    ax.barh([col.set_label(n) for n in data.index], data["ratio_to_train"], color=colors)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("mean 5-NN distance to training rows / training rows' own")
    fig.tight_layout()
    return fig


def scaling_guard(raw: np.ndarray, train_mask: np.ndarray, names: list[str]) -> plt.Figure:
    """Largest |z| per feature with a scaler fitted on training rows, with and without clipping."""
    from calkit.features import FeatureScaler

    plain = FeatureScaler(clip=None).fit(raw[train_mask]).transform(raw)
    worst = np.abs(plain).max(axis=0)
    top = np.argsort(worst)[::-1][:10]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [names[i].replace("MagpieData ", "") for i in top]
    ax.barh(labels[::-1], worst[top][::-1], color="#d62728", label="plain scaler")
    ax.axvline(10, color="k", ls="--", lw=0.8, label="clip at 10 (calkit default)")
    ax.set_xscale("log")
    ax.set_xlabel("largest |standardised value| over all rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curves(history: pd.DataFrame, metric: str = "loss", log: bool = True) -> plt.Figure:
    """Per-set loss against epoch, with the warm-up phase shaded for CAL runs."""
    fig, ax = plt.subplots(figsize=(8, 4.4))
    sets = [c.split("/")[0] for c in history.columns if c.endswith(f"/{metric}")]
    for name in sets:
        if name.startswith("Rsplt") and name != "Rsplt1":
            continue
        label = "random splits (mean)" if name == "Rsplt1" else col.set_label(name)
        values = (
            history["val_loss"]
            if name == "Rsplt1" and metric == "loss"
            else history[f"{name}/{metric}"]
        )
        color = SET_COLORS.get(name, SET_COLORS["validation"] if name == "Rsplt1" else None)
        ax.plot(np.arange(len(values)), values, label=label, color=color, lw=1.4)
    if "phase" in history and (history["phase"] == 0).any() and (history["phase"] == 1).any():
        warm = int((history["phase"] == 0).sum())
        ax.axvspan(-0.5, warm - 0.5, color="#eeeeee", zorder=0, label="warm-up")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("smooth-L1 loss (eV/atom)" if metric == "loss" else "MAE (eV/atom)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def cal_diagnostics(history: pd.DataFrame) -> plt.Figure:
    """Cost weights w (min / median / max, frozen count) and mean perturbation per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(len(history))
    for key, style in (("w_min", ":"), ("w_median", "-"), ("w_max", "--")):
        axes[0].plot(epochs, history[key], style, color="#1f77b4", label=key)
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("cost weight w")
    twin = axes[0].twinx()
    twin.plot(epochs, history["w_frozen"], color="#d62728", lw=1, label="frozen")
    twin.set_ylabel("features frozen", color="#d62728")
    axes[0].legend(fontsize=7, loc="center left")
    axes[1].plot(epochs, history["perturbation"], color="#2ca02c")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(r"mean $|x_A - x|$ (standardised units)")
    fig.tight_layout()
    return fig


def predicted_vs_actual(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], title: str = ""
) -> plt.Figure:
    """Parity plots, one panel per model: ``name -> (y_true, y_pred)``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.8), squeeze=False)
    everything = np.concatenate([np.concatenate(p) for p in panels.values()])
    lo, hi = np.nanmin(everything), np.nanmax(everything)
    for ax, (name, (y_true, y_pred)) in zip(axes[0], panels.items(), strict=True):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        mae = np.mean(np.abs(y_true - y_pred))
        ax.scatter(y_true, y_pred, s=8, alpha=0.6, lw=0, color="#9467bd")
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(f"{name}\nMAE {mae:.3f} eV/atom, n = {len(y_true)}", fontsize=9)
        ax.set_xlabel(r"actual $\Delta E_f$ (eV/atom)")
    axes[0][0].set_ylabel(r"predicted $\Delta E_f$ (eV/atom)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def grouped_bars(
    table: pd.DataFrame, errors: pd.DataFrame | None = None, ylabel: str = "", log: bool = False
) -> plt.Figure:
    """Bars of ``table`` (rows = groups on the x axis, columns = series), optional error bars."""
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(table)), 3.8))
    n_series = table.shape[1]
    width = 0.8 / n_series
    x = np.arange(len(table))
    palette = sns.color_palette("tab10", n_series)
    for i, name in enumerate(table.columns):
        err = None if errors is None or name not in errors else errors[name].to_numpy()
        ax.bar(
            x + (i - (n_series - 1) / 2) * width,
            table[name].to_numpy(),
            width,
            yerr=err,
            label=name,
            color=palette[i],
            capsize=2,
        )
    ax.set_xticks(x)
    ax.set_xticklabels(table.index, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def radar(table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Radar chart: one polygon per row of ``table``; columns are the axes (lower is better)."""
    labels = list(table.columns)
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5.6, 5.6), subplot_kw={"polar": True})
    palette = sns.color_palette("tab10", len(table))
    for color, (name, row) in zip(palette, table.iterrows(), strict=True):
        values = row.to_numpy(dtype=float).tolist()
        ax.plot(angles + angles[:1], values + values[:1], color=color, lw=1.5, label=name)
        ax.fill(angles + angles[:1], values + values[:1], color=color, alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(labels, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.35, 1.1))
    fig.tight_layout()
    return fig


RATIO_LIMIT = 4.0
"""The per-claim figure's axis runs over loss ratios from ``1 / RATIO_LIMIT`` to ``RATIO_LIMIT``;
values beyond are marked at its edge with their number instead of stretching the axis."""

_RATIO_TICKS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _log_ratio(change: np.ndarray | float) -> np.ndarray:
    return np.log2(1.0 + np.asarray(change, dtype=float))


def paired_dots(points: pd.DataFrame, table: pd.DataFrame, title: str = "") -> plt.Figure:
    """Per-seed paired relative changes of each claim, with its interval and the paper's value.

    The axis is the log ratio of the two losses, so a halving and a doubling sit at the same
    distance from zero and one claim of 180x does not squeeze the others onto the zero line;
    values beyond :data:`RATIO_LIMIT` are drawn as a triangle at the axis edge with their value.

    Args:
        points: Long frame ``claim, seed, change`` (:func:`calkit.reporting.paired_points`).
        table: Per-claim ``estimate, low, high`` (and ``paper_change`` if the paper has one,
            ``verdict`` if judged), indexed by claim, in display order.
        title: Axes title.

    Returns:
        The figure: one row per claim; dots are seeds, the bar the 95 % interval, the cross
        the paper's change; left of the zero line means the second method's loss is lower.
        A withdrawn claim is drawn in grey and says so.
    """
    from calkit.reporting import format_change

    claims = list(table.index)
    edge = float(np.log2(RATIO_LIMIT))
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(claims) + 1.3))
    labels = []
    for i, claim in enumerate(claims):
        y = len(claims) - 1 - i
        row = table.loc[claim]
        withdrawn = row.get("verdict") == "withdrawn"
        colour, dots = ("0.7", "0.75") if withdrawn else ("C0", "0.35")
        labels.append(f"{claim} (withdrawn)" if withdrawn else claim)
        seeds = _log_ratio(points[points["claim"] == claim]["change"].to_numpy())
        jitter = np.full(len(seeds), y) + np.linspace(-0.12, 0.12, len(seeds))
        inside = np.abs(seeds) <= edge
        ax.scatter(seeds[inside], jitter[inside], s=14, color=dots, zorder=3)
        if (~inside).any():
            ax.scatter(np.sign(seeds[~inside]) * edge, jitter[~inside], s=22, color=dots,
                       marker=">" if seeds[~inside][0] > 0 else "<", zorder=3)
        if np.isfinite(row["low"]) and np.isfinite(row["high"]):
            low, high = np.clip(_log_ratio(np.array([row["low"], row["high"]])), -edge, edge)
            ax.plot([low, high], [y, y], color=colour, lw=3, alpha=0.6)
        estimate = float(_log_ratio(row["estimate"]))
        if abs(estimate) <= edge:
            ax.plot(estimate, y, "|", color=colour, ms=14, mew=2)
        else:
            side = np.sign(estimate)
            ax.plot(side * edge, y, ">" if side > 0 else "<", color=colour, ms=9)
            ax.annotate(format_change(row["estimate"], row["low"], row["high"]),
                        (side * edge, y), xytext=(-6 * side, 7), textcoords="offset points",
                        ha="right" if side > 0 else "left", fontsize=7, color=colour)
        if "paper_change" in row and np.isfinite(row["paper_change"]):
            ax.plot(np.clip(_log_ratio(row["paper_change"]), -edge, edge), y, "x", color="C3",
                    ms=8, mew=2, zorder=4)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(-edge * 1.05, edge * 1.05)
    ticks = np.log2(_RATIO_TICKS)
    ax.set_xticks(ticks, [f"{100 * (r - 1):+.0f} %" if r != 1 else "0" for r in _RATIO_TICKS])
    ax.set_yticks(range(len(claims)), list(reversed(labels)), fontsize=8)
    ax.set_xlabel(f"change of the loss, log-ratio axis (left: the second method is better; "
                  f"beyond {RATIO_LIMIT:g}x: a triangle at the edge)", fontsize=8)
    ax.set_title(title or "seeds (dots), 95 % interval (bar), paper (x)", fontsize=9)
    fig.tight_layout()
    return fig


def w_trajectories(histories: dict[str, pd.DataFrame]) -> plt.Figure:
    """The cost weights of several CAL runs side by side: w min/median/max, frozen, gamma.

    Args:
        histories: ``label -> history`` of CAL runs (e.g. the two w cadences).

    Returns:
        A figure with three panels per epoch: the weights (symlog), the number frozen and
        gamma (log), one colour per run.
    """
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for i, (label, history) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = np.arange(len(history))
        axes[0].fill_between(epochs, history["w_min"], history["w_max"], color=color, alpha=0.15)
        axes[0].plot(epochs, history["w_median"], color=color, label=f"{label}: median (band: "
                     "min-max)")
        axes[1].plot(epochs, history["w_frozen"], color=color, label=label)
        axes[2].plot(epochs, history["gamma"], color=color, label=label)
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("cost weight w")
    axes[1].set_ylabel("features frozen")
    axes[2].set_yscale("log")
    axes[2].set_ylabel(r"$\gamma = 1 / \min w$")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def versus_baseline_dots(table: pd.DataFrame) -> plt.Figure:
    """Relative change against the IR-net with its 95 % interval, one panel row per set.

    ``table`` is :func:`calkit.reporting.versus_baseline_table`; methods without a
    comparison (the IR-net itself) are skipped.
    """
    from calkit.methods import method_label

    data = table.dropna(subset=["rel"]).reset_index()
    sets = list(dict.fromkeys(data["set"]))
    methods = list(dict.fromkeys(data["method"]))
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(sets) * len(methods) ** 0.5 + 1.8))
    offsets = np.linspace(-0.3, 0.3, len(methods)) if len(methods) > 1 else [0.0]
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    for k, method in enumerate(methods):
        rows = data[data["method"] == method]
        y = np.array([sets.index(s) for s in rows["set"]]) + offsets[k]
        ax.errorbar(100 * rows["rel"], y, xerr=[100 * (rows["rel"] - rows["rel_low"]),
                                                100 * (rows["rel_high"] - rows["rel"])],
                    fmt="o", ms=4, capsize=2, color=colors[k % 10], label=method_label(method))
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(sets)), [col.set_label(s) for s in sets])
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("loss change against the IR-net (%; 95 % interval, paired by seed)")
    ax.legend(fontsize=8, ncol=min(3, len(methods)), loc="upper center",
              bbox_to_anchor=(0.5, -0.1 - 0.6 / (len(sets) + 1)), frameon=False)
    fig.tight_layout()
    return fig


def risk_coverage_curves(curves: dict[str, pd.DataFrame]) -> plt.Figure:
    """Mean absolute error of the most confident rows against the share kept, per set.

    ``curves`` maps a method to :func:`calkit.reporting.risk_curves`; one panel per method.
    """
    from calkit.methods import method_label

    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 3.8), squeeze=False)
    for ax, (method, table) in zip(axes[0], curves.items(), strict=True):
        for name in table.columns:
            ax.plot(100 * table.index, table[name], marker=".",
                    color=set_color(name) if name != "val" else SET_COLORS["validation"],
                    label=col.set_label(name) if name != "val" else "validation rows")
        ax.set_yscale("log")
        ax.set_xlabel("rows kept, most confident first (%)")
        ax.set_ylabel("mean absolute error (log)")
        ax.set_title(f"{method_label(method)}: risk-coverage")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def budget_curves(curves: pd.DataFrame, stops: pd.Series | None = None) -> plt.Figure:
    """Targeted CAL run to its full budget: one panel per measure, one line per seed.

    Args:
        curves: :func:`calkit.reporting.budget_histories`.
        stops: ``seed -> epochs`` of the twin runs that early stopping ended; drawn as a
            band of the epochs where it ended them (none: no band).

    Returns:
        A figure with the warm-up shaded and the loss on a log scale.
    """
    measures = list(dict.fromkeys(curves["measure"]))
    fig, axes = plt.subplots(1, max(len(measures), 1), figsize=(4.2 * max(len(measures), 1), 3.6),
                             sharex=True, squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=False):  # no measures: one empty panel
        part = curves[curves["measure"] == measure]
        for k, (seed, rows) in enumerate(part.groupby("seed")):
            ax.plot(rows["epoch"], rows["loss"], lw=1.1, color=f"C{k}", label=f"seed {seed}")
        warm = part.loc[~part["adversarial"].astype(bool), "epoch"]
        if len(warm):
            ax.axvspan(0.5, warm.max() + 0.5, color="#eeeeee", zorder=0, label="warm-up")
        if stops is not None and len(stops):
            ax.axvspan(stops.min() - 0.5, stops.max() + 0.5, color="#ffd8a8", alpha=0.6, zorder=0,
                       label="early stopping ended the twin run")
        ax.set_yscale("log")
        ax.set_title(measure, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("smooth-L1 loss")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=min(len(labels), 7), loc="lower center",
               frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def own_row_curves(curves: pd.DataFrame, labels: dict[str, str] | None = None) -> plt.Figure:
    """Loss on a targeted run's own N rows per epoch: one panel per target, one line per setting.

    Args:
        curves: :func:`calkit.diagnostics.own_row_curves` (``run, target_set, n_target, seed,
            epoch, loss, warmup_epochs``).
        labels: ``run -> legend label`` (default: the run key).

    Returns:
        A figure: the median over seeds as a line per setting, each seed as a thin line of the
        same colour, the warm-up shaded, the loss on a log scale. A setting whose line ends
        above the warm-up's lowest value did not learn its rows.
    """
    labels = labels or {}
    targets = list(dict.fromkeys(zip(curves["target_set"], curves["n_target"], strict=True)))
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(5.2 * max(len(targets), 1), 3.8),
                             squeeze=False)
    runs = list(dict.fromkeys(curves["run"]))
    for ax, (target, n) in zip(axes[0], targets, strict=False):
        part = curves[(curves["target_set"] == target) & (curves["n_target"] == n)]
        for k, run in enumerate(runs):
            rows = part[part["run"] == run]
            if rows.empty:
                continue
            for _, seed_rows in rows.groupby("seed"):
                ax.plot(seed_rows["epoch"] + 1, seed_rows["loss"], lw=0.6, alpha=0.35,
                        color=f"C{k}")
            median = rows.groupby("epoch")["loss"].median()
            ax.plot(median.index + 1, median.to_numpy(), lw=1.8, color=f"C{k}",
                    label=labels.get(run, run))
        warm = part["warmup_epochs"].max() if len(part) else 0
        if warm:
            ax.axvspan(0.5, warm + 0.5, color="#eeeeee", zorder=0)
        ax.set_yscale("log")
        ax.set_title(f"{col.set_label(target)}, N = {n:,}", fontsize=9)
        ax.set_xlabel("epoch (grey: warm-up)")
    axes[0][0].set_ylabel("smooth-L1 loss on its own N rows")
    handles, names = legend_entries(axes[0])
    fig.legend(handles, names, fontsize=8, ncol=min(len(names), 3), loc="lower center",
               frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.05 * ((len(names) - 1) // 3), 1, 1))
    return fig


def fit_curves(curves: pd.DataFrame, labels: dict[str, str] | None = None,
               title: str | None = None) -> plt.Figure:
    """Loss per epoch on the training rows and on validation: one panel each, a colour per run.

    Args:
        curves: :func:`calkit.replication.fit_curves` (``run, seed, epoch, measure, loss,
            warmup_epochs``).
        labels: ``run -> legend label`` (default: the run key).
        title: A title above both panels (room is kept for it).

    Returns:
        A figure: the median over seeds as a thick line per run, each seed as a thin line of
        the same colour, the warm-up of the runs that have one shaded, the loss on a log scale.
    """
    labels = labels or {}
    measures = list(dict.fromkeys(curves["measure"])) if len(curves) else []
    fig, axes = plt.subplots(1, max(len(measures), 1), figsize=(4.6 * max(len(measures), 1), 3.6),
                             sharex=True, squeeze=False)
    runs = list(dict.fromkeys(curves["run"])) if len(curves) else []
    for ax, measure in zip(axes[0], measures, strict=False):
        part = curves[curves["measure"] == measure]
        for k, run in enumerate(runs):
            rows = part[part["run"] == run]
            for _, seed_rows in rows.groupby("seed"):
                ax.plot(seed_rows["epoch"], seed_rows["loss"], lw=0.6, alpha=0.35, color=f"C{k}")
            median = rows.groupby("epoch")["loss"].median()
            ax.plot(median.index, median.to_numpy(), lw=1.8, color=f"C{k}",
                    label=labels.get(run, run))
        warm = part["warmup_epochs"].max()
        if warm:
            ax.axvspan(0.5, warm + 0.5, color="#eeeeee", zorder=0, label="CAL's warm-up")
        ax.set_yscale("log")
        ax.set_title(measure, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("smooth-L1 loss (raw model)")
    handles, names = legend_entries(axes[0])
    fig.legend(handles, names, fontsize=8, ncol=max(len(names), 1), loc="lower center",
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.93 if title else 1))
    return fig
