"""Shared fixtures: small frames the tests build themselves, and the real mirror when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from calkit import columns as col


@pytest.fixture(autouse=True)
def _one_thread():
    """The test models are tiny and gain nothing from 2 threads, while 2 OpenMP threads next
    to another busy process can be 10-40x slower (barrier spinning); restore afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(_session_cache, monkeypatch):
    """Tests write derived artefacts (features, embeddings, sets) into one cache per test
    session, never the developer's; sharing it within the session keeps the real-data tests
    from re-running the same UMAP."""
    monkeypatch.setenv("CALKIT_CACHE", str(_session_cache))


@pytest.fixture
def real_data() -> Path:
    """The data mirror named by CALKIT_DATA; skips when it is not set."""
    path = os.environ.get("CALKIT_DATA")
    if not path or not Path(path).is_dir():
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    return Path(path)


@pytest.fixture
def small_frame() -> pd.DataFrame:
    """A 400-row synthetic table in the calkit schema with real compositions."""
    rng = np.random.default_rng(0)
    formulas = ["NaCl", "Fe2O3", "SiO2", "GaAs", "MgO", "LiFePO4", "CuZn", "TiO2", "Al2O3", "ZnS"]
    comps = [formulas[i % len(formulas)] for i in range(400)]
    return pd.DataFrame(
        {
            col.ID: [f"x-{i}" for i in range(400)],
            col.FORMULA: comps,
            col.COMPOSITION: comps,
            col.DELTA_E: rng.normal(-1.0, 1.0, 400),
            col.BAND_GAP: np.where(rng.random(400) < 0.5, 0.0, rng.gamma(2.0, 1.0, 400)),
        }
    )


@pytest.fixture
def tiny_bundle():
    """A 600-row synthetic data bundle in the smoke profile's shape, clean protocol (no data
    files needed)."""
    from calkit.features import FeatureScaler
    from calkit.pipeline import DataBundle
    from calkit.splits import SplitConfig

    rng = np.random.default_rng(0)
    n, d = 600, 6
    raw = rng.normal(size=(n, d))
    y = (np.sin(raw[:, 0]) + 0.3 * raw[:, 1]).astype(np.float32)
    ids = [f"t-{i}" for i in range(n)]
    frame = pd.DataFrame({col.ID: ids, col.FORMULA: "NaCl", col.COMPOSITION: "NaCl",
                          col.DELTA_E: y})
    order = rng.permutation(n)
    sets = pd.DataFrame(False, index=range(n), columns=[col.TRAIN, *col.CLEAN_SPLITS,
                                                        col.COVARIATE, col.RELATION])
    sets.loc[order[:300], col.TRAIN] = True
    for i, name in enumerate(col.CLEAN_SPLITS):
        sets.loc[order[300 + 30 * i:330 + 30 * i], name] = True
    sets.loc[order[450:540], col.COVARIATE] = True
    sets.loc[order[540:], col.RELATION] = True
    scaler = FeatureScaler().fit(raw[sets[col.TRAIN].to_numpy()])
    from calkit.dataplan import plan_data

    plan = plan_data("mp2019", "smoke")  # the plan of every smoke run on mp2019
    return DataBundle("mp2019", "smoke", frame, pd.DataFrame(raw), scaler.transform(raw), y,
                      sets, scaler, SplitConfig(), "train", "clean", plan.sets_source, plan=plan)
