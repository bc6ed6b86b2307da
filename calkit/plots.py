"""Figures for the book. Each function returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

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
            embedding[pick, 0], embedding[pick, 1], s=size, alpha=0.6, lw=0,
            color=SET_COLORS.get(name, "k"),
            label=f"{col.SET_LABELS.get(name, name)} ({int((labels == name).sum()):,})",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8, loc="best", frameon=True)
    fig.tight_layout()
    return fig


def prior_shift_histogram(frame: pd.DataFrame, sets: pd.DataFrame) -> plt.Figure:
    """delta_e of the training rows against the prior-shift and extreme sets (log counts)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    bins = np.linspace(frame[col.DELTA_E].min(), frame[col.DELTA_E].max(), 90)
    for name in (col.TRAIN, col.EXTREME, col.PRIOR):
        ax.hist(
            frame.loc[sets[name], col.DELTA_E], bins=bins, alpha=0.55, log=True,
            color=SET_COLORS[name], label=f"{col.SET_LABELS[name]} ({int(sets[name].sum()):,})",
        )
    ax.set_xlabel(r"$\Delta E_f$ (eV/atom)")
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def covariate_density(embedding: np.ndarray, density: np.ndarray, covariate: np.ndarray) -> plt.Figure:
    """The covariate set on the embedding: kernel density and the sparsest rows picked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    order = np.argsort(density)
    sc = axes[0].scatter(
        embedding[order, 0], embedding[order, 1], c=np.log10(density[order] + 1e-12), s=2, lw=0,
        cmap="viridis",
    )
    fig.colorbar(sc, ax=axes[0], label="log10 kernel density")
    axes[0].set_title("density on the 2-D UMAP")
    axes[1].scatter(embedding[~covariate, 0], embedding[~covariate, 1], s=2, lw=0, color="#cccccc")
    axes[1].scatter(
        embedding[covariate, 0], embedding[covariate, 1], s=2, lw=0, color=SET_COLORS[col.COVARIATE],
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
    colors = [SET_COLORS.get(name, SET_COLORS["validation"]) for name in data.index]
    ax.barh([col.SET_LABELS.get(n, n) for n in data.index], data["ratio_to_train"], color=colors)
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
