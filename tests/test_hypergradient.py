"""Does SAL's cost-weight update descend the risk R it is derived for?

On a small deterministic problem in double precision, one whole SAL step (pseudo-environment
risk, attacks with cost weights ``w``, theta steps, hypergradient accumulation) is run, and
its accumulated ``delta_w`` is compared with central finite differences of
``F(w) = R(theta after the SAL step with weights w)`` through the actual attack and theta
steps (gamma held fixed, as the derivation does). ``w <- w - step * delta_w`` descends ``R``
when ``delta_w`` points along ``dF/dw``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from calkit.config import SALConfig
from calkit.engine import loss_functions
from calkit.models import IRNet
from calkit.sal import SALState, environment_risk, hyper_parameter_index, sal_step

ALPHA_T, GAMMA, EPS = 0.5, 1.0, 1e-4


def _problem(seed: int, n: int = 64, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    torch.manual_seed(seed)
    return IRNet(d, (8, 4), norm="layer", dropout=0.0).double(), x, y


def _risk_after_step(model0, make_opt, x, y, w, cfg):
    """``R`` on the clean batch after one SAL step with weights ``w``, and that step's delta."""
    model = copy.deepcopy(model0)
    params = list(model.parameters())
    state = SALState(w=w.clone(), frozen=torch.zeros_like(w, dtype=torch.bool), gamma=GAMMA,
                     delta=torch.zeros_like(w))
    sal_step(model, params, hyper_parameter_index(model, params, "all"), make_opt(params),
             state, x, y, cfg, "smooth_l1", ALPHA_T, torch.Generator().manual_seed(1), True)
    _, loss_none = loss_functions("smooth_l1")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))  # same split
    with torch.no_grad():
        risk = environment_risk(loss_none(model(x), y), perm, cfg.r_theta_splits, ALPHA_T)
    return float(risk), state.delta.clone()


def _alignment(seed: int, make_opt, cfg: SALConfig) -> float:
    """Cosine between the SAL update ``delta_w`` and the finite-difference ``dR/dw``."""
    model, x, y = _problem(seed)
    d = x.shape[1]
    w = 2.0 * torch.linspace(0.5, 1.5, d, dtype=torch.float64)
    _, delta = _risk_after_step(model, make_opt, x, y, w, cfg)
    fd = torch.zeros(d, dtype=torch.float64)
    for j in range(d):
        step = torch.zeros(d, dtype=torch.float64)
        step[j] = EPS
        up = _risk_after_step(model, make_opt, x, y, w + step, cfg)[0]
        down = _risk_after_step(model, make_opt, x, y, w - step, cfg)[0]
        fd[j] = (up - down) / (2 * EPS)
    return float(torch.dot(fd, delta) / (fd.norm() * delta.norm()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_descends_r_when_theta_steps_are_gradient_steps(seed):
    """With plain gradient (SGD) theta steps, the chain rule SAL uses holds: the update points
    along dR/dw (measured cosines 0.93-0.95 on seeds 0-2)."""
    cfg = SALConfig(attack_epochs=5, attack_lr=0.1, theta_epochs=3, theta_lr=1e-2)
    cos = _alignment(seed, lambda p: torch.optim.SGD(p, lr=cfg.theta_lr), cfg)
    assert cos > 0.8, cos


@pytest.mark.xfail(strict=True, reason=(
    "finding: with Adam theta steps, as CAL takes them (a fresh Adam per SAL step, as the "
    "authors' code builds), the update is unrelated to dR/dw: cosines -0.02, -0.28, +0.07 on "
    "seeds 0-2 (2 attack steps at 1e-2, theta lr 3e-4); Adam's normalised first steps make "
    "theta depend on x_A almost only through gradient signs, which the derivation's "
    "d theta / d x_A = -eta sum d2L/dtheta dx_A does not model. The book says so, and the "
    "control 'CAL with w fixed' measures what learning w is worth."))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_descends_r_with_the_adam_theta_steps_cal_uses(seed):
    cfg = SALConfig(attack_epochs=2, attack_lr=1e-2, theta_epochs=3, theta_lr=3e-4)
    cos = _alignment(seed, lambda p: torch.optim.Adam(p, lr=cfg.theta_lr), cfg)
    assert cos > 0.8, cos


def test_sal_step_attacks_with_the_configured_adam_and_cost(monkeypatch):
    """The attack settings of the `authors` profile's fidelity items reach the attack."""
    import calkit.sal as sal_module
    seen = []
    real_attack = sal_module.attack

    def spy(*args, **kwargs):
        seen.append((kwargs["betas"], kwargs["cost"]))
        return real_attack(*args, **kwargs)

    monkeypatch.setattr(sal_module, "attack", spy)
    model, x, y = _problem(0)
    w = torch.ones(x.shape[1], dtype=torch.float64)
    for cfg, expected in ((SALConfig(theta_epochs=1), ((0.9, 0.999), "mean")),
                          (SALConfig(theta_epochs=1, attack_beta2=0.9, attack_cost="row_sum"),
                           ((0.9, 0.9), "row_sum"))):
        seen.clear()
        _risk_after_step(model, lambda p: torch.optim.SGD(p, lr=1e-3), x, y, w, cfg)
        assert seen == [expected]
