"""The paper's out-of-distribution (OOD) sets as boolean flags over a data table.

Each flag is a column of a boolean frame aligned with the data frame. The sets may
overlap; the training set is every row in none of them (the paper's rule).

Two validation protocols (:func:`protocol_sets`):

* ``paper``: the five random 15 % "validation" splits ``Rsplt1..5`` are drawn from all rows,
  as in the paper, so they hold about half of every OOD set and early stopping and model
  selection see OOD rows. It is also why the paper's training set (22,483 of 83,989 rows) is
  so much smaller than the OOD sets suggest.
* ``clean``: the splits ``Csplt1..5`` are drawn only from rows in no OOD set. Five splits of
  15 % of all rows do not fit there, so the clean training set keeps the paper protocol's
  training-set size and the remaining non-OOD rows are shared equally by the five splits.

The set flags of each registered data set are computed once and shipped inside the package
(``calkit/resources/sets``), like matbench's fixed folds: the covariate set comes from a UMAP
embedding, which is not bit-stable across machines, so the shipped file, not a recompute, is
the protocol (:func:`load_shipped_sets`; ``calkit sets`` rewrites them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter, map_coordinates
from sklearn.neighbors import NearestNeighbors

from calkit import columns as col
from calkit.columns import Tail
from calkit.files import atomic_write, cache_dir
from calkit.holdouts import cluster_holdout, contains_element
from calkit.utils import SetMasks, as_mask_dict

Embedding = Literal["umap", "tsne"]
"""How the covariate set's 2-D map is made."""
PriorTail = Literal["upper", "lower", "both"]
"""Which tail(s) of the target form prior-shift sets; ``"both"``: one set per tail."""


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
        prior_fraction: Share of the target's tail in the prior-shift set.
        prior_tail: ``"lower"`` or ``"upper"`` tail of the target; ``None`` takes the data
            set's default (formation energy: lower, as the paper; phonon peaks: upper);
            ``"both"``: two sets, one per tail (the benchmark tasks, whose discovery direction
            is not one tail).
        extreme_quantiles: Targets outside these quantiles form the extreme set.
        high_gap_quantile: Band gaps above this quantile form the high-gap set.
        gap_prior_fraction: Share of the band-gap prior-shift tail.
        gap_prior_tail: ``"upper"`` or ``"lower"``; the paper does not say. The lower tail is
            ill-defined on MP data (48 % of the band gaps are exactly 0), so ``"upper"``
            is the default.
        n_random_splits: Number of random validation splits.
        random_fraction: Size of each random split, as a share of all rows.
        element_holdouts: Elements whose compounds each form a leave-one-element-out set
            (:mod:`calkit.holdouts`).
        cluster_k: k of the k-means leave-one-cluster-out set; 0: no cluster set.
        validation_share: Share of the rows in no OOD set that the clean splits take. ``None``:
            the paper protocol's rule (the clean training set keeps the paper's training-set
            size, so the splits take about 56 % of those rows).
    """

    seed: int = 0
    covariate_fraction: float = 0.15
    covariate_embedding: Embedding = "umap"
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    kde_grid: int = 512
    prior_fraction: float = 0.10
    prior_tail: PriorTail | None = None
    extreme_quantiles: tuple[float, float] = (0.05, 0.95)
    high_gap_quantile: float = 0.95
    gap_prior_fraction: float = 0.10
    gap_prior_tail: Tail = "upper"
    n_random_splits: int = 5
    random_fraction: float = 0.15
    element_holdouts: tuple[str, ...] = ()
    cluster_k: int = 0
    validation_share: float | None = None

    def __post_init__(self) -> None:
        if self.covariate_embedding not in ("umap", "tsne"):
            raise ValueError(
                f"covariate_embedding must be 'umap' or 'tsne', got {self.covariate_embedding!r}"
            )
        if self.prior_tail not in (None, "upper", "lower", "both"):
            raise ValueError(
                f"prior_tail must be None, 'upper', 'lower' or 'both', got {self.prior_tail!r}")
        if self.cluster_k < 0 or self.cluster_k == 1:
            raise ValueError(f"cluster_k must be 0 (no cluster set) or at least 2, got "
                             f"{self.cluster_k}")
        if self.validation_share is not None and not 0 < self.validation_share < 1:
            raise ValueError(f"validation_share must be in (0, 1) or None, got "
                             f"{self.validation_share}")
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
        """JSON-serialisable form, stored with every saved set table.

        ``prior_tail`` and the hold-out fields appear only when set, so the constructions
        recorded before they existed keep their hashes.
        """
        out = dataclasses.asdict(self)
        for name, unset in _ADDED_FIELDS.items():
            if out[name] == unset:
                del out[name]
        if "element_holdouts" in out:
            out["element_holdouts"] = list(out["element_holdouts"])
        return out


_ADDED_FIELDS = {"prior_tail": None, "element_holdouts": (), "cluster_k": 0,
                 "validation_share": None}
"""Fields added after sets were first recorded, with the value that leaves them out of hashes."""


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
        with atomic_write(path) as tmp, tmp.open("wb") as handle:
            np.save(handle, embedding)
    return embedding


def kernel_density_2d(points: np.ndarray, grid: int = 512,
                      reference: np.ndarray | None = None) -> np.ndarray:
    """Gaussian kernel density at each 2-D point, by binning and smoothing on a grid.

    A direct KDE over 84k points is quadratic; binning to a ``grid x grid`` histogram,
    smoothing with a Gaussian of Scott's bandwidth and interpolating back is linear and
    ranks points the same way up to the bin width.

    Args:
        points: ``(n, 2)`` points to evaluate the density at.
        grid: Bins per axis.
        reference: Points whose density it is (default: ``points`` themselves).
    """
    points = np.asarray(points, dtype=np.float64)
    source = points if reference is None else np.asarray(reference, dtype=np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    coords = (points - lo) / span * (grid - 1)
    source_coords = coords if reference is None else (source - lo) / span * (grid - 1)
    hist, _, _ = np.histogram2d(
        source_coords[:, 0], source_coords[:, 1], bins=grid,
        range=[[0, grid - 1], [0, grid - 1]]
    )
    bandwidth = source.std(axis=0) * len(source) ** (-1.0 / 6.0)  # Scott's rule in 2-D
    sigma = np.maximum(bandwidth / span * (grid - 1), 0.5)
    density = gaussian_filter(hist, sigma=sigma, mode="constant")
    return map_coordinates(density, coords.T, order=1, mode="nearest")


def cluster_relation(embedding: np.ndarray, train: np.ndarray, local_quantile: float = 0.05,
                     global_quantile: float = 0.95, grid: int = 512) -> pd.DataFrame:
    """How each row relates to the training rows' local clusters and global structure.

    The paper's figure 5 marks OOD rows by their relation to "local clusters" and the "global
    structure" without defining either. calkit's definitions, on the 2-D map:

    * **outside local clusters**: the row's kernel density *of training rows* is below the
      ``local_quantile`` of the training rows' own (it sits between clusters);
    * **outside the global structure**: its Mahalanobis distance from the training rows'
      centre exceeds the ``global_quantile`` of the training rows' own (it sits beyond the
      cloud as a whole).

    Args:
        embedding: ``(n, 2)`` coordinates of every row.
        train: Mask of the training rows.
        local_quantile: Density quantile below which a row is outside local clusters.
        global_quantile: Distance quantile above which a row is outside the global structure.
        grid: Grid of the binned kernel density.

    Returns:
        Frame with boolean ``outside_local`` and ``outside_global`` columns, one row per row.
    """
    points = np.asarray(embedding, dtype=np.float64)
    train = np.asarray(train, dtype=bool)
    density = kernel_density_2d(points, grid=grid, reference=points[train])
    centre = points[train].mean(axis=0)
    inverse = np.linalg.pinv(np.cov(points[train].T))
    delta = points - centre
    distance = np.sqrt(np.einsum("ij,jk,ik->i", delta, inverse, delta))
    return pd.DataFrame({
        "outside_local": density < np.quantile(density[train], local_quantile),
        "outside_global": distance > np.quantile(distance[train], global_quantile),
    })


RELATION_CLASSES = {(False, False): "inside both", (True, False): "outside local clusters only",
                    (False, True): "outside the global structure only",
                    (True, True): "outside both"}
"""Readable names of the ``(outside_local, outside_global)`` classes of :func:`cluster_relation`."""


def relation_counts(relation: pd.DataFrame, sets: pd.DataFrame,
                    names: tuple[str, ...]) -> pd.DataFrame:
    """Rows of each set in each class of :func:`cluster_relation` (sets as columns)."""
    keys = list(zip(relation["outside_local"], relation["outside_global"], strict=True))
    classes = pd.Series([RELATION_CLASSES[k] for k in keys], index=sets.index)
    table = pd.DataFrame({col.set_label(n): classes[sets[n].to_numpy()].value_counts()
                          for n in (col.TRAIN, *names)})
    return table.reindex(list(RELATION_CLASSES.values())).fillna(0).astype(int)


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
    target: str = col.DELTA_E,
    prior_tail: str = "lower",
) -> pd.DataFrame:
    """Flag every row for each of the paper's sets.

    Args:
        frame: A calkit frame (``id``, the ``target`` column and, if present, ``band_gap``).
        features: Raw features aligned with ``frame`` (standardised over all rows here).
        config: The split parameters.
        relation_ids: Ids of the relation-shift (piezo) rows; omitted when ``None``.
        embedding: A precomputed 2-D embedding; computed (and cached) when ``None``.
        target: The property whose tails form the prior and extreme sets.
        prior_tail: The data set's default tail for the prior set (``config.prior_tail``
            overrides it).

    Returns:
        A boolean frame with one column per set (paper names, see :mod:`calkit.columns`)
        and a final ``train`` column: rows in none of the other sets.
    """
    config = config or SplitConfig()
    if len(frame) != len(features):
        raise ValueError(f"frame has {len(frame)} rows but features have {len(features)}")
    if target not in frame:
        raise KeyError(f"the OOD sets need the target column {target!r}; the frame has "
                       f"{list(frame.columns)}")
    n_rows = len(frame)
    flags: dict[str, np.ndarray] = {}
    standardized = standardize_all(features)  # the covariate map's and the clusters' input

    if embedding is None:
        embedding = embed_2d(
            standardized,
            method=config.covariate_embedding,
            seed=config.seed,
            n_neighbors=config.umap_neighbors,
            min_dist=config.umap_min_dist,
        )
    density = kernel_density_2d(embedding, grid=config.kde_grid)
    covariate = col.COVARIATE if config.covariate_embedding == "umap" else col.COVARIATE_TSNE
    flags[covariate] = lowest_fraction(density, config.covariate_fraction)

    values = frame[target].to_numpy(dtype=float)
    tail = config.prior_tail or prior_tail
    if tail == "both":
        for side in ("lower", "upper"):
            flags[col.tail_prior_set(target, side)] = lowest_fraction(
                -values if side == "upper" else values, config.prior_fraction)
    else:
        flags[col.prior_set(target)] = lowest_fraction(-values if tail == "upper" else values,
                                                       config.prior_fraction)
    q_lo, q_hi = np.quantile(values, config.extreme_quantiles)
    flags[col.extreme_set(target)] = (values < q_lo) | (values > q_hi)

    if col.BAND_GAP in frame and target != col.BAND_GAP:
        gap = frame[col.BAND_GAP].to_numpy(dtype=float)
        flags[col.HIGH_GAP] = gap > np.quantile(gap, config.high_gap_quantile)
        tail_values = -gap if config.gap_prior_tail == "upper" else gap
        flags[col.GAP_PRIOR] = lowest_fraction(tail_values, config.gap_prior_fraction)

    if relation_ids is not None:
        flags[col.RELATION] = frame[col.ID].isin(relation_ids).to_numpy()
    for element in config.element_holdouts:
        flags[col.element_set(element)] = contains_element(frame[col.FORMULA], element)
    if config.cluster_k:
        flags[col.CLUSTER] = cluster_holdout(standardized, config.cluster_k,
                                             config.seed)

    ood = np.logical_or.reduce(list(flags.values()))
    rng = np.random.default_rng(config.seed)
    n_random = int(round(config.random_fraction * n_rows))
    for name in col.RANDOM_SPLITS[: config.n_random_splits]:
        mask = np.zeros(n_rows, dtype=bool)
        mask[rng.choice(n_rows, size=n_random, replace=False)] = True
        flags[name] = mask
    splits_used = col.RANDOM_SPLITS[: config.n_random_splits]
    paper_val = np.logical_or.reduce([flags[n] for n in splits_used])
    n_train = (int((~ood & ~paper_val).sum()) if config.validation_share is None
               else int(round((1 - config.validation_share) * (~ood).sum())))
    flags.update(clean_splits(ood, n_train, config.n_random_splits, config.seed))
    return pd.DataFrame(flags, index=frame.index)


def clean_splits(ood: np.ndarray, n_train: int, n_splits: int, seed: int) -> dict[str, np.ndarray]:
    """Validation splits drawn only from rows outside every OOD set (the clean protocol).

    Args:
        ood: Mask of the rows in any OOD set.
        n_train: Rows of the non-OOD pool left for training (the paper protocol's count).
        n_splits: Number of splits.
        seed: Seed of the draw.

    Returns:
        ``Csplt1..n`` masks: the non-OOD rows minus ``n_train`` of them, in equal parts.
    """
    pool = np.flatnonzero(~ood)
    n_val = len(pool) - min(n_train, len(pool) - n_splits)
    chosen = np.random.default_rng([seed, 0xC1EA]).permutation(pool)[:n_val]
    out = {}
    for name, part in zip(col.CLEAN_SPLITS[:n_splits], np.array_split(chosen, n_splits),
                          strict=True):
        mask = np.zeros(len(ood), dtype=bool)
        mask[part] = True
        out[name] = mask
    return out


def set_agreement(reference: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """How far two flag tables over the same rows agree, set by set.

    Args:
        reference: Flags, one boolean column per set (e.g. a shipped set file).
        other: Flags over the same rows (e.g. the sets recomputed on this machine).

    Returns:
        One row per set the two share: ``n reference``, ``n other``, ``shared`` (rows in both)
        and ``identical`` (the same rows exactly).

    Raises:
        ValueError: If the tables cover different numbers of rows.
    """
    if len(reference) != len(other):
        raise ValueError(f"the tables cover {len(reference)} and {len(other)} rows; compare flags "
                         "over the same rows")
    rows = {}
    for name in [c for c in reference.columns if c in other.columns]:
        a, b = reference[name].to_numpy(dtype=bool), other[name].to_numpy(dtype=bool)
        rows[name] = {"n reference": int(a.sum()), "n other": int(b.sum()),
                      "shared": int((a & b).sum()), "identical": bool((a == b).all())}
    return pd.DataFrame.from_dict(rows, orient="index")


def protocol_sets(sets: pd.DataFrame, protocol: str = "clean") -> pd.DataFrame:
    """The OOD flags, the protocol's validation splits and the training rows.

    Args:
        sets: Flags from :func:`build_sets` (or a shipped set file): OOD sets and both
            protocols' splits.
        protocol: ``"clean"`` (validation rows in no OOD set) or ``"paper"``.

    Returns:
        A boolean frame without the other protocol's splits, with a final ``train`` column:
        rows in no OOD set and no validation split.
    """
    if protocol not in col.PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(col.PROTOCOLS)}.")
    other = {s for p, names in col.PROTOCOLS.items() if p != protocol for s in names}
    keep = [c for c in sets.columns if c not in other and c != col.TRAIN]
    out = sets[keep].astype(bool).copy()
    out[col.TRAIN] = ~out.any(axis=1)
    return out


def size_table(sets: pd.DataFrame) -> pd.DataFrame:
    """Sizes of every set beside the paper's, with shares of the table."""
    rows = []
    for name in sets.columns:
        n = int(sets[name].sum())
        paper = PAPER_SIZES.get(name)
        rows.append(
            {
                "set": name,
                "label": col.set_label(name),
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
    with atomic_write(path) as tmp:
        sets.astype(np.uint8).to_csv(tmp, index=False, compression="gzip")
    with atomic_write(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(config.to_dict(), indent=2))


SETS_VERSION = 1
"""Version of the shipped set files; bump it when their construction changes."""


def shipped_sets_path(dataset: str, max_rows: int | None) -> Path:
    """Where the shipped set file of a data set (or of its ``max_rows`` subsample) lives."""
    size = "all" if max_rows is None else str(max_rows)
    folder = Path(__file__).parent / "resources" / "sets"
    return folder / f"{dataset}-{size}-v{SETS_VERSION}.csv.gz"


def write_set_file(path: Path, ids: pd.Series, sets: pd.DataFrame, config: SplitConfig,
                   note: dict | None = None) -> dict:
    """Write ids and 0/1 flags (gzip CSV, reproducible bytes) and a JSON of how they were made."""
    import gzip
    import io
    import platform
    from importlib.metadata import version

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.concat([ids.rename(col.ID).reset_index(drop=True),
                       sets.drop(columns=[col.TRAIN], errors="ignore").astype(np.uint8)
                       .reset_index(drop=True)], axis=1)
    text = table.to_csv(index=False).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:  # mtime 0: stable bytes
        handle.write(text)
    path.write_bytes(buffer.getvalue())
    meta = {"version": SETS_VERSION, "rows": len(table), "columns": list(table.columns[1:]),
            "split_config": config.to_dict(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "made_with": {"umap-learn": version("umap-learn"), "numpy": version("numpy"),
                          "machine": platform.machine()}, **(note or {})}
    path.with_suffix("").with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def set_file_meta(path: Path) -> dict:
    """The JSON description written beside a set file."""
    return json.loads(path.with_suffix("").with_suffix(".json").read_text())


def load_shipped_sets(path: Path, ids: pd.Series) -> pd.DataFrame:
    """Read a shipped set file and align it with a data frame's ids.

    Raises:
        ValueError: If the file is corrupted (hash mismatch) or its ids are not the frame's.
    """
    meta = set_file_meta(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != meta["sha256"]:
        raise ValueError(f"{path} has sha256 {digest[:12]}..., not {meta['sha256'][:12]}... as "
                         "its .json says: the file is corrupted. Restore it with git "
                         "(git checkout -- calkit/resources/sets) or rebuild the sets with "
                         "`calkit sets`.")
    table = pd.read_csv(path, keep_default_na=False, dtype={col.ID: str})
    if len(table) != len(ids) or not (table[col.ID].to_numpy() == ids.to_numpy()).all():
        raise ValueError(f"{path.name} holds {len(table)} rows whose ids do not match the "
                         f"{len(ids)} rows of the data: the data file changed. Rebuild the "
                         "sets (`calkit sets`) or pass sets_source='compute'.")
    return table.drop(columns=[col.ID]).astype(bool)


def select_target(sets: SetMasks, target_set: str, n_target: int, seed: int = 3141,
                  n_rows: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw ``n_target`` rows of an OOD set once and remove them from every evaluation set.

    Args:
        sets: Boolean masks.
        target_set: Name or alias (``"relation"``) of the set to target.
        n_target: Number of rows to draw (all of the set if larger).
        seed: Seed of the draw (paper 3141).
        n_rows: Number of rows (inferred from the masks when omitted).

    Returns:
        ``(indices, new_sets)``: sorted row indices of the drawn samples, and masks where
        those rows are removed from every set (so ``target_set`` is evaluated on the
        rows not used for training) plus a new set ``"<target_set>_target"`` holding them.
    """
    first = next(iter(sets.values())) if not isinstance(sets, pd.DataFrame) else sets.iloc[:, 0]
    masks = as_mask_dict(sets, len(first) if n_rows is None else n_rows)
    name = col.resolve_set_name(target_set, list(masks))
    if n_target < 1:
        raise ValueError(f"n_target must be >= 1 for a targeted method, got {n_target}.")
    rows = np.flatnonzero(masks[name])
    if len(rows) < 1:
        raise ValueError(f"target set {name!r} is empty; choose another target set.")
    n = min(n_target, len(rows))
    idx = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    drawn = np.zeros_like(masks[name])
    drawn[idx] = True
    new = {k: m & ~drawn for k, m in masks.items()}
    new[col.own_rows(name)] = drawn
    return idx, new
