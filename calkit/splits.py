"""The paper's out-of-distribution (OOD) sets as boolean flags over a data table.

Each flag is a column of a boolean frame aligned with the data frame. The sets may
overlap; the training set is every row in none of them (the paper's rule). The five random
15 % "validation" splits are drawn from all rows, as in the paper, which is why its
training set (22,483 of 83,989 rows) is so much smaller than the OOD sets suggest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter, map_coordinates
from sklearn.neighbors import NearestNeighbors

from calkit import columns as col
from calkit.data import cache_dir

# Sizes the paper reports on its 83,989-row table, for side-by-side tables.
PAPER_SIZES = {
    col.COVARIATE: 12_571,
    col.PRIOR: 8_381,
    col.EXTREME: 8_382,
    col.HIGH_GAP: 4_191,
    col.GAP_PRIOR: 8_381,
    col.RELATION: 382,
    **{name: 12_571 for name in col.RANDOM_SPLITS},
    col.TRAIN: 22_483,
}
PAPER_TOTAL = 83_989


@dataclass(frozen=True)
class SplitConfig:
    """How the OOD sets are built. Every inferred choice is a field.

    Attributes:
        seed: Seed of the embedding and of the random splits.
        covariate_fraction: Share of rows in the covariate set (the sparsest ones).
        covariate_embedding: ``"umap"`` (paper) or ``"tsne"``.
        umap_neighbors: ``n_neighbors`` of the unsupervised covariate UMAP (inferred).
        umap_min_dist: ``min_dist`` of that UMAP (inferred).
        kde_grid: Grid size of the binned Gaussian kernel density on the 2-D embedding.
        prior_fraction: Lowest-delta_e share in the prior-shift set.
        extreme_quantiles: delta_e outside these quantiles forms the extreme set.
        high_gap_quantile: Band gaps above this quantile form the high-gap set.
        gap_prior_fraction: Share of the band-gap prior-shift tail.
        gap_prior_tail: ``"upper"`` or ``"lower"``; the paper does not say. The lower tail is
            ill-defined on MP data (48 % of the band gaps are exactly 0), so ``"upper"``
            is the default.
        n_random_splits: Number of random validation splits.
        random_fraction: Size of each random split, as a share of all rows.
    """

    seed: int = 0
    covariate_fraction: float = 0.15
    covariate_embedding: str = "umap"
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    kde_grid: int = 512
    prior_fraction: float = 0.10
    extreme_quantiles: tuple[float, float] = (0.05, 0.95)
    high_gap_quantile: float = 0.95
    gap_prior_fraction: float = 0.10
    gap_prior_tail: str = "upper"
    n_random_splits: int = 5
    random_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.covariate_embedding not in ("umap", "tsne"):
            raise ValueError(
                f"covariate_embedding must be 'umap' or 'tsne', got {self.covariate_embedding!r}"
            )
        if self.gap_prior_tail not in ("upper", "lower"):
            raise ValueError(
                f"gap_prior_tail must be 'upper' or 'lower', got {self.gap_prior_tail!r}"
            )
        for name in (
            "covariate_fraction",
            "prior_fraction",
            "gap_prior_fraction",
            "random_fraction",
        ):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"{name} must be in (0, 1), got {value}")

    def to_dict(self) -> dict:
        """JSON-serialisable form, stored with every saved set table."""
        return dataclasses.asdict(self)


def standardize_all(features: np.ndarray) -> np.ndarray:
    """Z-score every column over all rows (NaN -> 0), for the covariate embedding.

    The covariate set has to be defined before the training rows exist, so its embedding
    sees all rows; the model's own scaler is fitted later on the training rows.
    """
    values = np.asarray(features, dtype=np.float64)
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(std > 0, std, 1.0)
    return np.nan_to_num((values - mean) / std).astype(np.float32)


def embed_2d(
    features: np.ndarray,
    method: str = "umap",
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
    target: np.ndarray | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """2-D embedding of standardised features, cached on disk.

    Args:
        features: Standardised features, rows x features.
        method: ``"umap"`` or ``"tsne"``.
        seed: Random state (a seeded UMAP runs single-threaded and is reproducible).
        n_neighbors: UMAP neighbourhood size.
        min_dist: UMAP minimum distance.
        metric: Distance metric.
        target: If given, a supervised UMAP on this target (the paper's figure).
        use_cache: Read and write the embedding cache.

    Returns:
        Array of shape ``(rows, 2)``.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    digest = hashlib.sha256(features.tobytes())
    params = [method, seed, n_neighbors, min_dist, metric]
    digest.update(json.dumps(params).encode())
    if target is not None:
        digest.update(np.ascontiguousarray(target, dtype=np.float64).tobytes())
    path = cache_dir("embeddings") / f"{method}-{digest.hexdigest()[:24]}.npy"
    if use_cache and path.is_file():
        return np.load(path)
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            random_state=seed,
            target_metric="l2" if target is not None else "categorical",
        )
        with warnings.catch_warnings():
            # A seeded UMAP runs on one thread and says so on every call.
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            embedding = reducer.fit_transform(features, y=target)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        embedding = TSNE(n_components=2, random_state=seed, init="pca").fit_transform(features)
    else:
        raise ValueError(f"unknown embedding method {method!r}; use 'umap' or 'tsne'")
    embedding = np.asarray(embedding, dtype=np.float32)
    if use_cache:
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npy", delete=False) as tmp:
            np.save(tmp, embedding)
        os.replace(tmp.name, path)
    return embedding


def kernel_density_2d(points: np.ndarray, grid: int = 512) -> np.ndarray:
    """Gaussian kernel density at each 2-D point, by binning and smoothing on a grid.

    A direct KDE over 84k points is quadratic; binning to a ``grid x grid`` histogram,
    smoothing with a Gaussian of Scott's bandwidth and interpolating back is linear and
    ranks points the same way up to the bin width.
    """
    points = np.asarray(points, dtype=np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    coords = (points - lo) / span * (grid - 1)
    hist, _, _ = np.histogram2d(
        coords[:, 0], coords[:, 1], bins=grid, range=[[0, grid - 1], [0, grid - 1]]
    )
    bandwidth = points.std(axis=0) * len(points) ** (-1.0 / 6.0)  # Scott's rule in 2-D
    sigma = np.maximum(bandwidth / span * (grid - 1), 0.5)
    density = gaussian_filter(hist, sigma=sigma, mode="constant")
    return map_coordinates(density, coords.T, order=1, mode="nearest")


def lowest_fraction(values: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the ``fraction`` of rows with the lowest values (ties broken by position)."""
    n_pick = int(round(fraction * len(values)))
    order = np.argsort(values, kind="stable")
    mask = np.zeros(len(values), dtype=bool)
    mask[order[:n_pick]] = True
    return mask


def build_sets(
    frame: pd.DataFrame,
    features: np.ndarray,
    config: SplitConfig | None = None,
    relation_ids: set[str] | None = None,
    embedding: np.ndarray | None = None,
) -> pd.DataFrame:
    """Flag every row for each of the paper's sets.

    Args:
        frame: A calkit frame (``id``, ``delta_e`` and, if present, ``band_gap``).
        features: Raw features aligned with ``frame`` (standardised over all rows here).
        config: The split parameters.
        relation_ids: Ids of the relation-shift (piezo) rows; omitted when ``None``.
        embedding: A precomputed 2-D embedding; computed (and cached) when ``None``.

    Returns:
        A boolean frame with one column per set (paper names, see :mod:`calkit.columns`)
        and a final ``train`` column: rows in none of the other sets.
    """
    config = config or SplitConfig()
    if len(frame) != len(features):
        raise ValueError(f"frame has {len(frame)} rows but features have {len(features)}")
    if col.DELTA_E not in frame:
        raise KeyError(
            f"the OOD sets need a {col.DELTA_E!r} column; frame has {list(frame.columns)}"
        )
    n_rows = len(frame)
    flags: dict[str, np.ndarray] = {}

    if embedding is None:
        embedding = embed_2d(
            standardize_all(features),
            method=config.covariate_embedding,
            seed=config.seed,
            n_neighbors=config.umap_neighbors,
            min_dist=config.umap_min_dist,
        )
    density = kernel_density_2d(embedding, grid=config.kde_grid)
    covariate = col.COVARIATE if config.covariate_embedding == "umap" else col.COVARIATE_TSNE
    flags[covariate] = lowest_fraction(density, config.covariate_fraction)

    delta_e = frame[col.DELTA_E].to_numpy(dtype=float)
    flags[col.PRIOR] = lowest_fraction(delta_e, config.prior_fraction)
    q_lo, q_hi = np.quantile(delta_e, config.extreme_quantiles)
    flags[col.EXTREME] = (delta_e < q_lo) | (delta_e > q_hi)

    if col.BAND_GAP in frame:
        gap = frame[col.BAND_GAP].to_numpy(dtype=float)
        flags[col.HIGH_GAP] = gap > np.quantile(gap, config.high_gap_quantile)
        tail_values = -gap if config.gap_prior_tail == "upper" else gap
        flags[col.GAP_PRIOR] = lowest_fraction(tail_values, config.gap_prior_fraction)

    if relation_ids is not None:
        flags[col.RELATION] = frame[col.ID].isin(relation_ids).to_numpy()

    rng = np.random.default_rng(config.seed)
    n_random = int(round(config.random_fraction * n_rows))
    for name in col.RANDOM_SPLITS[: config.n_random_splits]:
        mask = np.zeros(n_rows, dtype=bool)
        mask[rng.choice(n_rows, size=n_random, replace=False)] = True
        flags[name] = mask

    sets = pd.DataFrame(flags, index=frame.index)
    sets[col.TRAIN] = ~sets.any(axis=1)
    return sets


def size_table(sets: pd.DataFrame) -> pd.DataFrame:
    """Sizes of every set beside the paper's, with shares of the table."""
    rows = []
    for name in sets.columns:
        n = int(sets[name].sum())
        paper = PAPER_SIZES.get(name)
        rows.append(
            {
                "set": name,
                "label": col.SET_LABELS.get(name, name),
                "n": n,
                "share": n / len(sets),
                "paper n": paper,
                "paper share": paper / PAPER_TOTAL if paper else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("set")


def distance_to_training(
    features: np.ndarray,
    sets: pd.DataFrame,
    k: int = 5,
    max_rows: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean k-nearest-neighbour distance from each set to the training rows.

    OOD has to be shown, not assumed: a set whose rows sit as close to the training rows as
    the training rows sit to each other is not out of distribution in feature space. The
    ratio column divides by the training rows' own (leave-one-out) mean kNN distance.

    Args:
        features: Standardised features, rows x features.
        sets: Boolean set frame from :func:`build_sets`.
        k: Neighbours per query.
        max_rows: Rows sampled (seeded) per set to keep the cost bounded.
        seed: Sampling seed.

    Returns:
        Frame indexed by set with ``mean_knn_distance`` and ``ratio_to_train``.
    """
    rng = np.random.default_rng(seed)
    train_idx = np.flatnonzero(sets[col.TRAIN].to_numpy())
    if len(train_idx) <= k:
        raise ValueError(f"need more than k={k} training rows, have {len(train_idx)}")
    index = NearestNeighbors(n_neighbors=k + 1).fit(features[train_idx])

    def sample(rows: np.ndarray) -> np.ndarray:
        return rows if len(rows) <= max_rows else rng.choice(rows, max_rows, replace=False)

    own = sample(train_idx)
    # The nearest neighbour of a training row is itself; drop that column.
    train_dist = index.kneighbors(features[own])[0][:, 1:].mean()
    rows = [{"set": col.TRAIN, "n": len(train_idx), "mean_knn_distance": train_dist}]
    for name in sets.columns:
        if name == col.TRAIN:
            continue
        members = np.flatnonzero(sets[name].to_numpy())
        if len(members) == 0:
            continue
        dist = index.kneighbors(features[sample(members)], n_neighbors=k)[0].mean()
        rows.append({"set": name, "n": len(members), "mean_knn_distance": dist})
    table = pd.DataFrame(rows).set_index("set")
    table["ratio_to_train"] = table["mean_knn_distance"] / train_dist
    return table


def save_sets(sets: pd.DataFrame, config: SplitConfig, path: Path) -> None:
    """Write the flags (as a compressed CSV of 0/1) and their parameters next to them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sets.astype(np.uint8).to_csv(path, index=False, compression="gzip")
    path.with_suffix(".json").write_text(json.dumps(config.to_dict(), indent=2))
