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

    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert not failed, failed
    assert len(results) > 40
