import numpy as np
import pytest
import torch

from calkit.config import TrainConfig
from calkit.engine import train
from calkit.models import IRNet


def data(n=1200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.05 * rng.normal(size=n)).astype(np.float32)
    sets = {"train": np.arange(n) < 800}
    for i, ch in enumerate(np.array_split(np.arange(800, 1100), 5)):
        sets[f"Rsplt{i + 1}"] = np.isin(np.arange(n), ch)
    sets["piezo"] = np.arange(n) >= 1100
    return X, y, sets


def net(seed=0, **kw):
    torch.manual_seed(seed)
    return IRNet(6, (32, 16), **kw)


def test_training_converges_and_logs_every_set():
    X, y, sets = data()
    r = train(net(dropout=0.1), X, y, sets, TrainConfig(epochs=25, progress=False,
                                                         ema_start_epoch=5, ema_decay=0.9))
    h = r.history
    assert {"train/loss", "piezo/loss", "Rsplt3/mae", "val_loss", "lr"} <= set(h.columns)
    assert len(h) == r.epochs_run == 25
    assert h["val_loss"].iloc[-1] < 0.25 * h["val_loss"].iloc[0]
    assert r.selected_val_loss == pytest.approx(h["val_loss"].min())
    assert r.selected_epoch == int(h["val_loss"].idxmin())
    tab = r.evaluate(X, y)
    assert tab.loc["piezo", "r2"] > 0.8
    assert h["lr"].iloc[-1] < h["lr"].iloc[0]  # cosine schedule


def test_same_seed_identical_history():
    X, y, sets = data()
    cfg = TrainConfig(epochs=4, progress=False, seed=3)
    a = train(net(dropout=0.2), X, y, sets, cfg).history.drop(columns="seconds")
    b = train(net(dropout=0.2), X, y, sets, cfg).history.drop(columns="seconds")
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    c = train(net(dropout=0.2), X, y, sets, TrainConfig(epochs=4, progress=False, seed=4))
    assert not np.array_equal(a.to_numpy(), c.history.drop(columns="seconds").to_numpy())


def test_early_stopping_and_quirk_and_batchnorm():
    X, y, sets = data()
    r = train(net(norm="batch"), X, y, sets,
              TrainConfig(epochs=200, patience=3, lr=3e-2, schedule="none", progress=False,
                          research_eval_mode_quirk=True, batch_size=799))
    assert r.stopped_early and r.epochs_run < 200
    assert r.epochs_run - 1 - r.selected_epoch == 3


def test_bad_config_messages():
    X, y, sets = data()
    with pytest.raises(ValueError, match="valid: smooth_l1, mae"):
        train(net(), X, y, sets, TrainConfig(loss="mse"))
    with pytest.raises(ValueError, match="Rsplt"):
        train(net(), X, y, {"train": sets["train"]}, TrainConfig(epochs=1))
