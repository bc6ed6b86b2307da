"""Profiles and the data pipeline shared by notebooks, the sweep and the estimators.

``prepare_data`` is the one place where a data set becomes model inputs:
load -> (profile subsample) -> 145 features -> OOD sets -> scaler fitted on the training
rows. Every step below it is cached, so notebooks can call it freely.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.data import DATASETS, cache_dir, check_dataset_name, load_dataset, relation_ids
from calkit.features import FeatureScaler, featurize, scale_features
from calkit.splits import SplitConfig, build_sets, embed_2d, save_sets, standardize_all


@dataclass(frozen=True)
class Profile:
    """A named budget: how much data and compute a run may use.

    Attributes:
        name: ``smoke`` (CI), ``cpu`` (full data, small model) or ``paper`` (GPU).
        max_rows: Seeded subsample of the data table; ``None`` keeps every row.
        figure_rows: Rows in the supervised UMAP figure (its 200-neighbour graph is costly).
        description: One line for the book.
    """

    name: str
    max_rows: int | None
    figure_rows: int
    description: str


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", 3000, 1500, "CI: 3,000-row subsample, tiny budgets"),
    "cpu": Profile("cpu", None, 20_000, "full data, CPU-sized model and epoch budget"),
    "paper": Profile("paper", None, 84_295, "the paper's settings; meant for a GPU"),
}

TARGETED_DATASETS = tuple(name for name, info in DATASETS.items() if col.DELTA_E in info.targets)


def check_profile(name: str) -> Profile:
    """Return the profile called ``name`` or raise with the valid names."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}. Valid profiles: {', '.join(PROFILES)}.")
    return PROFILES[name]


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
        sets: Boolean frame of set flags (paper names) with a ``train`` column.
        scaler: The fitted :class:`~calkit.features.FeatureScaler`.
        split_config: The parameters the sets were built with.
        fit_on: ``"train"`` or ``"all"``.
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
    extras: dict = field(default_factory=dict)

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


def _sets_cache_path(frame: pd.DataFrame, config: SplitConfig, dataset: str):
    digest = hashlib.sha256()
    digest.update("\n".join(frame[col.ID]).encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    return cache_dir("sets") / f"{dataset}-{digest.hexdigest()[:16]}.csv.gz"


def prepare_data(
    dataset: str = "mp2019",
    profile: str = "cpu",
    seed: int = 0,
    split_config: SplitConfig | None = None,
    fit_on: str = "train",
    clip: float | None = 10.0,
    progress: bool = True,
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
    frame = subsample(load_dataset(dataset), prof.max_rows, seed=0)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    if raw.isna().any(axis=1).any():
        keep = ~raw.isna().any(axis=1).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        raw = raw[keep].reset_index(drop=True)

    path = _sets_cache_path(frame, split_config, dataset)
    if path.is_file():
        sets = pd.read_csv(path).astype(bool)
    else:
        ids = relation_ids() if dataset in ("mp2019", "mp_nostruct_20181018") else None
        sets = build_sets(frame, raw.to_numpy(), split_config, relation_ids=ids)
        save_sets(sets, split_config, path)
    X, scaler = scale_features(raw.to_numpy(), sets[col.TRAIN].to_numpy(), fit_on=fit_on, clip=clip)
    y = frame[col.DELTA_E].to_numpy(dtype=np.float32)
    return DataBundle(dataset, profile, frame, raw, X, y, sets, scaler, split_config, fit_on)


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


def profile_dict(profile: str) -> dict:
    """JSON-serialisable description of a profile."""
    return dataclasses.asdict(check_profile(profile))
