"""SAL gradient checks, the CAL schedule, targeting, fine-tuning, the NaN guard."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from calkit.config import SAL_PRESETS, FineTuneConfig, TrainConfig, sal_preset
from calkit.engine import loss_functions, train
from calkit.methods.cal import fit_cal
from calkit.methods.finetune import fine_tune
from calkit.models import IRNet
from calkit.profiles import cal_config
from calkit.sal import (
    SALState,
    attack,
    attack_gradient,
    attack_objective,
    environment_risk,
    hyper_parameter_index,
    hypergradient_vjp,
)
from calkit.splits import select_target


def tiny_model(d: int = 4, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    # Smooth activations are not needed: FD steps stay inside ReLU's linear pieces.
    return IRNet(d, (5, 3), norm="layer", dropout=0.0).to(dtype)


def fd_grad(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g = torch.zeros_like(x)
    flat = x.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        g.view(-1)[i] = (fp - fm) / (2 * eps)
    return g


def _batch(n=6, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("cost", ["mean", "row_sum"])
def test_attack_gradient_matches_finite_differences(cost):
    model = tiny_model().eval()
    x, y = _batch()
    x_a = x + 0.1 * torch.randn_like(x)
    w = torch.tensor([100.0, 3.0, 0.5, 7.0], dtype=torch.float64)
    loss_fn, _ = loss_functions("smooth_l1")
    analytic = attack_gradient(model, x_a, x, y, w, 0.3, loss_fn, cost)
    numeric = fd_grad(
        lambda z: float(attack_objective(model, z, x, y, w, 0.3, loss_fn, cost).detach()),
        x_a.clone())
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_row_sum_cost_is_the_authors_mean_of_weighted_row_distances():
    """``"row_sum"`` is the authors' ``mean((x - x_A)^2 @ w)``: n_features times ``"mean"``."""
    model = tiny_model().eval()
    x, y = _batch()
    x_a = x + 0.1 * torch.randn_like(x)
    w = torch.tensor([100.0, 3.0, 0.5, 7.0], dtype=torch.float64)
    loss_fn, _ = loss_functions("smooth_l1")
    loss = loss_fn(model(x_a), y)
    authors_cost = torch.mean(((x - x_a) ** 2) @ w)
    row_sum = loss - attack_objective(model, x_a, x, y, w, 0.3, loss_fn, "row_sum")
    mean = loss - attack_objective(model, x_a, x, y, w, 0.3, loss_fn, "mean")
    torch.testing.assert_close(row_sum, 0.3 * authors_cost)
    torch.testing.assert_close(row_sum, mean * x.shape[1])


def test_attack_increases_objective_and_restarts_from_clean_batch():
    model = tiny_model().eval()
    x, y = _batch()
    w = torch.full((4,), 100.0, dtype=torch.float64)
    loss_fn, _ = loss_functions("smooth_l1")
    x_a = attack(model, x, y, w, 0.01, steps=10, lr=1e-2, loss_fn=loss_fn)
    assert float(attack_objective(model, x_a, x, y, w, 0.01, loss_fn).detach()) > \
        float(attack_objective(model, x, x, y, w, 0.01, loss_fn).detach())
    # Adam moves each coordinate by at most about lr per step.
    assert float((x_a - x).abs().max()) <= 10 * 1e-2 * 1.01
    x_b = attack(model, x, y, w, 0.01, steps=10, lr=1e-2, loss_fn=loss_fn)
    torch.testing.assert_close(x_a, x_b)


@pytest.mark.parametrize("grad_layers", ["all", "first", "last"])
def test_hypergradient_vjp_matches_finite_differences(grad_layers):
    model = tiny_model().train()
    params = list(model.parameters())
    idx = hyper_parameter_index(model, params, grad_layers)
    assert 0 < len(idx) <= len(params)
    x, y = _batch()
    loss_fn, _ = loss_functions("smooth_l1")
    gen = torch.Generator().manual_seed(1)
    g = [torch.randn(params[i].shape, generator=gen, dtype=torch.float64) for i in idx]
    x_a = x + 0.05 * torch.randn_like(x)
    h, grads, _ = hypergradient_vjp(model, params, idx, x_a, y, g, loss_fn)

    def inner(z):
        loss = loss_fn(model(z), y)
        gr = torch.autograd.grad(loss, [params[i] for i in idx])
        return float(sum((a * b).sum() for a, b in zip(gr, g, strict=True)))

    numeric = fd_grad(inner, x_a.clone())
    torch.testing.assert_close(h, numeric, rtol=1e-4, atol=1e-7)
    assert len(grads) == len(params)


def test_w_hypergradient_chain_rule_matches_unrolled_finite_difference():
    """dR/dw through one theta step and a w-dependent x_A equals our assembly."""
    model = tiny_model().train()
    params = list(model.parameters())
    idx = list(range(len(params)))
    x, y = _batch()
    loss_fn, loss_none = loss_functions("smooth_l1")
    gamma, eta_a, eta_t = 0.5, 0.1, 0.05
    x_a0 = x + 0.1 * torch.randn_like(x)
    w0 = torch.tensor([2.0, 1.0, 3.0, 0.5], dtype=torch.float64)
    perm = torch.arange(len(x))
    theta0 = [p.detach().clone() for p in params]

    def x_a_of(w):  # linear model of x_A(w) whose derivative is the paper's approximation
        return x_a0 - 2 * gamma * eta_a * (w - w0) * (x_a0 - x)

    def risk_after_step(w):
        with torch.no_grad():
            for p, t in zip(params, theta0, strict=True):
                p.copy_(t)
        gr = torch.autograd.grad(loss_fn(model(x_a_of(w)), y), params)
        with torch.no_grad():
            for p, gg in zip(params, gr, strict=True):
                p.sub_(eta_t * gg)
            r = float(environment_risk(loss_none(model(x), y), perm, 3, 0.5))
        return r

    numeric = fd_grad(risk_after_step, w0.clone(), eps=1e-6)
    # Assembly: g = dR/dtheta at theta', h = VJP at theta0, dR/dw = 2 gamma eta_a eta_t sum h(x_A-x)
    risk_after_step(w0)
    g = torch.autograd.grad(environment_risk(loss_none(model(x), y), perm, 3, 0.5), params)
    with torch.no_grad():
        for p, t in zip(params, theta0, strict=True):
            p.copy_(t)
    h, _, _ = hypergradient_vjp(model, params, idx, x_a0, y, g, loss_fn)
    analytic = 2 * gamma * eta_a * eta_t * (h * (x_a0 - x)).sum(0)
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-9)


def test_weight_update_normalised_step_reset_and_freeze():
    st = SALState.create(4, 100.0, torch.device("cpu"))
    st.delta.copy_(torch.tensor([1.0, -0.5, 0.0, 0.25]))
    st.apply_update(deltaall=20.0, eps=1e-12, reset=1.0)
    torch.testing.assert_close(st.w, torch.tensor([80.0, 110.0, 100.0, 95.0]))
    assert math.isclose(st.gamma, 1 / 80.0)
    st.w[0] = 10.0
    st.delta.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    st.apply_update(20.0, 1e-12, 1.0)
    assert st.w[0] == 1.0 and bool(st.frozen[0]) and math.isclose(st.gamma, 1.0)
    st.delta.copy_(torch.tensor([5.0, 1.0, 0.0, 0.0]))  # frozen weight must not move
    st.apply_update(20.0, 1e-12, 1.0)
    assert st.w[0] == 1.0 and math.isclose(float(st.w[1]), 90.0)
    sal = SALState.create(2, 100.0, torch.device("cpu"))
    sal.w[0] = 5.0
    sal.delta.copy_(torch.tensor([1.0, 0.0]))
    sal.apply_update(20.0, 1e-12, 0.0)  # original SAL: reset to 0; gamma ignores zeros
    assert sal.w[0] == 0.0 and math.isclose(sal.gamma, 1 / 100.0)


# ------------------------------------------------------------------ synthetic data
def shifted_regression(seed: int, n: int = 3000, d: int = 8):
    """y depends nonlinearly on 3 core features; feature 3 is a near-copy of y in training
    (except a 10 % minority where it is noise) and pure noise in the OOD set."""
    rng = np.random.default_rng(seed)

    def draw(m, ood):
        core = rng.normal(size=(m, 3))
        y = np.sin(1.5 * core[:, 0]) + 0.5 * core[:, 1] * core[:, 2] + 0.05 * rng.normal(size=m)
        s = y + 0.05 * rng.normal(size=m)
        broken = np.ones(m, bool) if ood else rng.random(m) < 0.1
        s[broken] = rng.normal(size=broken.sum()) * y.std()
        return np.column_stack([core, s, rng.normal(size=(m, d - 4))]).astype(np.float32), \
            y.astype(np.float32)

    Xa, ya = draw(n, False)
    Xb, yb = draw(n // 3, True)
    X, y = np.vstack([Xa, Xb]), np.concatenate([ya, yb])
    sets = {"train": np.zeros(len(X), bool)}
    sets["train"][: int(0.7 * n)] = True
    for i, ch in enumerate(np.array_split(np.arange(int(0.7 * n), n), 5)):
        m = np.zeros(len(X), bool)
        m[ch] = True
        sets[f"Rsplt{i + 1}"] = m
    sets["Xshift_umap"] = np.zeros(len(X), bool)
    sets["Xshift_umap"][n:] = True
    return X, y, sets


def small_net(d=8, seed=0):
    torch.manual_seed(seed)
    return IRNet(d, (64, 32), norm="layer", dropout=0.0)


def test_a_cosine_spanning_more_epochs_than_the_run_stops_part_way_down_its_decay():
    """``schedule_epochs``: a 3-epoch run whose cosine spans 6 is the first 3 epochs of the
    6-epoch run (what a refit on the search's schedule needs), not a 3-epoch cosine; left at
    None it stays out of the run identity, so stored records keep their ids."""
    X, y, sets = shifted_regression(2, n=600)

    def run(**kw):
        return train(small_net(), X, y, sets, TrainConfig(progress=False, patience=10,
                                                          fused_adam=False, **kw)).history

    full, part, short = run(epochs=6), run(epochs=3, schedule_epochs=6), run(epochs=3)
    np.testing.assert_allclose(part["val_loss"], full["val_loss"].iloc[:3], rtol=1e-6)
    assert not np.allclose(short["val_loss"].iloc[1:], part["val_loss"].iloc[1:], rtol=1e-4)
    assert "schedule_epochs" not in TrainConfig().identity()
    assert TrainConfig(schedule_epochs=60).identity()["schedule_epochs"] == 60
    with pytest.raises(ValueError, match="schedule_epochs must be None or >= epochs"):
        TrainConfig(epochs=10, schedule_epochs=5).validate()


def test_select_target_removes_rows_everywhere():
    X, y, sets = shifted_regression(0, n=600)
    idx, new = select_target(sets, "covariate", 50, seed=3141)
    assert len(idx) == 50 and new["Xshift_umap_target"].sum() == 50
    assert not (new["Xshift_umap"] & new["Xshift_umap_target"]).any()
    assert new["Xshift_umap"].sum() == sets["Xshift_umap"].sum() - 50
    idx2, _ = select_target(sets, "Xshift_umap", 50, seed=3141)
    np.testing.assert_array_equal(idx, idx2)
    with pytest.raises(ValueError, match="unknown set name"):
        select_target(sets, "nope", 5)


def test_presets_and_bad_names():
    assert set(SAL_PRESETS) == {"paper", "paper_alt", "cpu"}
    p = cal_config("paper").sal
    assert (p.attack_epochs, p.theta_epochs, p.partial_fraction, p.w_init, p.deltaall) == \
        (10, 3, 0.2, 100.0, 20.0)
    assert cal_config("paper").train.lr == 1e-4
    assert sal_preset("paper_alt").attack_lr == 5e-5
    with pytest.raises(ValueError, match="valid: paper, paper_alt, cpu"):
        sal_preset("fast")
    with pytest.raises(ValueError, match="Valid profiles: smoke, cpu, authors, paper"):
        cal_config("fast")
    with pytest.raises(ValueError, match="unknown config field.*atack_lr"):
        cal_config("cpu", atack_lr=1.0)
    with pytest.raises(ValueError, match="grad_layers"):
        cal_config("cpu", grad_layers="middle").validate()


def quick_cfg(**kw):
    base = dict(epochs=30, pre_adv_epochs=8, lr=1e-3, schedule="cosine", patience=30,
                ema_decay=0.9, ema_start_epoch=8, progress=False, seed=0)
    base.update(kw)
    return cal_config("cpu", **base)


def test_cal_logs_diagnostics_and_is_deterministic():
    X, y, sets = shifted_regression(0, n=900)
    cfg = quick_cfg(epochs=6, pre_adv_epochs=2, dropout=0.3)
    r1 = fit_cal(small_net(), X, y, sets, cfg)
    r2 = fit_cal(small_net(), X, y, sets, cfg)
    cols = ["w_min", "w_median", "w_max", "w_frozen", "gamma", "perturbation", "phase"]
    assert all(c in r1.history for c in cols)
    assert (r1.history["phase"] == [0, 0, 1, 1, 1, 1]).all()
    assert r1.history["perturbation"].iloc[-1] > 0
    assert r1.w_history.shape == (6, 8)
    assert r1.history["w_min"].iloc[-1] < 100  # the weights moved
    np.testing.assert_array_equal(r1.history.drop(columns="seconds").to_numpy(),
                                  r2.history.drop(columns="seconds").to_numpy())


@pytest.mark.parametrize("ablation", [dict(grad_layers="first"), dict(grad_layers="last"),
                                      dict(adversarial_on_all=True), dict(sal=False),
                                      dict(w_update="batch")])
def test_ablations_run(ablation):
    X, y, sets = shifted_regression(1, n=600)
    r = fit_cal(small_net(), X, y, sets, quick_cfg(epochs=4, pre_adv_epochs=2, **ablation))
    assert r.epochs_run == 4 and not r.diverged
    if ablation.get("adversarial_on_all"):
        assert r.history["n_adv_rows"].iloc[-1] == sets["train"].sum()
    if ablation.get("sal") is False:
        assert r.history["w_min"].iloc[-1] == 100 and r.history["perturbation"].iloc[-1] == 0


@pytest.mark.parametrize("supervised_on_all", [True, False])
def test_partial_sampling_ablation_is_not_plain_training(supervised_on_all):
    """PS must differ from plain training by its partial sampling, in both epoch loops.

    With supervised steps on every row and no SAL, an adversarial epoch would otherwise be a
    plain epoch (a sweep once produced PS records identical to the baseline's).
    """
    X, y, sets = shifted_regression(1, n=600)
    kw = dict(epochs=4, pre_adv_epochs=2, supervised_on_all=supervised_on_all)
    ps = fit_cal(small_net(), X, y, sets, quick_cfg(sal=False, **kw))
    plain_cfg = quick_cfg(**kw).train
    plain = train(small_net(), X, y, sets, TrainConfig(
        lr=plain_cfg.lr, schedule=plain_cfg.schedule, epochs=4, patience=30, ema_decay=0.9,
        ema_start_epoch=8, progress=False, seed=0))
    warm = slice(0, 2)
    np.testing.assert_allclose(
        ps.history["val_loss"].iloc[warm], plain.history["val_loss"].iloc[warm]
    )
    assert not np.allclose(ps.history["val_loss"].iloc[2:], plain.history["val_loss"].iloc[2:])


def test_irnet3_batchnorm_and_eval_mode_quirk_run():
    from calkit.models import build_model

    X, y, sets = shifted_regression(3, n=600)
    torch.manual_seed(0)
    r = fit_cal(build_model("irnet3", 8), X, y, sets,
                quick_cfg(epochs=4, pre_adv_epochs=2, research_eval_mode_quirk=True))
    assert r.epochs_run == 4 and not r.diverged


def test_nan_guard_restores_finite_state():
    X, y, sets = shifted_regression(2, n=600)
    # A huge theta learning rate blows the weights up during the adversarial phase.
    r = fit_cal(small_net(), X, y, sets, quick_cfg(epochs=10, pre_adv_epochs=2, theta_lr=1e12,
                                                   attack_lr=1e6))
    assert r.diverged and r.diverged_epoch is not None and r.diverged_epoch >= 2
    for m in (r.model, r.ema_model):
        assert all(torch.isfinite(p).all() for p in m.parameters())
    assert np.isfinite(r.selected_val_loss)


def test_nan_guard_poisoned_targets_in_plain_training():
    X, y, sets = shifted_regression(2, n=600)
    model = small_net()
    r = train(model, X, y, sets, TrainConfig(epochs=3, progress=False, lr=1e30))
    assert r.diverged
    assert all(torch.isfinite(p).all() for p in r.model.parameters())


@functools.cache
def converged_plain(seed: int):
    """Plain training run to convergence (300 epochs; the OOD loss keeps falling until
    about then: 0.34 after 30 epochs, 0.06 after 120, 0.03-0.04 after 300)."""
    X, y, sets = shifted_regression(seed)
    res = train(small_net(seed=seed), X, y, sets,
                TrainConfig(epochs=300, patience=300, progress=False, seed=seed,
                            ema_decay=0.9, ema_start_epoch=8))
    return X, y, sets, res


def converged_cal_cfg(seed: int, **kw):
    return quick_cfg(seed=seed, epochs=300, pre_adv_epochs=100, patience=300,
                     ema_start_epoch=100, **kw)


@pytest.mark.extended
@pytest.mark.parametrize("seed", [0, 1])
def test_targeted_cal_beats_converged_plain_on_shifted_set(seed):
    """Targeted CAL (256 OOD rows as the adversarial source) vs plain training, both run
    to convergence with the same model, LR and schedule.

    Requires a 20 % lower OOD smooth-L1 (measured on seeds 0/1/2: 44 %, 31 %, 38 %).
    The final state is used (``selection="last"``): with the paper's rule (mean
    random-split loss) seed 0 selects the last warm-up epoch, because learning the
    target costs in-distribution accuracy, and the gain is discarded. Traditional
    fine-tuning on the same 256 rows reaches about the same OOD loss (0.022 / 0.024 /
    0.022 vs targeted CAL 0.022 / 0.021 / 0.020).
    """
    X, y, sets, plain = converged_plain(seed)
    cal = fit_cal(small_net(seed=seed), X, y, sets, converged_cal_cfg(seed, selection="last"),
                  target_set="covariate", n_target=256)
    lp = plain.evaluate(X, y, cal.sets, use_ema=False).loc["Xshift_umap", "loss"]
    lc = cal.evaluate(X, y, use_ema=False).loc["Xshift_umap", "loss"]
    assert 1 - lc / lp > 0.20, (lc, lp)


@pytest.mark.extended
@pytest.mark.xfail(strict=True, reason=(
    "finding, not a bug: untargeted CAL as specified does not beat converged plain "
    "training on the spurious-feature task (OOD smooth-L1 0.046/0.044/0.039 vs plain "
    "0.038/0.029/0.032 on seeds 0/1/2; partial sampling alone 0.044/0.037/0.043). It "
    "does beat plain at an equal 30-epoch budget (0.36/0.21/0.19 vs 0.34/0.35/0.38), but "
    "only because plain is far from converged there. If this starts passing, update the "
    "book's discussion."))
def test_untargeted_cal_beats_converged_plain():
    X, y, sets, plain = converged_plain(0)
    cal = fit_cal(small_net(seed=0), X, y, sets, converged_cal_cfg(0))
    lp = plain.evaluate(X, y, use_ema=False).loc["Xshift_umap", "loss"]
    lc = cal.evaluate(X, y, use_ema=False).loc["Xshift_umap", "loss"]
    assert lc < 0.9 * lp, (lc, lp)


def test_fine_tune_never_worse_than_baseline_on_heldout():
    X, y, sets = shifted_regression(0, n=900)
    base = train(small_net(), X, y, sets, TrainConfig(epochs=10, progress=False)).model
    idx, _ = select_target(sets, "covariate", 128)
    res = fine_tune(base, X[idx], y[idx])
    assert res.heldout_loss <= res.baseline_heldout_loss
    assert res.epochs > 0 and res.lr is not None
    # Absurd learning rates all lose to "no fine-tuning": 0 epochs, baseline returned.
    bad = fine_tune(base, X[idx], y[idx], FineTuneConfig(lrs=(1e3,), max_epochs=5))
    assert bad.epochs == 0 and bad.lr is None and "0 epochs" in bad.note
    for p, q in zip(bad.model.parameters(), base.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_authors_w_rule_resets_at_epoch_end_and_gamma_skips_fresh_resets():
    state = SALState.create(3, 100.0, torch.device("cpu"))
    state.delta = torch.tensor([1.0, 0.5, -0.1], dtype=state.w.dtype)
    state.step(deltaall=150.0, eps=0.0)  # w: -50, 25, 115: negative within the epoch
    assert state.w[0] < 0 and not state.frozen.any()
    state.end_epoch(reset=1.0)
    assert state.frozen.tolist() == [True, False, False] and state.w[0] == 1.0
    assert state.gamma == pytest.approx(1 / 25.0)  # the fresh 1 does not enter gamma yet
    state.update_gamma()
    assert state.gamma == pytest.approx(1.0)  # from the next epoch on it does


def test_targeted_authors_loop_takes_as_many_sal_steps_as_base_cal():
    X, y, sets = shifted_regression(0, n=1200)
    kw = dict(epochs=4, pre_adv_epochs=2, batch_size=64)
    base = fit_cal(small_net(), X, y, sets, quick_cfg(**kw))
    tgt = fit_cal(small_net(), X, y, sets, quick_cfg(**kw), target_set="covariate", n_target=100)
    old = fit_cal(small_net(), X, y, sets, quick_cfg(target_steps="per_batch", **kw),
                  target_set="covariate", n_target=100)
    adv = slice(2, None)
    steps = base.history["n_sal_steps"].iloc[adv]
    assert (steps > 1).all() and (tgt.history["n_sal_steps"].iloc[adv] == steps).all()
    assert (tgt.history["n_adv_rows"].iloc[adv] == steps * 100).all()
    assert (old.history["n_sal_steps"].iloc[adv] == 2).all()  # ceil(100 / 64) target batches


def test_fixed_w_control_and_no_attack_control():
    X, y, sets = shifted_regression(1, n=600)
    fixed = fit_cal(small_net(), X, y, sets, quick_cfg(epochs=4, pre_adv_epochs=2, learn_w=False))
    assert (fixed.history["w_min"] == 100).all() and fixed.history["perturbation"].iloc[-1] > 0
    calm = fit_cal(small_net(), X, y, sets, quick_cfg(epochs=4, pre_adv_epochs=2,
                                                        attack_epochs=0),
                   target_set="covariate", n_target=50)
    assert (calm.history["perturbation"] == 0).all() and calm.history["n_sal_steps"].iloc[-1] > 0


def test_ema_warmup_and_own_selection():
    from calkit.engine import EMA

    ema = EMA(nn.Linear(2, 1), decay=0.999, warmup=True)
    assert [round(ema.current_decay(), 4) for _ in range(1)] == [0.1]
    ema.updates = 90
    assert ema.current_decay() == pytest.approx(91 / 100)
    X, y, sets = shifted_regression(0, n=900)
    r = train(small_net(), X, y, sets, TrainConfig(epochs=12, progress=False, ema_start_epoch=2,
                                                  patience=50))
    h = r.history
    assert r.ema_selected_epoch == int(h["ema_val_loss"].idxmin())
    assert r.selected_epoch == int(h["val_loss"].idxmin())
    legacy = train(small_net(), X, y, sets, TrainConfig(epochs=12, progress=False,
                                                       ema_start_epoch=2, patience=50,
                                                       ema_selection="raw"))
    assert legacy.ema_selected_epoch == legacy.selected_epoch


def test_oracle_fine_tune_picks_on_the_evaluation_rows_and_survives_none():
    from calkit.methods.finetune import fine_tune_oracle

    X, y, sets = shifted_regression(0, n=900)
    base = train(small_net(), X, y, sets, TrainConfig(epochs=5, progress=False)).model
    idx, masks = select_target(sets, "covariate", 64)
    rows = np.flatnonzero(masks["Xshift_umap"])
    cfg = FineTuneConfig(max_epochs=15, patience=15)
    chosen, last, info = fine_tune_oracle(base, X, y, idx, rows, cfg)
    assert info["oracle_loss"] <= info["baseline_loss"] and info["note"].startswith("ORACLE")
    _, _, empty = fine_tune_oracle(base, X, y, idx, rows[:0], cfg)
    assert empty["epochs"] == 0 and "no evaluation rows" in empty["note"]


def label_shifted_regression(seed: int = 0, n: int = 1500, d: int = 8):
    """A prior-shift task shaped like the paper's: the target set is the 10 % of rows with the
    lowest labels, so every target label lies below every training label; the rest is split
    into training rows and five validation splits."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.sin(1.5 * X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.8 * X[:, 3]
         + 0.05 * rng.normal(size=n)).astype(np.float32)
    prior = y <= np.quantile(y, 0.10)
    rest = rng.permutation(np.flatnonzero(~prior))
    n_val = int(0.15 * len(rest))
    sets = {"infoY_delta_e": prior, "train": np.zeros(n, bool)}
    sets["train"][rest[n_val:]] = True
    for i, chunk in enumerate(np.array_split(rest[:n_val], 5)):
        sets[f"Csplt{i + 1}"] = np.isin(np.arange(n), chunk)
    return X, y, sets


@pytest.mark.parametrize("profile", [
    "authors",
    pytest.param("cpu", marks=pytest.mark.xfail(strict=True, reason=(
        "the finding this test was written for: under the cpu recipe (1e-3 cosine supervised "
        "steps over every training row after the SAL steps) targeted CAL barely moves its own "
        "rows' loss on a label-shifted target (ratio about 0.9 here; 1.6-2.1 on mp2019's prior "
        "set), so its verdict there is withdrawn. If this starts passing, the cpu recipe "
        "learns its rows: redo the prior-set verdict."))),
])
def test_targeted_cal_learns_its_own_rows_beyond_the_training_labels(profile):
    """The property whose silent failure made the book's strongest negative finding an
    artefact: a targeted run must learn the N rows it is handed, even when every one of their
    labels lies outside the training range. Own-row loss at the last epoch must be under a
    fifth of its best value in the warm-up (measured: 0.003 under the authors' settings, 0.90
    under the cpu recipe)."""
    X, y, sets = label_shifted_regression()
    assert y[sets["infoY_delta_e"]].max() < y[sets["train"]].min()
    cfg = cal_config(profile, epochs=12, pre_adv_epochs=4, patience=12, ema_start_epoch=4,
                     selection="last", progress=False)
    result = fit_cal(small_net(), X, y, sets, cfg, target_set="prior", n_target=64)
    curve = result.history["infoY_delta_e_target/loss"].to_numpy()
    warmup = result.history["phase"].to_numpy() == 0
    assert curve[-1] < 0.2 * curve[warmup].min(), (curve[warmup].min(), curve[-1])


def test_targeted_select_chooses_on_held_out_target_rows_only():
    """The targeted recipe and epoch are chosen on a held-out fifth of the N rows (fine-tuning's
    split) and the winner is refitted on all N for that many epochs; the target set's evaluation
    rows play no part: garbling their labels changes nothing about the choice."""
    from calkit.methods.finetune import holdout_positions
    from calkit.methods.registry import MethodInputs
    from calkit.methods.targeted_select import TARGETED_CANDIDATES, run_targeted_select

    X, y, sets = label_shifted_regression()
    cfg = cal_config("cpu", epochs=8, pre_adv_epochs=3, patience=8, ema_start_epoch=3,
                     progress=False)

    def search(labels):
        inputs = MethodInputs(X=X, y=labels, masks=sets, model=small_net(), train=cfg.train,
                              sal=cfg.sal, target_set="prior", n_target=64,
                              settings={"candidates": TARGETED_CANDIDATES,
                                        "holdout_fraction": 0.2})
        return run_targeted_select(inputs)

    out = search(y)
    chosen = out.extra["selection"]
    assert len(chosen["grid"]) == len(TARGETED_CANDIDATES) and chosen["heldout_rows"] == 13
    assert len(holdout_positions(64, 0.2, cfg.train.seed)) == 13
    assert chosen["heldout_loss"] == min(g["heldout_loss"] for g in chosen["grid"])
    assert len(out.history) == chosen["epochs"]  # the refit ran exactly the chosen epochs
    assert out.eval_masks["infoY_delta_e_target"].sum() == 64
    evaluation = out.eval_masks["infoY_delta_e"]
    assert not (evaluation & out.eval_masks["infoY_delta_e_target"]).any()
    garbled = y.copy()
    garbled[evaluation] = 1e3
    assert search(garbled).extra["selection"] == chosen


def test_targeted_select_under_the_cpu_profile_learns_its_own_rows_beyond_the_training_labels():
    """The label-shift test for the recipe the redone verdict runs (`targeted_select`, cpu
    profile), whose claims replaced the cpu-recipe runs that never learned their rows. Measured:
    the held-out fifth chose constant 1e-4 (held-out loss 0.039; the profile's own recipe 0.17,
    the authors' four factors 0.052) and the refit's own-row loss ended at 0.033 of its warm-up
    best. Either learning candidate passes; the profile's own recipe does not (searched alone,
    it chooses 5 epochs and ends at 0.94 of its warm-up best), so the test fails if the search
    stops preferring a recipe that learns."""
    from calkit.methods.registry import MethodInputs
    from calkit.methods.targeted_select import (
        HOLDOUT_FRACTION,
        TARGETED_CANDIDATES,
        run_targeted_select,
    )

    X, y, sets = label_shifted_regression()
    cfg = cal_config("cpu", epochs=24, pre_adv_epochs=4, patience=24, ema_start_epoch=4,
                     progress=False)
    out = run_targeted_select(MethodInputs(
        X=X, y=y, masks=sets, model=small_net(), train=cfg.train, sal=cfg.sal,
        target_set="prior", n_target=64,
        settings={"candidates": TARGETED_CANDIDATES, "holdout_fraction": HOLDOUT_FRACTION}))
    assert not out.extra["selection"]["in_warmup"]
    curve = out.history["infoY_delta_e_target/loss"].to_numpy()
    warmup = out.history["phase"].to_numpy() == 0
    assert curve[-1] < 0.2 * curve[warmup].min(), (out.extra["selection"], curve[-1])


def test_the_redone_verdicts_no_attack_control_searches_the_same_candidates_without_attack():
    """The verdict's no-attack control (grids/verdict_select.yaml) is targeted_select with zero
    attack steps in every candidate and in the refit; nothing else of the search changes."""
    from calkit.methods import control_questions
    from calkit.methods.targeted_select import (
        SELECTED_NOATTACK,
        TARGETED_CANDIDATES,
        candidate_config,
    )
    from calkit.runs import RunConfig

    def resolved(overrides):
        return RunConfig(method="targeted_select", dataset="mp2019", profile="cpu", seed=0,
                         target_set="prior", n_target=1024, overrides=overrides).resolve()

    control, chosen = resolved(SELECTED_NOATTACK.overrides), resolved(())
    assert control.sal.attack_epochs == 0 and chosen.sal.attack_epochs > 0
    for candidate in TARGETED_CANDIDATES:
        with_attack = candidate_config(chosen.train, chosen.sal, candidate)
        without = candidate_config(control.train, control.sal, candidate)
        assert without.sal.attack_epochs == 0
        assert replace(without.sal, attack_epochs=with_attack.sal.attack_epochs) == with_attack.sal
        assert without.train == with_attack.train
    asked = {(q.reference.key, q.subject.key) for q in control_questions("select")}
    assert asked == {("targeted_select[attack_epochs=0]", "targeted_select"),
                     ("plain_target", "targeted_select")}


def test_targeted_select_resumes_inside_its_search_with_the_same_numbers(tmp_path, monkeypatch):
    """A targeted_select run fits three candidates and a refit (an hour and more on a CPU); a
    kill must not lose the finished fits. Each fit keeps its own snapshot: a run killed in its
    refit resumes there, skips the finished candidates, gives the numbers of a run never
    stopped, and leaves no snapshot behind."""
    from calkit.engine import Snapshot
    from calkit.methods import targeted_select
    from calkit.methods.registry import MethodInputs

    X, y, sets = label_shifted_regression()
    cfg = cal_config("cpu", epochs=6, pre_adv_epochs=2, patience=6, ema_start_epoch=2,
                     progress=False)
    candidates = targeted_select.TARGETED_CANDIDATES[:2]

    def run(snapshot):
        inputs = MethodInputs(X=X, y=y, masks=sets, model=small_net(), train=cfg.train,
                              sal=cfg.sal, target_set="prior", n_target=64, snapshot=snapshot,
                              settings={"candidates": candidates, "holdout_fraction": 0.2})
        return targeted_select.run_targeted_select(inputs)

    straight = run(None)
    snapshot = Snapshot(tmp_path / "run.pt", owner="targeted_select-test")
    real_fit, fits = targeted_select.fit_cal, []

    def killed_in_refit(*args, **kwargs):
        fits.append(kwargs["target_set"])
        if kwargs["target_set"] == "prior":
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(targeted_select, "fit_cal", killed_in_refit)
    with pytest.raises(KeyboardInterrupt):
        run(snapshot)
    assert fits == [targeted_select.FIT, targeted_select.FIT, "prior"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.candidate0.pt", "run.candidate1.pt"]
    monkeypatch.setattr(targeted_select, "fit_cal", real_fit)
    resumed = run(snapshot)
    assert resumed.extra["selection"] == straight.extra["selection"]
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds", errors="ignore"),
                                  straight.history.drop(columns="seconds", errors="ignore"))
    assert list(tmp_path.iterdir()) == []
