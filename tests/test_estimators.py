import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from calkit.estimators import CALRegressor, IRNetRegressor
from calkit.profiles import cal_config


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * [1, 10, 0.1, 1, 1] + 3
    y = np.sin(X[:, 0]) + 0.05 * X[:, 1]
    return X, y


def test_clone_pipeline_cross_val():
    X, y = data()
    est = IRNetRegressor(widths=(32, 16), dropout=0.0, epochs=40, batch_size=64)
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    scores = cross_val_score(make_pipeline(StandardScaler(), est), X, y, cv=2)
    assert scores.min() > 0.8
    pipe = make_pipeline(StandardScaler(), IRNetRegressor(widths=(16,), epochs=3)).fit(X, y)
    assert pipe.predict(X[:7]).shape == (7,)


def test_cal_regressor_targeted_and_clone():
    X, y = data()
    cfg = cal_config("cpu", epochs=4, pre_adv_epochs=2, ema_start_epoch=2)
    est = CALRegressor(widths=(16,), config=cfg)
    assert clone(est).get_params()["config"] == cfg
    Xs = (X - X.mean(0)) / X.std(0)
    est.fit(Xs[:500], y[:500], X_target=Xs[500:], y_target=y[500:])
    assert est.result_.target_set == "target" and len(est.result_.target_indices) == 100
    assert np.isfinite(est.predict(Xs)).all()
    pipe = make_pipeline(StandardScaler(), CALRegressor(widths=(16,), config=cfg))
    assert cross_val_score(pipe, X, y, cv=2).shape == (2,)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [
    IRNetRegressor(widths=(16,), epochs=40, batch_size=32),
    CALRegressor(widths=(16,), epochs=40, config=cal_config("cpu", pre_adv_epochs=30,
                                                          ema_start_epoch=1, batch_size=32)),
], ids=["IRNetRegressor", "CALRegressor"])
def test_sklearn_estimator_contract(estimator):
    """scikit-learn's own battery of estimator checks passes in full."""
    from sklearn.utils.estimator_checks import check_estimator

    # The networks compute in float32: predicting on a subset of rows runs other BLAS kernels
    # and moves the last bits (about 1e-7 relative), which this check's 1e-7 tolerance can
    # catch; the predictions are otherwise the same.
    results = check_estimator(estimator, on_fail=None, expected_failed_checks={
        "check_methods_subset_invariance": "float32 rounding across batch sizes"})
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert not failed, failed
    assert len(results) > 40


def test_units_of_y_do_not_change_the_fit():
    """y is standardised inside: the same table in meV trains like the table in eV."""
    X, y = data(n=400)
    est = dict(widths=(32, 16), dropout=0.0, epochs=30, batch_size=64)
    ev = IRNetRegressor(**est).fit(X, y).predict(X)
    mev = IRNetRegressor(**est).fit(X, 1000 * y).predict(X)
    np.testing.assert_allclose(mev, 1000 * ev, rtol=1e-3, atol=1e-3)


def test_rows_without_features_raise_by_default_or_give_nan_and_a_count():
    X, y = data(n=300)
    X_bad = X.copy()
    X_bad[[3, 7]] = np.nan  # formulas that could not be featurised
    with pytest.raises(ValueError, match=r"2 row\(s\) of X .* \(rows 3, 7\).*on_invalid='nan'"):
        IRNetRegressor(widths=(8,), epochs=2).fit(X_bad, y)
    est = IRNetRegressor(widths=(8,), epochs=2, on_invalid="nan").fit(X_bad, y)
    assert est.n_invalid_fit_ == 2
    with pytest.warns(UserWarning, match="2 of 300 rows"):
        pred = est.predict(X_bad)
    assert np.isnan(pred[[3, 7]]).all() and np.isfinite(np.delete(pred, [3, 7])).all()
    with pytest.raises(ValueError, match="on_invalid='nan'"):
        IRNetRegressor(widths=(8,), epochs=2).fit(X, y).predict(X_bad)


def test_ensemble_std_and_save_load_round_trip(tmp_path):
    X, y = data(n=300)
    est = CALRegressor(widths=(16,), n_models=3, config=cal_config(
        "cpu", epochs=4, pre_adv_epochs=2, ema_start_epoch=2)).fit(X, y)
    mean, std = est.predict(X, return_std=True)
    assert len(est.models_) == 3 and (std > 0).all() and np.isfinite(mean).all()
    loaded = __import__("calkit.estimators", fromlist=["load"]).load(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(X), mean)
    assert loaded.get_params()["config"] == est.config
    with pytest.raises(ValueError, match="n_models >= 2"):
        IRNetRegressor(widths=(8,), epochs=2).fit(X, y).predict(X, return_std=True)


def test_loading_refuses_files_that_would_run_code(tmp_path):
    import pickle

    from calkit.estimators import load

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.calkit"
    path.write_bytes(pickle.dumps({"estimator": "IRNetRegressor", "x": Evil()}))
    with pytest.raises(ValueError, match="not a calkit model file"):
        load(path)
    with pytest.raises(FileNotFoundError, match="calkit train"):
        load(tmp_path / "missing.calkit")
