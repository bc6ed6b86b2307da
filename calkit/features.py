"""The paper's 145 composition features, cached on disk, and a guarded scaler.

Feature preset ``paper145`` (Ward et al. 2016 / IRNet), as matminer defines it:
``Stoichiometry()`` (6) + ``ElementProperty.from_preset("magpie")`` (132) +
``ValenceOrbital(props=["avg"])`` (4) + ``IonProperty(fast=True)`` (3).

Two engines compute it: ``"numpy"`` (default; :mod:`calkit.fast_features`, a composition
matrix times matminer's own element tables, tested equal to matminer to 1e-9 on every
composition of mp2019, piezo and phonons) and ``"matminer"`` (the reference, one process per
chunk). The engine is part of a run's identity, since the two agree only to float rounding.

Featurisation is cached under ``<cache>/features`` keyed by the sha256 of the composition
strings, the preset name and version, the engine and the matminer version, so a second call
with the same compositions costs one file read. Versioned presets follow MODNet's practice: changing
what a preset computes means bumping its version, which invalidates old caches.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm import tqdm

from calkit.fast_features import featurize_fast
from calkit.files import atomic_write, cache_dir
from calkit.matminer_features import (
    N_FEATURES,
    PRESET,
    PRESET_VERSION,
    build_featurizer,
    feature_labels,
    featurize_chunk,
)

ENGINES = ("numpy", "matminer")
ENGINE = "numpy"
"""The default engine (part of a run's identity: engines agree only to float rounding)."""


def feature_identity(engine: str = ENGINE) -> dict[str, object]:
    """Preset, version and engine of the features, for run ids and caches."""
    return {"preset": PRESET, "version": PRESET_VERSION, "engine": engine}


def cache_key(compositions: Sequence[str], engine: str = "matminer") -> str:
    """Hash of the inputs and everything that determines the feature values."""
    digest = hashlib.sha256()
    tag = "" if engine == "matminer" else f"-{engine}"  # matminer keys predate the engines
    digest.update(f"{PRESET}-v{PRESET_VERSION}-matminer{version('matminer')}{tag}\n".encode())
    for text in compositions:
        digest.update(text.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def _atomic_save(array: np.ndarray, path: Path) -> None:
    with atomic_write(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array)


def featurize(
    compositions: Sequence[str],
    n_jobs: int | None = None,
    use_cache: bool = True,
    progress: bool = True,
    chunk_size: int = 1000,
    on_error: str = "warn",
    engine: str = ENGINE,
) -> pd.DataFrame:
    """Compute the 145 paper features for a list of composition strings.

    Args:
        compositions: Chemical formulas, e.g. the ``composition`` column of a calkit frame.
        n_jobs: Worker processes of the matminer engine; defaults to the number of cores.
        use_cache: Read and write the on-disk cache.
        progress: Show a tqdm progress bar.
        chunk_size: Compositions per worker task.
        on_error: What to do about compositions that cannot be featurised (malformed
            formulas, unknown elements): ``"warn"`` (default) names how many and the first
            few and leaves their rows NaN, ``"raise"`` raises ``ValueError``, ``"ignore"``
            leaves them NaN silently.
        engine: ``"numpy"`` (fast, default) or ``"matminer"`` (the reference).

    Returns:
        A frame of shape ``(len(compositions), 145)`` with matminer's feature names as
        columns. Rows that cannot be featurised are NaN (see :func:`count_failed_rows`).
    """
    if on_error not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_error must be 'warn', 'raise' or 'ignore', got {on_error!r}.")
    if engine not in ENGINES:
        raise ValueError(f"unknown feature engine {engine!r}; valid: {', '.join(ENGINES)}.")
    compositions = [str(c) for c in compositions]
    labels = feature_labels()
    path = cache_dir("features") / f"{PRESET}-{cache_key(compositions, engine)}.npy"
    if use_cache and path.is_file():
        return _report_failures(pd.DataFrame(np.load(path), columns=labels), compositions,
                                on_error)
    values = _featurize_numpy(compositions, progress) if engine == "numpy" else \
        _featurize_matminer(compositions, n_jobs, progress, chunk_size)
    if use_cache:
        _atomic_save(values, path)
        meta = {"preset": PRESET, "version": PRESET_VERSION, "engine": engine,
                "rows": len(values)}
        with atomic_write(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta))
    return _report_failures(pd.DataFrame(values, columns=labels), compositions, on_error)


def _featurize_numpy(compositions: list[str], progress: bool) -> np.ndarray:
    step = 20_000
    parts = []
    with tqdm(total=len(compositions), desc="featurising", unit="comp",
              disable=not progress) as bar:
        for i in range(0, len(compositions), step):
            parts.append(featurize_fast(compositions[i:i + step]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else np.empty((0, N_FEATURES))


def _featurize_matminer(compositions: list[str], n_jobs: int | None, progress: bool,
                        chunk_size: int) -> np.ndarray:
    chunks = [compositions[i : i + chunk_size] for i in range(0, len(compositions), chunk_size)]
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(chunks)))
    bar = tqdm(total=len(compositions), desc="featurising", unit="comp", disable=not progress)
    parts: list[np.ndarray] = []
    if n_jobs == 1:
        for chunk in chunks:
            parts.append(featurize_chunk(chunk))
            bar.update(len(chunk))
    else:
        # fork keeps the import cost out of the workers; spawn is the fallback elsewhere.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(n_jobs) as pool:
            for part in pool.imap(featurize_chunk, chunks):
                parts.append(part)
                bar.update(len(part))
    bar.close()
    return np.concatenate(parts) if parts else np.empty((0, N_FEATURES))


def _report_failures(features: pd.DataFrame, compositions: list[str],
                     on_error: str) -> pd.DataFrame:
    """Warn about (or raise on) rows that could not be featurised."""
    failed = np.flatnonzero(features.isna().any(axis=1).to_numpy())
    if len(failed) and on_error != "ignore":
        shown = ", ".join(repr(compositions[i]) for i in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        message = (f"{len(failed)} of {len(compositions)} composition(s) could not be "
                   f"featurised (malformed formula or element without data): {shown}{more}. "
                   "Their rows are NaN; fix or drop them (calkit.data.standardize_frame "
                   "drops malformed formulas), or pass on_error='ignore'.")
        if on_error == "raise":
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return features


def count_failed_rows(features: pd.DataFrame) -> int:
    """Number of rows with any missing feature value."""
    return int(features.isna().any(axis=1).sum())


class FeatureScaler(TransformerMixin, BaseEstimator):
    """Standardise features with a guard against near-constant training columns.

    In the training rows of the paper's sets some Magpie features are almost constant
    ("MagpieData minimum GSmagmom" has a standard deviation of about 3e-5 there), so a
    plain standard scaler maps a few out-of-distribution rows (Fe/Co/Ni alloys) to values
    near 1e4. The guard is a clip: standardised values are limited to ``[-clip, clip]``.
    Clipping keeps all 145 features and every row, and leaves ordinary rows untouched
    (it only bites beyond ``clip`` standard deviations). Missing values become 0, the
    training mean. It is a scikit-learn transformer, so it can lead a ``Pipeline``.

    Args:
        clip: Bound on absolute standardised values; ``None`` disables the guard.

    Attributes:
        mean_: Per-feature mean of the fitted rows.
        scale_: Per-feature standard deviation of the fitted rows (1 where it is 0).
    """

    def __init__(self, clip: float | None = 10.0) -> None:
        self.clip = clip

    def fit(self, values: np.ndarray, y: np.ndarray | None = None) -> FeatureScaler:
        """Fit mean and scale on ``values`` (rows x features), ignoring NaN; ``y`` is unused."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or len(values) < 2:
            raise ValueError(f"need a 2-D array with at least 2 rows, got shape {values.shape} "
                             f"(n_samples={len(values) if values.ndim else 0})")
        self.mean_ = np.nanmean(values, axis=0)
        scale = np.nanstd(values, axis=0)
        self.scale_ = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        self.mean_ = np.where(np.isfinite(self.mean_), self.mean_, 0.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardise, fill missing values with 0 and clip; returns float32."""
        if not hasattr(self, "scale_"):
            raise RuntimeError("FeatureScaler is not fitted: call fit() first")
        scaled = (np.asarray(values, dtype=np.float64) - self.mean_) / self.scale_
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=np.inf, neginf=-np.inf)
        if self.clip is not None:
            scaled = np.clip(scaled, -self.clip, self.clip)
        return scaled.astype(np.float32)


def scale_features(
    values: np.ndarray, train_mask: np.ndarray, fit_on: str = "train", clip: float | None = 10.0
) -> tuple[np.ndarray, FeatureScaler]:
    """Standardise all rows with a scaler fitted on the training rows (or on all rows).

    Args:
        values: Raw features, rows x features.
        train_mask: Boolean mask of the training rows.
        fit_on: ``"train"`` (honest default) or ``"all"`` (the paper's choice, which lets
            test rows shape the scaling).
        clip: See :class:`FeatureScaler`.

    Returns:
        The scaled float32 matrix and the fitted scaler.
    """
    if fit_on not in ("train", "all"):
        raise ValueError(f"fit_on must be 'train' or 'all', got {fit_on!r}")
    rows = values[np.asarray(train_mask, dtype=bool)] if fit_on == "train" else values
    scaler = FeatureScaler(clip=clip).fit(rows)
    return scaler.transform(values), scaler


def feature_groups() -> dict[str, int]:
    """Number of features each matminer featurizer of the preset contributes."""
    return {type(f).__name__: len(f.feature_labels()) for f in build_featurizer().featurizers}
