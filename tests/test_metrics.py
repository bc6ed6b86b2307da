import numpy as np
import pandas as pd
import pytest
import torch

from calkit.metrics import evaluate_sets, mae, r2, rmse, smooth_l1


def test_metric_values():
    yt = np.array([0.0, 1.0, 2.0, 3.0])
    yp = np.array([0.5, 1.0, 4.0, 3.0])
    assert smooth_l1(yt, yp) == pytest.approx((0.125 + 0 + 1.5 + 0) / 4)
    ref = torch.nn.functional.smooth_l1_loss(torch.tensor(yp), torch.tensor(yt), beta=1.0)
    assert smooth_l1(yt, yp) == pytest.approx(float(ref))
    assert mae(yt, yp) == pytest.approx(2.5 / 4)
    assert rmse(yt, yp) == pytest.approx(np.sqrt(4.25 / 4))
    assert r2(yt, yt) == 1.0
    assert np.isnan(smooth_l1(yt[:0], yp[:0]))


def test_evaluate_sets_table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = rng.normal(size=50).astype(np.float32)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    sets = pd.DataFrame({"train": np.arange(50) < 30, "Rsplt1": np.arange(50) >= 30,
                         "label": ["x"] * 50})
    tab = evaluate_sets(model, X, y, sets)
    assert list(tab.index) == ["train", "Rsplt1"]
    assert list(tab.columns) == ["n", "loss", "mae", "rmse", "r2"]
    with torch.no_grad():
        pred = model(torch.tensor(X)).numpy()
    assert tab.loc["Rsplt1", "mae"] == pytest.approx(mae(y[30:], pred[30:]), rel=1e-5)
    with pytest.raises(ValueError, match="rows"):
        evaluate_sets(model, X, y, {"train": np.ones(3, bool)})
