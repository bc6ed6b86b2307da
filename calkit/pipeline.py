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
from calkit.data import (
    DATASETS,
    DatasetInfo,
    cache_dir,
    check_dataset_name,
    load_dataset,
    relation_ids,
)
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
    set_agreement,
    shipped_sets_path,
    standardize_all,
    write_set_file,
)

SUBSAMPLE_SEED = 0
"""Seed of a profile's row subsample (the same rows for every model seed)."""
FIT_ON = "train"
"""Rows the feature scaler is fitted on in recorded runs (the paper used ``"all"``)."""
CLIP = 10.0
"""Bound on standardised feature values in recorded runs (the near-constant-feature guard)."""


@dataclass(frozen=True)
class TargetScale:
    """How a target is shifted and scaled into the model's units (and back).

    Formation energies are learned in eV/atom as the paper does (centre 0, scale 1). Other
    targets are standardised on the training rows: phonon peaks of 50-3,600 cm^-1 would
    otherwise take thousands of Adam steps at a rate of 1e-3 just to reach their mean.
    """

    center: float = 0.0
    scale: float = 1.0

    def to_model(self, values: np.ndarray) -> np.ndarray:
        """Target units -> model units (float32)."""
        return ((np.asarray(values, dtype=np.float64) - self.center) / self.scale).astype(
            np.float32)

    def to_units(self, values: np.ndarray) -> np.ndarray:
        """Model units -> target units."""
        return np.asarray(values, dtype=np.float64) * self.scale + self.center


TARGET_SCALING = "standardise on the training rows (formation energy: none)"
"""The rule of :func:`target_scale`, named in the run id of every run it applies to."""


def target_scale(target: str, train_values: np.ndarray) -> TargetScale:
    """The :class:`TargetScale` of a target.

    Identity for ``delta_e``, else the training rows' mean and standard deviation.
    """
    if target == col.DELTA_E:
        return TargetScale()
    values = np.asarray(train_values, dtype=np.float64)
    return TargetScale(float(values.mean()), float(values.std()) or 1.0)


def effective_max_rows(info: DatasetInfo, max_rows: int | None) -> int | None:
    """A profile's row cap as it applies to this data set (``None`` when it has fewer rows)."""
    if max_rows is None or (info.rows is not None and info.rows <= max_rows):
        return None
    return max_rows


def ood_set_names(info: DatasetInfo, target: str) -> tuple[str, ...]:
    """The OOD sets a data set offers for a target.

    Covariate, prior and extreme always; the band-gap sets where a band gap exists (and is not
    the target); the piezo relation set on the Materials Project tables.
    """
    names = [col.COVARIATE, col.prior_set(target), col.extreme_set(target)]
    if col.BAND_GAP in info.targets and target != col.BAND_GAP:
        names += [col.HIGH_GAP, col.GAP_PRIOR]
    if info.relation:
        names.append(col.RELATION)
    return tuple(names)


def uses_shipped_sets(info: DatasetInfo, target: str, split_config: SplitConfig,
                      max_rows: int | None) -> bool:
    """Whether the package's fixed set file defines this data set's sets."""
    if info.sha256 or target != info.default_target or split_config != SplitConfig():
        return False  # user files, other targets and other constructions are computed
    return shipped_sets_path(info.name, effective_max_rows(info, max_rows)).is_file()


@dataclass
class DataBundle:
    """Everything a model run needs, aligned row by row.

    Attributes:
        dataset: Data set name.
        profile: Profile name.
        frame: The calkit frame (id, formula, composition, targets).
        raw_features: Unscaled 145 features.
        X: Scaled float32 features (scaler fitted per ``fit_on``).
        y: float32 target in the model's units (``target_scale``; eV/atom for ``delta_e``).
        sets: Boolean frame of the OOD flags, the protocol's validation splits and ``train``.
        scaler: The fitted :class:`~calkit.features.FeatureScaler`.
        split_config: The parameters the sets were built with.
        fit_on: ``"train"`` or ``"all"``.
        protocol: ``"clean"`` or ``"paper"`` (:func:`calkit.splits.protocol_sets`).
        sets_source: ``"shipped"`` (the package's fixed set file) or ``"computed"``.
        target: The target column.
        target_scale: Model units <-> target units.
        unit: The target's unit (for tables and axes).
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
    target: str = col.DELTA_E
    target_scale: TargetScale = TargetScale()
    unit: str = "eV/atom"

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


def _sets_cache_path(frame: pd.DataFrame, config: SplitConfig, dataset: str, target: str):
    digest = hashlib.sha256()
    digest.update("\n".join(frame[col.ID]).encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(f"sets-v{SETS_VERSION}".encode())  # v1 caches had no clean splits
    digest.update(target.encode())
    digest.update(frame[target].to_numpy(dtype=np.float64).tobytes())  # a user file may change
    stem = Path(dataset).name.split(".")[0]
    return cache_dir("sets") / f"{stem}-{digest.hexdigest()[:16]}.csv.gz"


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
    target: str | None = None,
) -> DataBundle:
    """Load, featurise, split and scale a data set for the given profile.

    Args:
        dataset: A registered data set (``mp2019``, ``phonons``, ...) or the path of a CSV
            with a formula column (:func:`calkit.data.user_dataset`).
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
        target: The property to learn; ``None`` takes the data set's default (a user file
            must name its column).

    Returns:
        A :class:`DataBundle`.
    """
    info = check_dataset_name(dataset, target)
    target = info.check_target(target)
    prof = check_profile(profile)
    split_config = split_config or SplitConfig()
    frame = subsample(load_dataset(dataset, target=target), prof.max_rows, seed=SUBSAMPLE_SEED)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    if raw.isna().any(axis=1).any():
        keep = ~raw.isna().any(axis=1).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        raw = raw[keep].reset_index(drop=True)

    if sets_source not in ("shipped", "compute"):
        raise ValueError(f"sets_source must be 'shipped' or 'compute', got {sets_source!r}.")
    if sets_source == "shipped" and uses_shipped_sets(info, target, split_config, prof.max_rows):
        shipped = shipped_sets_path(info.name, effective_max_rows(info, prof.max_rows))
        all_sets, source = load_shipped_sets(shipped, frame[col.ID]), "shipped"
    else:
        all_sets, source = compute_sets(frame, raw, split_config, dataset, target), "computed"
    sets = protocol_sets(all_sets, protocol)
    X, scaler = scale_features(raw.to_numpy(), sets[col.TRAIN].to_numpy(), fit_on=fit_on, clip=clip)
    values = frame[target].to_numpy(dtype=np.float64)
    scale = target_scale(target, values[sets[col.TRAIN].to_numpy()])
    return DataBundle(dataset, profile, frame, raw, X, scale.to_model(values), sets, scaler,
                      split_config, fit_on, protocol, source, target, scale,
                      info.units.get(target, ""))


def compute_sets(frame: pd.DataFrame, raw: pd.DataFrame, split_config: SplitConfig,
                 dataset: str, target: str | None = None) -> pd.DataFrame:
    """Build every set flag on this machine (cached): OOD sets and both protocols' splits."""
    info = check_dataset_name(dataset, target)
    target = info.check_target(target)
    path = _sets_cache_path(frame, split_config, dataset, target)
    if path.is_file():
        return pd.read_csv(path).astype(bool)
    ids = relation_ids() if info.relation else None
    sets = build_sets(frame, raw.to_numpy(), split_config, relation_ids=ids, target=target,
                      prior_tail=info.prior_tail.get(target, "lower"))
    save_sets(sets, split_config, path)
    return sets


def covariate_embedding(bundle: DataBundle, max_rows: int | None = None,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The unsupervised 2-D embedding the covariate set is cut from, or a sample's.

    Args:
        bundle: The prepared data.
        max_rows: Embed only a seeded sample of this many rows (:func:`figure_sample`) when
            the table is larger: a figure of where the set's rows fall, minutes faster on 84k
            rows, but not the embedding the shipped set was cut from. ``None``: every row
            (cached).
        seed: Seed of the sample.

    Returns:
        ``(embedding, rows)``: coordinates and the row indices they belong to.
    """
    cfg = bundle.split_config
    n_rows = len(bundle.frame)
    rows = (np.arange(n_rows) if max_rows is None or n_rows <= max_rows
            else figure_sample(n_rows, max_rows, seed))
    embedding = embed_2d(
        standardize_all(bundle.raw_features.to_numpy())[rows],
        method=cfg.covariate_embedding,
        seed=cfg.seed,
        n_neighbors=cfg.umap_neighbors,
        min_dist=cfg.umap_min_dist,
    )
    return embedding, rows


def recompute_agreement(dataset: str = "mp2019", profile: str = "smoke",
                        progress: bool = False) -> pd.DataFrame:
    """Build a data set's sets on this machine and compare them with its shipped file.

    The shipped file defines the sets of every record; this measures how far the same rule,
    run on the CPU at hand, reproduces it (UMAP is bit-stable on one machine, not across CPUs).

    Args:
        dataset: A registered data set with a shipped set file.
        profile: Whose subsample to compare (``smoke``: mp2019's 3,000 rows, half a minute).
        progress: Show progress bars.

    Returns:
        :func:`calkit.splits.set_agreement` of the shipped (reference) and recomputed sets,
        every set of both protocols.

    Raises:
        ValueError: If the data set has no shipped set file for this profile.
    """
    info = DATASETS.get(dataset)
    max_rows = effective_max_rows(info, check_profile(profile).max_rows) if info else None
    if info is None or not uses_shipped_sets(info, info.default_target, SplitConfig(), max_rows):
        raise ValueError(f"{dataset!r} has no shipped set file for the {profile!r} profile, so "
                         "there is nothing to compare a recompute with; the registered data "
                         "sets with one are those under calkit/resources/sets.")
    bundle = prepare_data(dataset, profile, progress=progress, sets_source="shipped")
    shipped = load_shipped_sets(shipped_sets_path(info.name, max_rows), bundle.frame[col.ID])
    computed = compute_sets(bundle.frame, bundle.raw_features, SplitConfig(), dataset)
    return set_agreement(shipped, computed).rename(
        columns={"n reference": "n shipped", "n other": "n recomputed"})


def write_shipped_sets(dataset: str, profile: str, progress: bool = True) -> Path:
    """Compute a data set's sets on this machine and write them as the shipped set file.

    The file then defines the sets on every machine (``calkit sets`` calls this).
    """
    info = check_dataset_name(dataset)
    if info.sha256:
        raise ValueError("set files ship with the package for registered data sets only; a "
                         "user table's sets are computed (and cached) on first use.")
    prof = check_profile(profile)
    frame = subsample(load_dataset(dataset), prof.max_rows, seed=SUBSAMPLE_SEED)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    keep = ~raw.isna().any(axis=1).to_numpy()
    frame, raw = frame[keep].reset_index(drop=True), raw[keep].reset_index(drop=True)
    config = SplitConfig()
    sets = compute_sets(frame, raw, config, dataset)
    max_rows = effective_max_rows(info, prof.max_rows)
    path = shipped_sets_path(dataset, max_rows)
    write_set_file(path, frame[col.ID], sets, config,
                   {"dataset": dataset, "max_rows": max_rows, "target": info.default_target,
                    "subsample_seed": SUBSAMPLE_SEED})
    return path
