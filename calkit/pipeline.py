"""The data pipeline shared by notebooks, runs and the sweep.

:func:`prepare_plan` is the one place where a data set becomes model inputs, carrying out a
:class:`~calkit.dataplan.DataPlan` (the data decisions, made in :mod:`calkit.dataplan`):
load -> (profile subsample) -> 145 features -> OOD sets -> scaler fitted on the training rows.
:func:`prepare_data` plans and prepares in one call. Every step is cached, so notebooks can
call it freely.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.data import (
    DATASETS,
    cache_dir,
    check_dataset_name,
    load_dataset,
    relation_ids,
)
from calkit.dataplan import (
    CLIP,
    FIT_ON,
    SUBSAMPLE_SEED,
    DataPlan,
    SetsRequest,
    effective_max_rows,
    plan_data,
    uses_shipped_sets,
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


def target_scale(target: str, train_values: np.ndarray) -> TargetScale:
    """The :class:`TargetScale` of a target.

    Identity for ``delta_e``, else the training rows' mean and standard deviation.
    """
    if target == col.DELTA_E:
        return TargetScale()
    values = np.asarray(train_values, dtype=np.float64)
    return TargetScale(float(values.mean()), float(values.std()) or 1.0)


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
        plan: The :class:`~calkit.dataplan.DataPlan` the bundle carries out.
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
    plan: DataPlan | None = None

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


def prepare_data(
    dataset: str = "mp2019",
    profile: str = "cpu",
    split_config: SplitConfig | None = None,
    fit_on: Literal["train", "all"] = FIT_ON,
    clip: float | None = CLIP,
    progress: bool = True,
    protocol: col.Protocol = "clean",
    sets_source: SetsRequest = "shipped",
    target: str | None = None,
) -> DataBundle:
    """Load, featurise, split and scale a data set for the given profile.

    Decides the data with :func:`calkit.dataplan.plan_data` and carries the plan out with
    :func:`prepare_plan`.

    Args:
        dataset: A registered data set (``mp2019``, ``phonons``, ...) or the path of a CSV
            with a formula column (:func:`calkit.data.user_dataset`).
        profile: ``smoke``, ``cpu`` or ``paper``.
        split_config: Parameters of the OOD sets; ``SplitConfig()`` by default. The paper used
            one fixed set of splits; calkit keeps the splits of seed 0 for every model seed
            by default (pass ``SplitConfig(seed=...)`` to vary them).
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
    plan = plan_data(dataset, profile, target, protocol, split_config, sets_source, fit_on,
                     clip)
    return prepare_plan(plan, progress=progress)


def prepare_plan(plan: DataPlan, progress: bool = True) -> DataBundle:
    """Carry out a :class:`~calkit.dataplan.DataPlan`: the data a run computes with.

    load -> (profile subsample) -> 145 features -> OOD sets -> scaler fitted on the training
    rows. Rows whose formula cannot be featurised are dropped.

    Args:
        plan: The data decisions (:func:`calkit.dataplan.plan_data`, or a resolved run's).
        progress: Show progress bars.

    Returns:
        A :class:`DataBundle` whose ``plan`` is ``plan``.
    """
    target = plan.target
    frame = subsample(load_dataset(plan.dataset, target=target), plan.row_cap,
                      seed=SUBSAMPLE_SEED)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    if raw.isna().any(axis=1).any():
        keep = ~raw.isna().any(axis=1).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        raw = raw[keep].reset_index(drop=True)
    if plan.shipped_file is not None:
        all_sets = load_shipped_sets(plan.shipped_file, frame[col.ID])
    else:
        all_sets = _computed_sets(frame, raw, plan)
    sets = protocol_sets(all_sets, plan.protocol)
    X, scaler = scale_features(raw.to_numpy(), sets[col.TRAIN].to_numpy(), fit_on=plan.fit_on,
                               clip=plan.clip)
    values = frame[target].to_numpy(dtype=np.float64)
    scale = target_scale(target, values[sets[col.TRAIN].to_numpy()])
    return DataBundle(plan.dataset, plan.profile, frame, raw, X, scale.to_model(values), sets,
                      scaler, plan.split_config, plan.fit_on, plan.protocol, plan.sets_source,
                      target, scale, plan.info.units.get(target, ""), plan)


def compute_sets(frame: pd.DataFrame, raw: pd.DataFrame, split_config: SplitConfig,
                 dataset: str, target: str | None = None) -> pd.DataFrame:
    """Build every set flag on this machine (cached): OOD sets and both protocols' splits."""
    info = check_dataset_name(dataset, target)
    return _computed_sets(frame, raw, DataPlan(dataset, info, info.check_target(target), "",
                                               None, split_config, "clean", "compute"))


def _computed_sets(frame: pd.DataFrame, raw: pd.DataFrame, plan: DataPlan) -> pd.DataFrame:
    target, config = plan.target, plan.split_config
    digest = hashlib.sha256()
    digest.update("\n".join(frame[col.ID]).encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(f"sets-v{SETS_VERSION}".encode())  # v1 caches had no clean splits
    digest.update(target.encode())
    digest.update(frame[target].to_numpy(dtype=np.float64).tobytes())  # a user file may change
    stem = Path(plan.dataset).name.split(".")[0]
    path = cache_dir("sets") / f"{stem}-{digest.hexdigest()[:16]}.csv.gz"
    if path.is_file():
        return pd.read_csv(path).astype(bool)
    ids = relation_ids() if plan.info.relation else None
    sets = build_sets(frame, raw.to_numpy(), config, relation_ids=ids, target=target,
                      prior_tail=plan.info.prior_tail.get(target, "lower"))
    save_sets(sets, config, path)
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
    if info is None or not uses_shipped_sets(info, info.default_target, info.split_config,
                                             max_rows):
        raise ValueError(f"{dataset!r} has no shipped set file for the {profile!r} profile, so "
                         "there is nothing to compare a recompute with; the registered data "
                         "sets with one are those under calkit/resources/sets.")
    bundle = prepare_data(dataset, profile, progress=progress, sets_source="shipped")
    shipped = load_shipped_sets(shipped_sets_path(info.name, max_rows), bundle.frame[col.ID])
    computed = compute_sets(bundle.frame, bundle.raw_features, info.split_config, dataset)
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
    config = info.split_config
    sets = compute_sets(frame, raw, config, dataset)
    max_rows = effective_max_rows(info, prof.max_rows)
    path = shipped_sets_path(dataset, max_rows)
    write_set_file(path, frame[col.ID], sets, config,
                   {"dataset": dataset, "max_rows": max_rows, "target": info.default_target,
                    "subsample_seed": SUBSAMPLE_SEED})
    return path
