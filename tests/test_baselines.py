"""The OOD baselines: their losses and draws against hand computations, and their models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestRegressor
from torch import nn

from calkit import columns as col
from calkit.config import TrainConfig
from calkit.engine import TrainingEngine
from calkit.methods import REGISTRY, MethodInputs
from calkit.methods.baselines import (
    BaselineConfig,
    CMixupEpoch,
    ForestModule,
    MeanEnsemble,
    balanced_mse_loss,
    cmixup_partner_probabilities,
    cvar_loss,
    ensemble_seeds,
    run_rf,
    spread_report,
)
from calkit.metrics import predict
from calkit.runs import RunConfig
from calkit.uncertainty import ood_flag_auroc, risk_coverage


def test_cvar_loss_is_the_mean_of_the_worst_alpha_fraction():
    losses = torch.tensor([0.5, 3.0, 1.0, 2.0, 0.1, 4.0, 0.2, 0.3, 0.4, 0.6])
    assert float(cvar_loss(losses, 0.2)) == pytest.approx((4.0 + 3.0) / 2)
    assert float(cvar_loss(losses, 0.25)) == pytest.approx((4.0 + 3.0 + 2.0) / 3)  # ceil(2.5)
    assert float(cvar_loss(losses, 1.0)) == pytest.approx(float(losses.mean()))
    assert float(cvar_loss(losses, 0.01)) == pytest.approx(4.0)  # at least one row
    # 0.1 * 30 is 3.0000000000000004 in floating point: still 3 rows, not 4.
    thirty = torch.arange(30, dtype=torch.float32)
    assert float(cvar_loss(thirty, 0.1)) == pytest.approx((29 + 28 + 27) / 3)
    with pytest.raises(ValueError, match="alpha"):
        cvar_loss(losses, 0.0)


def test_cmixup_partner_probabilities_follow_the_label_kernel():
    y = torch.tensor([0.0, 0.1, 0.5, 2.0])
    sigma = 0.3
    probs = cmixup_partner_probabilities(y, sigma)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    assert torch.all(torch.diag(probs) == 0)  # self-weight excluded (documented)

    def kernel(a, b):
        return math.exp(-(a - b) ** 2 / (2 * sigma ** 2))

    # Row 0: ratios of partner probabilities are ratios of kernel values.
    assert float(probs[0, 1] / probs[0, 2]) == pytest.approx(kernel(0.0, 0.1) / kernel(0.0, 0.5),
                                                             rel=1e-5)
    expected = [kernel(0.0, v) for v in (0.1, 0.5, 2.0)]
    assert probs[0, 1:].tolist() == pytest.approx([e / sum(expected) for e in expected],
                                                  rel=1e-5)
    # A tiny bandwidth does not underflow to NaN: the nearest label takes all the weight.
    sharp = cmixup_partner_probabilities(y, 1e-4)
    assert torch.isfinite(sharp).all() and float(sharp[0, 1]) == pytest.approx(1.0)
    assert cmixup_partner_probabilities(y[:1], sigma).tolist() == [[1.0]]


def test_cmixup_mix_is_a_convex_combination_and_deterministic():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.normal(size=40).astype(np.float32)
    masks = {col.TRAIN: np.arange(40) < 30, col.CLEAN_SPLITS[0]: np.arange(40) >= 30}
    draws = []
    for _ in range(2):
        eng = TrainingEngine(nn.Linear(3, 1), X, y, masks, TrainConfig(epochs=1, batch_size=8,
                                                                       progress=False))
        xb, yb = eng.X[:8], eng.y[:8]
        xm, ym, lam = CMixupEpoch(2.0, 0.3).mix(eng, xb, yb)
        assert 0.0 < lam < 1.0
        # Every mixed label lies between its row's label and some other label of the batch.
        partner_y = (ym - lam * yb) / (1 - lam)
        assert all(any(abs(float(p) - float(v)) < 1e-4 for v in yb) for p in partner_y)
        draws.append((xm, ym, lam))
    assert torch.equal(draws[0][0], draws[1][0]) and draws[0][2] == draws[1][2]


def test_balanced_mse_matches_a_hand_computation():
    pred = torch.tensor([0.0, 1.0, 3.0])
    y = torch.tensor([0.5, 1.0, 2.0])
    noise_var = 0.5
    total = 0.0
    for i in range(3):
        logits = [-(float(pred[i]) - float(y[j])) ** 2 / (2 * noise_var) for j in range(3)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    expected = total / 3 * 2 * noise_var
    assert float(balanced_mse_loss(pred, y, noise_var)) == pytest.approx(expected, rel=1e-6)
    # Gradient by hand: (2 / n) (E_softmax_i[y] - y_i): toward the own label and away from the
    # batch's label prior (so not the MSE's gradient 2 (pred_i - y_i) / n).
    p = pred.clone().requires_grad_(True)
    balanced_mse_loss(p, y, noise_var).backward()
    for i in range(3):
        w = [math.exp(-(float(pred[i]) - float(y[j])) ** 2 / (2 * noise_var)) for j in range(3)]
        y_bar = sum(wj * float(y[j]) for j, wj in enumerate(w)) / sum(w)
        assert float(p.grad[i]) == pytest.approx(2 / 3 * (y_bar - float(y[i])), rel=1e-5)


def test_rf_wrapper_predicts_the_forests_values_through_predict():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = X[:, 0] - X[:, 1]
    forest = RandomForestRegressor(n_estimators=5, random_state=0, n_jobs=1).fit(X, y)
    module = ForestModule(forest)
    assert list(module.parameters()) == []
    module.train()
    out = predict(module, X, batch_size=7)
    assert out.dtype == np.float32 and not module.eval().training
    np.testing.assert_allclose(out, forest.predict(X).astype(np.float32), rtol=1e-6)


def test_rf_chooses_its_hyperparameters_on_the_validation_splits_only():
    rng = np.random.default_rng(2)
    n = 120
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = (X[:, 0] + 0.1 * rng.normal(size=n)).astype(np.float32)
    masks = {col.TRAIN: np.arange(n) < 80, col.CLEAN_SPLITS[0]: (np.arange(n) >= 80)
             & (np.arange(n) < 100), col.RELATION: np.arange(n) >= 100}
    settings = {**BaselineConfig().settings("rf"), "rf_n_estimators": 4,
                "rf_max_features": [0.5, 1.0], "rf_min_samples_leaf": [1]}
    out = run_rf(MethodInputs(X, y, masks, None, TrainConfig(seed=0), settings=settings))
    assert [c["max_features"] for c in out.extra["rf_candidates"]] == [0.5, 1.0]
    best = min(out.extra["rf_candidates"], key=lambda c: c["val_loss"])
    assert out.extra["rf_chosen"]["max_features"] == best["max_features"]
    # Changing the OOD rows' labels changes nothing: they are never looked at.
    y2 = y.copy()
    y2[masks[col.RELATION]] += 100
    out2 = run_rf(MethodInputs(X, y2, masks, None, TrainConfig(seed=0), settings=settings))
    assert out2.extra["rf_candidates"] == out.extra["rf_candidates"]


def test_ensemble_mean_and_spread_are_those_of_the_members():
    torch.manual_seed(0)
    members = [nn.Linear(3, 1) for _ in range(3)]
    ensemble = MeanEnsemble(members)
    X = np.random.default_rng(3).normal(size=(10, 3)).astype(np.float32)
    each = np.stack([predict(m, X) for m in members])
    np.testing.assert_allclose(predict(ensemble, X), each.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ensemble.spread(X), each.std(0), rtol=1e-5, atol=1e-6)
    assert ensemble_seeds(2, 5, 10_000) == [2, 10_201, 10_202, 10_203, 10_204]


def test_baseline_settings_round_trip_and_enter_the_run_identity():
    cfg = BaselineConfig()
    for name in ("rf", "ensemble", "cmixup", "balanced", "cvar"):
        method = REGISTRY[name]
        assert method.settings == cfg.settings(name) and method.paper_rows == ()
        assert BaselineConfig.from_settings(method.settings) == cfg
        assert RunConfig(method=name).resolve().identity["method_settings"] == method.settings
    assert "method_settings" not in RunConfig(method="baseline").resolve().identity
    assert "method_settings" not in RunConfig(method="cal").resolve().identity


def test_ood_flag_auroc_and_risk_coverage():
    assert ood_flag_auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert ood_flag_auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert ood_flag_auroc([1.0, 3.0], [2.0, 2.0]) == 0.5
    assert math.isnan(ood_flag_auroc([], [1.0]))
    errors = np.array([0.1, 0.4, 0.2, 0.9])
    spread = np.array([0.0, 0.3, 0.1, 0.5])
    rc = risk_coverage(errors, spread)
    assert rc["confident_half"] == pytest.approx(0.15)
    assert rc["uncertain_half"] == pytest.approx(0.65)
    np.testing.assert_allclose(rc["risk"], [0.1, 0.15, 0.7 / 3, 0.4])
    np.testing.assert_allclose(rc["coverage"], [0.25, 0.5, 0.75, 1.0])
    assert rc["aurc"] == pytest.approx(np.mean([0.1, 0.15, 0.7 / 3, 0.4]))


class _SpreadIsFirstFeature(nn.Module):
    """Predicts 0 and reports the first feature as its spread: every number is hand-checkable."""

    def forward(self, x):
        return torch.zeros(len(x))

    def spread(self, x):
        return np.asarray(x, np.float32)[:, 0]


def test_spread_report_covers_a_data_sets_target_named_ood_sets():
    # A phonon-like data set: its prior and extreme sets are named after its target, not delta_e.
    X = np.array([[0.1], [0.2], [0.9], [0.8], [0.7], [0.3]], np.float32)
    y = np.array([1.0, -1.0, 2.0, 4.0, 3.0, 0.5])
    flag = lambda *rows: np.isin(np.arange(6), rows)  # noqa: E731
    masks = {col.TRAIN: flag(5), col.CLEAN_SPLITS[0]: flag(0, 1),
             col.prior_set(col.PHDOS_PEAK): flag(2, 3), col.extreme_set(col.PHDOS_PEAK): flag(4),
             col.COVARIATE: flag(0, 2), "infoY_unused": flag()}
    report = spread_report(_SpreadIsFirstFeature(), X, y, masks)
    assert set(report["spread_auroc"]) == {col.prior_set(col.PHDOS_PEAK),
                                           col.extreme_set(col.PHDOS_PEAK), col.COVARIATE}
    assert report["spread_auroc"][col.prior_set(col.PHDOS_PEAK)] == 1.0  # 0.9, 0.8 above 0.1, 0.2
    # 0.1, 0.9 against 0.1, 0.2: one tie (1/2), one loss, two wins.
    assert report["spread_auroc"][col.COVARIATE] == 0.625
    prior = report["risk_coverage"][col.prior_set(col.PHDOS_PEAK)]
    assert prior["confident_half"] == 4.0 and prior["uncertain_half"] == 2.0  # errors |0 - y|
    assert report["risk_coverage"]["val"]["risk"][-1] == pytest.approx(1.0)


def test_baseline_records_hold_their_choices_and_ensemble_member_0_is_the_baseline(
        tiny_bundle, tmp_path):
    from calkit import runner

    def run(name):
        return runner.run_experiment(RunConfig(method=name, profile="smoke", epochs=2),
                                     root=tmp_path, progress=False, bundle=tiny_bundle)

    base, ens = run("baseline"), run("ensemble")
    assert ens["history"]["m0/val_loss"] == base["history"]["val_loss"]
    assert len(ens["member_seeds"]) == 5 and len(ens["member_ema_val_loss"]) == 5
    assert set(ens["spread_auroc"]) == {col.COVARIATE, col.RELATION}
    assert all(0.0 <= v <= 1.0 for v in ens["spread_auroc"].values())
    assert len(ens["spread"][col.RELATION]) == int(tiny_bundle.sets[col.RELATION].sum())
    curve = ens["risk_coverage"][col.COVARIATE]
    assert len(curve["risk"]) == 20 and curve["aurc"] > 0
    # The last point of the curve is every row: the set's mean absolute error of the EMA mean.
    assert curve["risk"][-1] == pytest.approx(ens["metrics"]["ema"][col.COVARIATE]["mae"], rel=1e-4)
    cvar = run("cvar")
    assert [c["alpha"] for c in cvar["cvar_candidates"]] == [0.1, 0.2, 0.5]
    best = min(cvar["cvar_candidates"], key=lambda c: c["ema_val_loss"])
    assert cvar["cvar_alpha"] == best["alpha"]
    balanced = run("balanced")
    assert [c["noise_var"] for c in balanced["balanced_candidates"]] == [0.0025, 0.0225, 0.25]
    best = min(balanced["balanced_candidates"], key=lambda c: c["ema_val_loss"])
    assert balanced["balanced_noise_var"] == best["noise_var"]
    # The kept model is the chosen candidate's: its EMA validation loss is the record's.
    splits = [balanced["metrics"]["ema"][s] for s in col.CLEAN_SPLITS
              if s in balanced["metrics"]["ema"]]
    assert sum(m["loss"] for m in splits) / len(splits) == pytest.approx(best["ema_val_loss"],
                                                                         rel=1e-4)
    rf = run("rf")
    assert len(rf["rf_candidates"]) == 6 and rf["n_parameters"] == 0
    assert rf["metrics"]["ema"] == rf["metrics"]["raw"]
    assert set(rf["spread_auroc"]) == {col.COVARIATE, col.RELATION}
    splits = [rf["metrics"]["ema"][s] for s in col.CLEAN_SPLITS if s in rf["metrics"]["ema"]]
    val_mae = sum(m["mae"] * m["n"] for m in splits) / sum(m["n"] for m in splits)
    assert rf["risk_coverage"]["val"]["risk"][-1] == pytest.approx(val_mae, rel=1e-4)
    again = runner.run_experiment(RunConfig(method="cmixup", profile="smoke", epochs=2),
                                  root=tmp_path / "a", progress=False, bundle=tiny_bundle)
    assert again["metrics"] == run("cmixup")["metrics"]  # deterministic draws
