"""Stable Adversarial Learning (SAL) maths: pure functions on a model and a batch.

Reference: Liu et al., AAAI 2021; CAL: Li, Miklaucic & Hu, arXiv 2408.09297. One SAL step
(:func:`sal_step`) on an adversarial source batch ``(x, y)``:

a. ``R(theta) = sum_e L_e + alpha_t (max_e L_e - min_e L_e)`` over ``r_theta_splits`` random
   pseudo-environments of the batch; ``g = dR/dtheta`` (over the hypergradient parameters
   chosen by ``grad_layers``).
b. ``theta_epochs`` times: ``x_A`` = ``attack_epochs`` Adam-ascent steps on
   ``loss(f(x_A), y) - gamma * c_w(x_A, x)`` from the clean batch (``attack_cost``: the
   weighted squared distance averaged over rows and features, or summed over features); one
   forward on ``x_A`` gives ``dL/dtheta`` (with graph) and the VJP ``h = d/dx_A <g, dL/dtheta>``
   (``torch.autograd.grad`` with ``grad_outputs=g``; no Jacobian is formed);
   ``delta_w += sum_i h * (x_A - x)``; the theta optimiser steps on ``dL/dtheta``.
c. :meth:`SALState.apply_update`: ``w <- w - deltaall * delta_w / (max|delta_w| + eps)``;
   negative weights are reset to ``negative_weight_reset`` and frozen;
   ``gamma = 1 / min(w > 0)``.

The chain rule is ``dR/dw = dR/dtheta . dtheta/dx_A . dx_A/dw`` with
``dtheta/dx_A ~ -eta_theta sum_steps d2L/dtheta dx_A`` and
``dx_A/dw ~ -2 gamma eta_attack (x_A - x)``; the two minus signs cancel and the positive
factors ``2 gamma eta_attack eta_theta`` drop out of the normalised step, so
``delta_w = xa_grad_reduce * sum h * (x_A - x)`` (``xa_grad_reduce`` only matters against
``eps``; it is kept for fidelity to the research configs).

The attack runs with the network in eval mode (``attack_eval_mode``): it perturbs the
deterministic predictor, and BatchNorm running statistics are not polluted by adversarial
rows. The theta step and ``R`` use train mode (dropout on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from calkit.config import GRAD_LAYERS, AttackCost, SALConfig
from calkit.engine import Diverged, loss_functions


def _cost_rows(x: torch.Tensor, cost: AttackCost) -> int:
    """The divisor of the summed transport cost: every entry (``"mean"``) or the rows."""
    return x.numel() if cost == "mean" else len(x)


def attack_objective(model: nn.Module, x_a: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                     w: torch.Tensor, gamma: float, loss_fn,
                     cost: AttackCost = "mean") -> torch.Tensor:
    """The attack's objective ``loss(f(x_A), y) - gamma * c_w(x_A, x)``.

    ``c_w`` is ``sum((x - x_A)^2 * w)`` over the batch divided by its entries (``"mean"``)
    or by its rows (``"row_sum"``, the authors' code).
    """
    return loss_fn(model(x_a), y) - gamma * ((x - x_a) ** 2 * w).sum() / _cost_rows(x, cost)


def attack_gradient(model: nn.Module, x_a: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    w: torch.Tensor, gamma: float, loss_fn,
                    cost: AttackCost = "mean") -> torch.Tensor:
    """Gradient of :func:`attack_objective` with respect to ``x_A``.

    Only the loss term goes through autograd (input gradient only, so no weight
    gradients are computed); the penalty's gradient is the closed form
    ``-2 gamma w (x_A - x) / divisor``.
    """
    x_a = x_a.detach().requires_grad_(True)
    (g_loss,) = torch.autograd.grad(loss_fn(model(x_a), y), x_a)
    return g_loss - (2.0 * gamma / _cost_rows(x, cost)) * w * (x_a.detach() - x)


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, gamma: float,
           steps: int, lr: float, loss_fn, betas: tuple[float, float] = (0.9, 0.999),
           eps: float = 1e-8, cost: AttackCost = "mean") -> torch.Tensor:
    """Adam ascent on :func:`attack_objective`, starting from the clean batch.

    Equivalent to ``torch.optim.Adam([x_A], lr, maximize=True)`` but written out on
    preallocated tensors (no optimiser object per attack).

    Returns:
        The adversarial batch ``x_A`` (detached).
    """
    x_a = x.clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    b1, b2 = betas
    for t in range(1, steps + 1):
        grad = attack_gradient(model, x_a, x, y, w, gamma, loss_fn, cost)
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v / (1 - b2 ** t)).sqrt_().add_(eps)
        x_a.addcdiv_(m, denom, value=lr / (1 - b1 ** t))
    return x_a


def environment_risk(per_sample: torch.Tensor, perm: torch.Tensor, n_env: int,
                     alpha_t: float) -> torch.Tensor:
    """``R = sum_e L_e + alpha_t (max_e L_e - min_e L_e)`` over random pseudo-environments.

    Args:
        per_sample: Per-row losses of the batch.
        perm: A random permutation of the rows; environment ``e`` is its ``e``-th chunk.
        n_env: Number of environments (``min(n_env, n_rows)`` are used).
        alpha_t: Weight of the spread term.
    """
    chunks = per_sample[perm].tensor_split(min(n_env, len(perm)))
    losses = torch.stack([c.mean() for c in chunks])
    return losses.sum() + alpha_t * (losses.max() - losses.min())


def hypergradient_vjp(model: nn.Module, params: Sequence[nn.Parameter],
                      hyper_index: Sequence[int], x_a: torch.Tensor, y: torch.Tensor,
                      g: Sequence[torch.Tensor], loss_fn
                      ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """One forward on ``x_A``: the theta gradient and the VJP ``d/dx_A <g, dL/dtheta>``.

    Args:
        model: The network.
        params: All trainable parameters (their gradients feed the theta step).
        hyper_index: Positions in ``params`` of the hypergradient parameters.
        x_a: Adversarial batch.
        y: Targets.
        g: ``dR/dtheta`` for the hypergradient parameters (the VJP's vector).
        loss_fn: Mean loss.

    Returns:
        ``(h, grads, loss)``: ``h`` has the shape of ``x_A``; ``grads`` are detached
        ``dL/dtheta`` for every parameter; ``loss`` is the detached loss value.
    """
    x_a = x_a.detach().requires_grad_(True)
    loss = loss_fn(model(x_a), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    (h,) = torch.autograd.grad([grads[i] for i in hyper_index], x_a, grad_outputs=list(g))
    return h, [gr.detach() for gr in grads], loss.detach()


def hyper_parameter_index(model: nn.Module, params: Sequence[nn.Parameter],
                          grad_layers: str) -> list[int]:
    """Positions in ``params`` of the parameters the hypergradient goes through.

    ``"first"`` is the first ``nn.Linear`` (the first block's main layer; its shortcut
    is not included), ``"last"`` the output ``nn.Linear``; ``"all"`` everything.
    """
    if grad_layers == "all":
        return list(range(len(params)))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("grad_layers='first'/'last' needs a model with nn.Linear layers.")
    if grad_layers == "first":
        chosen = {id(p) for p in linears[0].parameters()}
    elif grad_layers == "last":
        chosen = {id(p) for p in linears[-1].parameters()}
    else:
        raise ValueError(f"unknown grad_layers {grad_layers!r}; valid: {', '.join(GRAD_LAYERS)}.")
    return [i for i, p in enumerate(params) if id(p) in chosen]


@dataclass
class SALState:
    """The cost weights and their bookkeeping, on the training device."""

    w: torch.Tensor
    frozen: torch.Tensor
    gamma: float
    delta: torch.Tensor

    @classmethod
    def create(cls, n_features: int, w_init: float, device: torch.device) -> SALState:
        """All weights at ``w_init``, none frozen, ``gamma = 1 / w_init``."""
        w = torch.full((n_features,), float(w_init), device=device)
        return cls(w=w, frozen=torch.zeros(n_features, dtype=torch.bool, device=device),
                   gamma=1.0 / float(w_init), delta=torch.zeros_like(w))

    def step(self, deltaall: float, eps: float) -> None:
        """Normalised step on the accumulated ``delta``; clears ``delta``.

        ``w <- w - deltaall * delta / (max|delta| + eps)``; frozen weights stay, and weights
        may go negative here.

        Raises:
            Diverged: If the step or the new weights are not finite.
        """
        d = self.delta.masked_fill(self.frozen, 0.0)
        self.delta.zero_()
        peak = float(d.abs().max()) if d.numel() else 0.0
        if not math.isfinite(peak):
            raise Diverged("non-finite hypergradient of the cost weights")
        if peak == 0.0:
            return
        w_new = self.w - (deltaall / (peak + eps)) * d
        if not bool(torch.isfinite(w_new).all()):
            raise Diverged("non-finite cost weights")
        self.w = w_new

    def reset_and_freeze(self, reset: float) -> torch.Tensor:
        """Set weights ``<= 0`` to ``reset`` and freeze them; return the mask of those reset.

        A weight of exactly 0 counts too: it would make ``gamma = 1 / min(w)`` infinite.
        """
        neg = (self.w <= 0) & ~self.frozen
        self.w = torch.where(neg, torch.full_like(self.w, reset), self.w)
        self.frozen |= neg
        return neg

    def update_gamma(self, exclude: torch.Tensor | None = None) -> None:
        """``gamma = 1 / min(w)`` over the positive weights not in ``exclude``."""
        keep = self.w > 0
        if exclude is not None:
            keep &= ~exclude
        self.gamma = 1.0 / float(self.w[keep].min()) if bool(keep.any()) else 1.0

    def apply_update(self, deltaall: float, eps: float, reset: float) -> None:
        """Step, then reset-and-freeze at once and recompute ``gamma`` over every weight.

        This is the wave-1 rule (``w_reset="every_update"``), under which the attack never
        sees a negative cost; the authors reset only at the end of each epoch
        (:meth:`end_epoch`).
        """
        self.step(deltaall, eps)
        self.reset_and_freeze(reset)
        self.update_gamma()

    def end_epoch(self, reset: float) -> None:
        """The authors' end-of-epoch rule for the negative weights.

        They are reset and frozen, and ``gamma`` is taken over the weights not reset now (the
        frozen 1s enter it from the next epoch on).
        """
        self.update_gamma(exclude=self.reset_and_freeze(reset))

    def stats(self) -> dict[str, float]:
        """Min / median / max of ``w``, number frozen, and ``gamma``."""
        return {"w_min": float(self.w.min()), "w_median": float(self.w.median()),
                "w_max": float(self.w.max()), "w_frozen": int(self.frozen.sum()),
                "gamma": self.gamma}


def sal_step(model: nn.Module, params: Sequence[nn.Parameter], hyper_index: Sequence[int],
             theta_opt: torch.optim.Optimizer, state: SALState, x: torch.Tensor,
             y: torch.Tensor, config: SALConfig, loss: str, alpha_t: float,
             gen: torch.Generator, train_mode: bool = True) -> tuple[float, float]:
    """One SAL step on a source batch (steps a and b of the module docstring).

    Args:
        model: The network (trained in place by the theta steps).
        params: All trainable parameters.
        hyper_index: Positions in ``params`` of the hypergradient parameters.
        theta_opt: The optimiser of the theta steps.
        state: Cost weights; ``dR/dw`` is accumulated into ``state.delta``.
        x: Source batch.
        y: Its targets.
        config: SAL settings.
        loss: Name of the training loss.
        alpha_t: Weight of the spread term of ``R`` this epoch.
        gen: Generator of the pseudo-environment split.
        train_mode: Mode of the theta steps and of ``R`` (False under the eval-mode quirk).

    ``dR/dw`` is accumulated into ``state.delta``; the caller applies the update.

    Returns:
        ``(mean |x_A - x|, mean adversarial loss)`` over the theta iterations.

    Raises:
        Diverged: On a non-finite ``R`` or adversarial loss (before any step on it).
    """
    loss_fn, loss_none = loss_functions(loss)
    hyper = [params[i] for i in hyper_index]
    model.train(train_mode)
    perm = torch.randperm(len(x), generator=gen).to(x.device)  # drawn either way: same streams
    if config.learn_w:
        risk = environment_risk(loss_none(model(x), y), perm, config.r_theta_splits, alpha_t)
        if not math.isfinite(float(risk.detach())):
            raise Diverged("non-finite environment risk R(theta)")
        g = torch.autograd.grad(risk, hyper)
    pert = torch.zeros((), device=x.device)
    adv_loss = torch.zeros((), device=x.device)
    for _ in range(config.theta_epochs):
        if config.attack_eval_mode:
            model.eval()
        x_a = attack(model, x, y, state.w, state.gamma, config.attack_epochs, config.attack_lr,
                     loss_fn, betas=(0.9, config.attack_beta2), cost=config.attack_cost)
        model.train(train_mode)
        diff = x_a - x
        if config.learn_w:
            h, grads, step_loss = hypergradient_vjp(model, params, hyper_index, x_a, y, g,
                                                    loss_fn)
            state.delta.add_((h * diff).sum(0), alpha=config.xa_grad_reduce)
        else:  # the fixed-w control: no hypergradient, the same attack and theta steps
            value = loss_fn(model(x_a), y)
            grads = [gr.detach() for gr in torch.autograd.grad(value, params)]
            step_loss = value.detach()
        if not math.isfinite(float(step_loss)):
            raise Diverged("non-finite adversarial loss")
        pert += diff.abs().mean()
        adv_loss += step_loss
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr
        theta_opt.step()
    return float(pert) / config.theta_epochs, float(adv_loss) / config.theta_epochs
