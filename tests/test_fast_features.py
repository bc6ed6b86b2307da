"""featurize_fast must equal matminer's paper145 features, NaN rows included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calkit import columns as col
from calkit import features
from calkit.fast_features import N_FEATURES, feature_labels, featurize_fast

TRICKY = [
    # single elements, noble gases, elements with missing Magpie or pymatgen data
    "Fe", "He", "Ne2", "Rn", "Og", "Bk", "OgTsLv", "Fr2O", "AtCl", "LrO2", "HeNe", "ArCl",
    "XeF2", "KrF2",
    # fractional formulas
    "Fe0.5Ni0.5", "Li0.33CoO2", "Fe0.7Cr0.2Ni0.1", "C0.0001O0.0002", "Fe1e-7O", "Fe1e-9O",
    # ties in the mode: exact, within np.isclose's tolerance, and just outside it
    "FeNi", "NaCl", "Fe2Ni2O", "Fe1Ni1.000001O", "Fe1Ni1.0001", "Fe1.00000001Ni",
    # large stoichiometries, many elements, carbon's nine common oxidation states
    "Si136", "Ba8Ga16Ge30", "H200C100N50O20", "Li7La3Zr2O12", "LiBeBCNOFNaMg", "CaCO3",
    "Fe3O4", "Ca5(PO4)3F", "Y3N@C80", "Ba1 Te1", "D2O",
    # sodium nitride, not a missing value; a repeated formula
    "NaN", "NaCl",
    # malformed, empty or dummy: NaN rows in both
    "fe2o3", "Fe2+O", "", "O0", "Xx2O", "Abc", "Fe1e400", "Fe-1O2",
    # amounts so large that sums overflow: handed to matminer
    "H1e200O1e200", "H1e300O", "Fe1e308O1e308",
]  # fmt: skip


def assert_same_features(fast: np.ndarray, slow: np.ndarray, names: list[str]) -> None:
    """Equal to 1e-9 with NaN in the same places, naming the first differing composition."""
    assert fast.shape == slow.shape == (len(names), N_FEATURES)
    nan_fast, nan_slow = np.isnan(fast), np.isnan(slow)
    bad = np.flatnonzero((nan_fast != nan_slow).any(1))
    assert bad.size == 0, f"NaN positions differ for {[names[i] for i in bad[:10]]}"
    worst = np.nanmax(np.abs(fast - slow), axis=1, initial=0.0)
    bad = np.flatnonzero(worst > 1e-9)
    assert bad.size == 0, f"values differ for {[names[i] for i in bad[:10]]}"
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


def max_abs_diff(fast: np.ndarray, slow: np.ndarray) -> float:
    return float(np.nanmax(np.abs(fast - slow), initial=0.0))


def test_labels_equal_matminer_labels():
    assert feature_labels() == features.feature_labels()


def test_tricky_compositions_equal_matminer():
    fast = featurize_fast(TRICKY)
    slow = features.featurize_chunk(TRICKY)
    assert_same_features(fast, slow, TRICKY)
    nan_rows = [c for c, row in zip(TRICKY, fast, strict=True) if np.isnan(row).all()]
    assert nan_rows == ["fe2o3", "Fe2+O", "", "O0", "Xx2O", "Abc", "Fe1e400", "Fe-1O2"]
    assert fast.dtype == np.float64


def test_empty_input():
    assert featurize_fast([]).shape == (0, N_FEATURES)


@pytest.fixture(scope="module")
def real_sets() -> dict[str, list[str]]:
    """Compositions of the project's data sets (the benchmark's matbench tasks too, whose steels
    are fractional), and the 941 raw piezoelectric formulas."""
    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    from calkit.data import fetch, load_dataset, read_split_json
    from calkit.matbench import TASKS

    names = ("mp2019", "piezo", "phonons", *(task.dataset for task in TASKS))
    sets = {name: load_dataset(name)[col.COMPOSITION].astype(str).tolist() for name in names}
    raw = read_split_json(fetch("piezoelectric_tensor"), ["formula"])
    sets["piezoelectric_tensor"] = raw["formula"].astype(str).tolist()
    return sets


def real_subset(comps: list[str], n_random: int, seed: int = 0) -> list[str]:
    """The first composition holding each element present, plus seeded random rows."""
    from pymatgen.core import Composition

    first: dict[str, int] = {}
    for i, text in enumerate(comps):
        for element in Composition(text):
            first.setdefault(str(element), i)
    rng = np.random.default_rng(seed)
    random_rows = rng.choice(len(comps), size=min(n_random, len(comps)), replace=False)
    rows = sorted(set(first.values()) | set(random_rows.tolist()))
    return [comps[i] for i in rows]


@pytest.mark.realdata
def test_real_subset_equals_matminer(real_data, real_sets):
    for name, comps in real_sets.items():
        subset = real_subset(comps, {"mp2019": 1000}.get(name, 100 if name.startswith(
            "matbench_") else 200))
        slow = features.featurize_chunk(subset)
        assert_same_features(featurize_fast(subset), slow, subset)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(
    os.environ.get("CALKIT_FULL_FEATURE_CHECK") != "1",
    reason="set CALKIT_FULL_FEATURE_CHECK=1 to compare every composition (minutes)",
)
def test_every_real_composition_equals_matminer(real_data, real_sets):
    for name, comps in real_sets.items():
        fast, slow = featurize_fast(comps), features.featurize_chunk(comps)
        n_nan = int(np.isnan(slow).all(1).sum())
        diff = max_abs_diff(fast, slow)
        print(f"{name}: {len(comps)} rows ({n_nan} NaN in matminer), max abs diff {diff:.3g}")
        assert_same_features(fast, slow, comps)


@pytest.mark.realdata
def test_benchmark_quick_runs_and_agrees(real_data):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "benchmarks/featurize.py", "--quick"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for pattern in (
        r"^matminer: [\d.]+ s \(\d+ comp/s\)$",
        r"^fast: [\d.]+ s \(\d+ comp/s\)$",
        r"^speedup: [\d.]+x$",
        r"^max abs diff: \S+; NaN rows: 0, same NaN positions: True$",
        r"^fp32 matmul: [\d.]+ GFLOP/s",
    ):
        assert re.search(pattern, done.stdout, re.M), (pattern, done.stdout)
