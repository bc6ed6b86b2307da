"""The data pipeline shared by notebooks, runs and the sweep.

``prepare_data`` is the one place where a data set becomes model inputs:
load -> (profile subsample) -> 145 features -> OOD sets -> scaler fitted on the training
rows. Every step below it is cached, so notebooks can call it freely.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.data import DATASETS, cache_dir, check_dataset_name, load_dataset, relation_ids
from calkit.features import FeatureScaler, featurize, scale_features
from calkit.profiles import check_profile
from calkit.splits import (
    SETS_VERSION,
    SplitConfig,
    build_sets,
    embed_2d,
    load_shipped_sets,
    protocol_sets,
    save_sets,
    shipped_sets_path,
    standardize_all,
    write_set_file,
)

TARGETED_DATASETS = tuple(name for name, info in DATASETS.items() if col.DELTA_E in info.targets)
SUBSAMPLE_SEED = 0
"""Seed of a profile's row subsample (the same rows for every model seed)."""
FIT_ON = "train"
"""Rows the feature scaler is fitted on in recorded runs (the paper used ``"all"``)."""
CLIP = 10.0
"""Bound on standardised feature values in recorded runs (the near-constant-feature guard)."""


@dataclass
class DataBundle:
    """Everything a model run needs, aligned row by row.

    Attributes:
        dataset: Data set name.
        profile: Profile name.
        frame: The calkit frame (id, formula, composition, targets).
        raw_features: Unscaled 145 features.
        X: Scaled float32 features (scaler fitted per ``fit_on``).
        y: float32 ``delta_e`` in eV/atom.
        sets: Boolean frame of the OOD flags, the protocol's validation splits and ``train``.
        scaler: The fitted :class:`~calkit.features.FeatureScaler`.
        split_config: The parameters the sets were built with.
        fit_on: ``"train"`` or ``"all"``.
        protocol: ``"clean"`` or ``"paper"`` (:func:`calkit.splits.protocol_sets`).
        sets_source: ``"shipped"`` (the package's fixed set file) or ``"computed"``.
    """

    dataset: str
    profile: str
    frame: pd.DataFrame
    raw_features: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    sets: pd.DataFrame
    scaler: FeatureScaler
    split_config: SplitConfig
    fit_on: str
    protocol: str = "paper"
    sets_source: str = "computed"

    @property
    def feature_names(self) -> list[str]:
        """The 145 feature names."""
        return list(self.raw_features.columns)

    def masks(self) -> dict[str, np.ndarray]:
        """Set flags as a ``name -> bool array`` dict, the form training code takes."""
        return {name: self.sets[name].to_numpy() for name in self.sets.columns}


def subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """Seeded subsample of ``max_rows`` rows (all rows when ``None`` or fewer)."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def figure_sample(n_rows: int, k: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of ``k`` row indices for figures.

    The stream is derived from ``(seed, "figure")`` rather than ``seed`` alone: with the same
    generator seed, ``choice(n, 20000)`` would begin with the rows of the first random split
    and over-represent them in the figure.
    """
    rng = np.random.default_rng([seed, 0xF16])
    return np.sort(rng.choice(n_rows, min(k, n_rows), replace=False))


def _sets_cache_path(frame: pd.DataFrame, config: SplitConfig, dataset: str):
    digest = hashlib.sha256()
    digest.update("\n".join(frame[col.ID]).encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(f"sets-v{SETS_VERSION}".encode())  # v1 caches had no clean splits
    return cache_dir("sets") / f"{dataset}-{digest.hexdigest()[:16]}.csv.gz"


def prepare_data(
    dataset: str = "mp2019",
    profile: str = "cpu",
    seed: int = 0,
    split_config: SplitConfig | None = None,
    fit_on: str = FIT_ON,
    clip: float | None = CLIP,
    progress: bool = True,
    protocol: str = "clean",
    sets_source: str = "shipped",
) -> DataBundle:
    """Load, featurise, split and scale a data set for the given profile.

    Args:
        dataset: A data set with ``delta_e`` (``mp2019`` or ``mp_nostruct_20181018``).
        profile: ``smoke``, ``cpu`` or ``paper``.
        seed: Seed of the subsample (smoke) and, unless ``split_config`` is given, the sets.
            The paper used one fixed set of splits; calkit keeps the splits of seed 0 for
            every model seed by default (pass ``split_config`` to vary them).
        split_config: Parameters of the OOD sets; ``SplitConfig(seed=0)`` by default.
        fit_on: Scaler fitted on ``"train"`` rows (default) or ``"all"`` rows (paper).
        clip: Bound on scaled values (the near-constant-feature guard); ``None`` disables it.
        progress: Show progress bars.
        protocol: Validation protocol, ``"clean"`` or ``"paper"``.
        sets_source: ``"shipped"`` reads the package's fixed set file where one exists for
            this data set and subsample (the protocol: UMAP is not bit-stable across
            machines); ``"compute"`` builds the sets on this machine (cached).

    Returns:
        A :class:`DataBundle`.
    """
    check_dataset_name(dataset)
    if dataset not in TARGETED_DATASETS:
        raise ValueError(
            f"OOD sets need formation energies; data set {dataset!r} has none. "
            f"Use one of: {', '.join(TARGETED_DATASETS)}."
        )
    prof = check_profile(profile)
    split_config = split_config or SplitConfig()
    frame = subsample(load_dataset(dataset), prof.max_rows, seed=SUBSAMPLE_SEED)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    if raw.isna().any(axis=1).any():
        keep = ~raw.isna().any(axis=1).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        raw = raw[keep].reset_index(drop=True)

    if sets_source not in ("shipped", "compute"):
        raise ValueError(f"sets_source must be 'shipped' or 'compute', got {sets_source!r}.")
    shipped = shipped_sets_path(dataset, prof.max_rows)
    if sets_source == "shipped" and split_config == SplitConfig() and shipped.is_file():
        all_sets, source = load_shipped_sets(shipped, frame[col.ID]), "shipped"
    else:
        all_sets, source = compute_sets(frame, raw, split_config, dataset), "computed"
    sets = protocol_sets(all_sets, protocol)
    X, scaler = scale_features(raw.to_numpy(), sets[col.TRAIN].to_numpy(), fit_on=fit_on, clip=clip)
    y = frame[col.DELTA_E].to_numpy(dtype=np.float32)
    return DataBundle(dataset, profile, frame, raw, X, y, sets, scaler, split_config, fit_on,
                      protocol, source)


def compute_sets(frame: pd.DataFrame, raw: pd.DataFrame, split_config: SplitConfig,
                 dataset: str) -> pd.DataFrame:
    """Build every set flag on this machine (cached): OOD sets and both protocols' splits."""
    path = _sets_cache_path(frame, split_config, dataset)
    if path.is_file():
        return pd.read_csv(path).astype(bool)
    ids = relation_ids() if dataset in ("mp2019", "mp_nostruct_20181018") else None
    sets = build_sets(frame, raw.to_numpy(), split_config, relation_ids=ids)
    save_sets(sets, split_config, path)
    return sets


def covariate_embedding(bundle: DataBundle) -> np.ndarray:
    """The (cached) unsupervised 2-D embedding the covariate set was cut from."""
    cfg = bundle.split_config
    return embed_2d(
        standardize_all(bundle.raw_features.to_numpy()),
        method=cfg.covariate_embedding,
        seed=cfg.seed,
        n_neighbors=cfg.umap_neighbors,
        min_dist=cfg.umap_min_dist,
    )


def write_shipped_sets(dataset: str, profile: str, progress: bool = True) -> Path:
    """Compute a data set's sets on this machine and write them as the shipped set file.

    The file then defines the sets on every machine (``calkit sets`` calls this).
    """
    prof = check_profile(profile)
    frame = subsample(load_dataset(dataset), prof.max_rows, seed=SUBSAMPLE_SEED)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    keep = ~raw.isna().any(axis=1).to_numpy()
    frame, raw = frame[keep].reset_index(drop=True), raw[keep].reset_index(drop=True)
    config = SplitConfig()
    sets = compute_sets(frame, raw, config, dataset)
    path = shipped_sets_path(dataset, prof.max_rows)
    write_set_file(path, frame[col.ID], sets, config,
                   {"dataset": dataset, "max_rows": prof.max_rows,
                    "subsample_seed": SUBSAMPLE_SEED})
    return path
