"""matminer's featurizer for the paper's 145 features, one process: the reference engine.

Both engines use it (:mod:`calkit.features` for whole tables, :mod:`calkit.fast_features` for
the few compositions its vectorised path leaves out), so it sits below both.
"""

from __future__ import annotations

import warnings

import numpy as np

PRESET = "paper145"
PRESET_VERSION = 1
N_FEATURES = 145


def build_featurizer():
    """Return matminer's ``MultipleFeaturizer`` for the paper's 145 features (one process)."""
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import (
        ElementProperty,
        IonProperty,
        Stoichiometry,
        ValenceOrbital,
    )

    featurizer = MultipleFeaturizer(
        [
            Stoichiometry(),
            ElementProperty.from_preset("magpie"),
            ValenceOrbital(props=["avg"]),
            IonProperty(fast=True),
        ]
    )
    # matminer's own multiprocessing is about 2x slower than one process on 2 cores;
    # calkit parallelises over chunks itself.
    featurizer.set_n_jobs(1)
    return featurizer


def feature_labels() -> list[str]:
    """Names of the 145 features, in column order."""
    return list(build_featurizer().feature_labels())


def featurize_chunk(compositions: list[str]) -> np.ndarray:
    """The 145 features of each composition; a row matminer cannot featurise stays NaN."""
    from pymatgen.core import Composition

    featurizer = build_featurizer()
    rows = np.full((len(compositions), N_FEATURES), np.nan)
    with warnings.catch_warnings():
        # IonProperty warns for every composition without a known oxidation state guess.
        warnings.simplefilter("ignore")
        for i, text in enumerate(compositions):
            try:
                rows[i] = featurizer.featurize(Composition(text))
            except Exception:  # a failed row stays NaN and is counted by the caller
                pass
    return rows
