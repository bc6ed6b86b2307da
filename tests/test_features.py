from __future__ import annotations

import numpy as np
import pytest

from calkit import features


def test_paper_preset_has_145_features_in_four_groups():
    assert features.feature_groups() == {
        "Stoichiometry": 6,
        "ElementProperty": 132,
        "ValenceOrbital": 4,
        "IonProperty": 3,
    }
    assert len(features.feature_labels()) == features.N_FEATURES == 145


def test_featurize_values_and_cache(monkeypatch):
    comps = ["NaCl", "Fe2O3", "SiO2", "NaCl"]
    first = features.featurize(comps, n_jobs=1, progress=False)
    assert first.shape == (4, 145)
    assert np.allclose(first.iloc[0], first.iloc[3])
    # Stoichiometry's 0-norm is the number of elements.
    assert first["0-norm"].tolist() == [2, 2, 2, 2]
    assert first["MagpieData mean Number"].iloc[0] == pytest.approx((11 + 17) / 2)

    def must_not_run(chunk):
        raise AssertionError("cache miss: featurised again")

    monkeypatch.setattr(features, "_featurize_numpy", must_not_run)
    again = features.featurize(comps, n_jobs=1, progress=False)
    assert again.equals(first)
    reference = features.featurize(comps, n_jobs=1, progress=False, engine="matminer")
    np.testing.assert_allclose(reference.to_numpy(), first.to_numpy(), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="unknown feature engine 'fast'"):
        features.featurize(comps, engine="fast")


def test_parallel_featurize_equals_serial():
    comps = ["NaCl", "GaAs", "MgO", "TiO2", "ZnS", "CuZn"]
    serial = features.featurize(comps, n_jobs=1, use_cache=False, progress=False, chunk_size=2,
                                engine="matminer")
    parallel = features.featurize(comps, n_jobs=2, use_cache=False, progress=False, chunk_size=2,
                                  engine="matminer")
    assert np.array_equal(serial.to_numpy(), parallel.to_numpy(), equal_nan=True)


def test_cache_key_depends_on_content_and_order():
    assert features.cache_key(["NaCl", "MgO"]) != features.cache_key(["MgO", "NaCl"])
    assert features.cache_key(["NaCl"]) == features.cache_key(["NaCl"])


def test_scaler_guard_bounds_near_constant_training_feature():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 3))
    train[:, 1] = 1e-5 * rng.normal(size=500)  # nearly constant in the training rows
    ood = np.array([[0.0, 0.3, 0.0]])  # an alloy-like row: ordinary elsewhere, huge in z
    plain = features.FeatureScaler(clip=None).fit(train).transform(ood)
    guarded = features.FeatureScaler(clip=10.0).fit(train).transform(ood)
    assert abs(plain[0, 1]) > 1e3
    assert abs(guarded[0, 1]) == pytest.approx(10.0)
    # Ordinary rows are untouched by the guard.
    inner = features.FeatureScaler(clip=10.0).fit(train)
    assert np.allclose(
        inner.transform(train[:5]),
        features.FeatureScaler(clip=None).fit(train).transform(train[:5]),
    )


def test_scaler_constant_and_missing_values():
    values = np.array([[1.0, 2.0], [1.0, np.nan], [1.0, 4.0]])
    out = features.FeatureScaler().fit_transform(values)
    assert np.isfinite(out).all() and out.dtype == np.float32
    assert out[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert out[1, 1] == 0.0


def test_scale_features_fit_on_train_vs_all():
    values = np.arange(20, dtype=float).reshape(10, 2)
    mask = np.zeros(10, bool)
    mask[:5] = True
    on_train, _ = features.scale_features(values, mask, fit_on="train", clip=None)
    on_all, _ = features.scale_features(values, mask, fit_on="all", clip=None)
    assert on_train[:5].mean() == pytest.approx(0, abs=1e-6)
    assert on_all.mean() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="fit_on"):
        features.scale_features(values, mask, fit_on="test")


def test_unfitted_scaler_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        features.FeatureScaler().transform(np.zeros((2, 2)))


def test_featurize_counts_and_names_failed_compositions():
    comps = ["Fe2O3", "Xx2O", "not a formula"]
    failed = r"2 of 3 composition\(s\) could not be featurised.*'Xx2O'"
    with pytest.warns(UserWarning, match=failed):
        table = features.featurize(comps, n_jobs=1, progress=False)
    assert table.iloc[1:].isna().all(axis=None) and not table.iloc[0].isna().any()
    with pytest.raises(ValueError, match="could not be featurised"):
        features.featurize(comps, n_jobs=1, progress=False, on_error="raise")


def test_top_level_exports():
    import calkit
    from calkit import CALRegressor, FeatureScaler, IRNetRegressor, featurize
    from calkit.estimators import CALRegressor as C

    assert CALRegressor is C and callable(featurize)
    assert {"CALRegressor", "IRNetRegressor", "FeatureScaler", "featurize"} <= set(dir(calkit))
    assert FeatureScaler().clip == 10.0 and IRNetRegressor().preset == "cpu"
