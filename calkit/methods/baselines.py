"""OOD baselines a referee asks for, each written from its paper on calkit's engine.

* ``rf``: a random forest on the features (Breiman 2001, scikit-learn), its
  ``max_features`` and ``min_samples_leaf`` chosen on the validation splits.
* ``ensemble``: a deep ensemble of IR-nets (Lakshminarayanan et al., NeurIPS 2017), each
  trained with the plain recipe; the prediction is the members' mean and their spread is the
  uncertainty used to flag OOD rows (:mod:`calkit.uncertainty`).
* ``cmixup``: C-Mixup (Yao et al., NeurIPS 2022): mixup whose partners are drawn with a
  Gaussian kernel on the label distance.
* ``balanced``: Balanced MSE, batch-based Monte-Carlo form (Ren et al., CVPR 2022), its
  noise variance chosen on validation.
* ``cvar``: CVaR-DRO (Levy et al., NeurIPS 2020): each batch's loss is the mean of its worst
  ``alpha`` fraction of per-sample losses, ``alpha`` chosen on the validation splits.

Every network baseline keeps the profile's recipe (optimiser, schedule, budget, EMA, model
selection on the validation splits); only the loss or the batch changes. The baselines' own
hyperparameters are fields of :class:`BaselineConfig`; each method's registry entry carries
its fields as ``settings`` (part of the run identity) and its run function reads them back
with :meth:`BaselineConfig.from_settings`. Every random draw of a training epoch comes from
the engine's generator (``engine.gen``), so a run is deterministic for a fixed seed.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_distribution
from torch import nn

from calkit import columns as col
from calkit.engine import Diverged, TrainingEngine, TrainResult
from calkit.methods.registry import Method, MethodInputs, MethodOutput, register
from calkit.metrics import mae, predict, smooth_l1
from calkit.uncertainty import ood_flag_auroc, risk_coverage
from calkit.utils import seed_everything, validation_names


@dataclass(frozen=True)
class BaselineConfig:
    """Hyperparameters of the baselines (each field prefixed by its method's name).

    Attributes:
        rf_n_estimators: Trees per forest (fixed, not tuned).
        rf_max_features: Candidate fractions of features per split (chosen on validation).
        rf_min_samples_leaf: Candidate minimum leaf sizes (chosen on validation).
        ensemble_members: Number of IR-nets in the deep ensemble.
        ensemble_seed_offset: Member ``k >= 1`` of a run with seed ``s`` is trained (and
            initialised) with seed ``offset + 100 * s + k``; member 0 uses ``s`` itself, so it
            is the plain baseline of the same seed and the other members never coincide with
            a baseline of another seed (seeds below ``offset``).
        cmixup_alpha: C-Mixup's ``Beta(alpha, alpha)`` mixing distribution (paper default 2).
        cmixup_sigma: Bandwidth of the label kernel, in target units (eV/atom); not tuned.
        balanced_noise_vars: Candidate noise variances ``sigma_noise^2`` of Balanced MSE, in
            model units squared (eV/atom for formation energy; training standard deviations
            for a standardised target), chosen on validation, one model each: noise scales
            0.05, 0.15 and 0.5. (The paper learns it instead; a fixed 0.25 alone, the first
            version, stopped early with 12x the IR-net's validation loss on mp2019.)
        cvar_alphas: Candidate CVaR fractions (chosen on validation, one model each).
    """

    rf_n_estimators: int = 200
    rf_max_features: tuple[float, ...] = (0.3, 0.5, 1.0)
    rf_min_samples_leaf: tuple[int, ...] = (1, 3)
    ensemble_members: int = 5
    ensemble_seed_offset: int = 10_000
    cmixup_alpha: float = 2.0
    cmixup_sigma: float = 0.2
    balanced_noise_vars: tuple[float, ...] = (0.0025, 0.0225, 0.25)
    cvar_alphas: tuple[float, ...] = (0.1, 0.2, 0.5)

    def settings(self, method: str) -> dict[str, Any]:
        """The fields of ``method`` (by prefix), as JSON-friendly values."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self) if f.name.startswith(f"{method}_")}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> BaselineConfig:
        """The defaults with ``settings`` (e.g. :attr:`MethodInputs.settings`) applied."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in settings.items()}
        return replace(cls(), **values)


# ----------------------------------------------------------------- pure losses and draws
def cvar_loss(per_sample: torch.Tensor, alpha: float) -> torch.Tensor:
    """CVaR at level ``alpha``: the mean of the ``ceil(alpha * n)`` largest per-sample losses.

    ``alpha * n`` is rounded down by 1e-9 before the ceiling, so that ``0.1 * 30`` (3.0000...04
    in floating point) takes 3 rows, not 4. At least one row is always taken.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"CVaR alpha must be in (0, 1], got {alpha}.")
    losses = per_sample.reshape(-1)
    k = min(len(losses), max(1, math.ceil(alpha * len(losses) - 1e-9)))
    return torch.topk(losses, k, sorted=False).values.mean()


def cmixup_partner_probabilities(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """C-Mixup's partner distribution within a batch (Yao et al. 2022).

    Row ``i`` picks ``j`` with probability proportional to ``exp(-(y_i - y_j)^2 / (2
    sigma^2))``, ``j != i``.

    The self-weight is zero (mixing a row with itself is a no-op, so every row is mixed with
    another one); a batch of one row can only pick itself. Computed as a row softmax, so tiny
    bandwidths do not underflow to 0/0. Rows sum to one.

    Returns:
        ``(n, n)`` probabilities on ``y``'s device.
    """
    if sigma <= 0:
        raise ValueError(f"C-Mixup bandwidth sigma must be > 0, got {sigma}.")
    y = y.reshape(-1).float()
    n = len(y)
    if n < 2:
        return torch.ones(n, n, device=y.device)
    logits = -(y[:, None] - y[None, :]) ** 2 / (2.0 * sigma ** 2)
    logits.fill_diagonal_(-math.inf)
    return torch.softmax(logits, dim=1)


def balanced_mse_loss(pred: torch.Tensor, y: torch.Tensor, noise_var: float) -> torch.Tensor:
    """Balanced MSE, batch-based Monte-Carlo form (BMC; Ren et al., CVPR 2022, Alg. 1).

    ``2 noise_var * mean_i[-log softmax_j(-(pred_i - y_j)^2 / (2 noise_var))_i]``: each
    prediction must be closer to its own label than to the batch's other labels, which
    removes the training label distribution's prior from the MSE fit.
    """
    if noise_var <= 0:
        raise ValueError(f"Balanced MSE noise_var must be > 0, got {noise_var}.")
    pred = pred.reshape(-1, 1).float()
    logits = -(pred - y.reshape(1, -1).float()) ** 2 / (2.0 * noise_var)
    target = torch.arange(len(pred), device=pred.device)
    return F.cross_entropy(logits, target) * (2.0 * noise_var)


# ----------------------------------------------------------------- epochs on the engine
def loss_step(eng: TrainingEngine, xb: torch.Tensor, yb: torch.Tensor,
              loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], what: str) -> float:
    """One step of the supervised optimiser on ``loss_of(f(xb), yb)`` (NaN-guarded)."""
    eng.optimizer.zero_grad(set_to_none=True)
    loss = loss_of(eng.model(xb).reshape(-1), yb)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise Diverged(f"non-finite {what} loss {value}")
    loss.backward()
    eng.optimizer.step()
    return value


class LossEpoch:
    """A plain epoch over the training rows with another batch loss ``loss_of(pred, y)``."""

    def __init__(self, loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 what: str) -> None:
        self.loss_of, self.what = loss_of, what

    def __call__(self, eng: TrainingEngine, epoch: int) -> tuple[float, dict[str, float]]:
        """One epoch; returns the mean batch loss and no diagnostics."""
        eng.set_train_mode(epoch)
        eng.start_ema_at(epoch)
        total, count = 0.0, 0
        for xb, yb in eng.batches(eng.train_idx):
            total += loss_step(eng, xb, yb, self.loss_of, self.what) * len(yb)
            count += len(yb)
            eng.ema_step()
        return total / max(count, 1), {}


class CMixupEpoch:
    """A C-Mixup epoch: every batch is mixed with kernel-drawn partners, then one step.

    Per batch: partners ``j ~ cmixup_partner_probabilities(y, sigma)`` (row-wise), one
    ``lambda ~ Beta(alpha, alpha)`` (as the authors' code: one per batch, drawn by the inverse
    CDF of a uniform from ``engine.gen``), ``x = lambda x_i + (1 - lambda) x_j`` and likewise
    ``y``; the step uses the recipe's loss on the mixed batch.
    """

    def __init__(self, alpha: float, sigma: float) -> None:
        if alpha <= 0:
            raise ValueError(f"C-Mixup alpha must be > 0, got {alpha}.")
        self.alpha, self.sigma = alpha, sigma

    def mix(self, eng: TrainingEngine, xb: torch.Tensor, yb: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The mixed batch and its ``lambda``."""
        probs = cmixup_partner_probabilities(yb, self.sigma).cpu()
        partner = torch.multinomial(probs, 1, generator=eng.gen).reshape(-1).to(yb.device)
        u = float(torch.rand(1, generator=eng.gen))
        lam = float(beta_distribution.ppf(u, self.alpha, self.alpha))
        return lam * xb + (1 - lam) * xb[partner], lam * yb + (1 - lam) * yb[partner], lam

    def __call__(self, eng: TrainingEngine, epoch: int) -> tuple[float, dict[str, float]]:
        """One epoch; returns the mean mixed-batch loss and the mean lambda."""
        eng.set_train_mode(epoch)
        eng.start_ema_at(epoch)
        total, count, lams = 0.0, 0, []
        for xb, yb in eng.batches(eng.train_idx):
            xm, ym, lam = self.mix(eng, xb, yb)
            total += eng.optimizer_step(eng.optimizer, xm, ym, "C-Mixup") * len(yb)
            count += len(yb)
            lams.append(lam)
            eng.ema_step()
        return total / max(count, 1), {"mixup_lambda": float(np.mean(lams)) if lams else math.nan}


# ----------------------------------------------------------------- helpers
def ema_val_loss(result: TrainResult) -> float:
    """Validation loss of the reported (EMA) model at its selected epoch."""
    hist = result.history
    if "ema_val_loss" in hist and result.ema_selected_epoch in hist.index:
        return float(hist.loc[result.ema_selected_epoch, "ema_val_loss"])
    return float(result.selected_val_loss)


def _output(result: TrainResult, extra: dict[str, Any]) -> MethodOutput:
    return MethodOutput(result.model, result.ema_model, result.history, result.sets,
                        result.run_info(), extra, result.last_model, result.last_ema_model)


def _fit(inputs: MethodInputs, model: nn.Module, epoch_fn=None, train=None) -> TrainResult:
    return TrainingEngine(model, inputs.X, inputs.y, inputs.masks,
                          inputs.train if train is None else train).fit(epoch_fn)


def reinitialised(template: nn.Module, seed: int) -> nn.Module:
    """A copy of ``template`` with every submodule's parameters re-drawn after seeding."""
    seed_everything(seed)
    model = copy.deepcopy(template)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if module is not model and callable(reset):
            reset()
    return model


# ----------------------------------------------------------------- random forest
class ForestModule(nn.Module):
    """A fitted scikit-learn regressor as a torch module (no parameters; computes on the CPU).

    ``forward`` converts the batch to NumPy, predicts and returns float32 on the input's
    device, so :func:`calkit.metrics.predict` and :func:`~calkit.metrics.evaluate_sets` work.
    """

    def __init__(self, forest: Any) -> None:
        super().__init__()
        self.forest = forest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions of the forest for the rows of ``x``."""
        pred = self.forest.predict(x.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(pred, np.float32), device=x.device)

    def spread(self, X: np.ndarray) -> np.ndarray:
        """Population standard deviation of the trees' predictions per row."""
        X = np.asarray(X, np.float32)
        trees = np.stack([tree.predict(X) for tree in self.forest.estimators_])
        return trees.std(axis=0)


def _val_loss(pred: np.ndarray, y: np.ndarray, masks: Mapping[str, np.ndarray],
              loss: str) -> float:
    """Mean over the validation splits of the recipe's loss (as the engine selects)."""
    fn = smooth_l1 if loss == "smooth_l1" else mae
    return float(np.mean([fn(y[masks[s]], pred[masks[s]]) for s in validation_names(masks)]))


def run_rf(inputs: MethodInputs) -> MethodOutput:
    """Random forest: one forest per grid point, the lowest validation loss kept."""
    from sklearn.ensemble import RandomForestRegressor

    cfg = BaselineConfig.from_settings(inputs.settings)
    masks = {k: np.asarray(v, bool) for k, v in inputs.masks.items()}
    X = np.asarray(inputs.X, np.float32)
    y = np.asarray(inputs.y, np.float64)
    train = masks[col.TRAIN]
    candidates, best, best_loss = [], None, math.inf
    for max_features, min_leaf in itertools.product(cfg.rf_max_features, cfg.rf_min_samples_leaf):
        forest = RandomForestRegressor(
            n_estimators=cfg.rf_n_estimators, max_features=max_features,
            min_samples_leaf=min_leaf, n_jobs=1, random_state=inputs.train.seed)
        forest.fit(X[train], y[train])
        loss = _val_loss(forest.predict(X), y, masks, inputs.train.loss)
        candidates.append({"max_features": max_features, "min_samples_leaf": min_leaf,
                           "val_loss": loss})
        if loss < best_loss:  # ties keep the first (smaller, faster) candidate
            best, best_loss = forest, loss
    if best is None:
        raise ValueError("the random forest's grid is empty (rf_max_features, "
                         "rf_min_samples_leaf); give at least one value of each.")
    model = ForestModule(best).eval()
    chosen = {"max_features": best.max_features, "min_samples_leaf": best.min_samples_leaf}
    extra = {"rf_candidates": candidates, "rf_chosen": chosen, "selected_val_loss": best_loss,
             **spread_report(model, X, y, masks)}
    return MethodOutput(model, model, pd.DataFrame(), masks, {}, extra)


# ----------------------------------------------------------------- deep ensemble
class MeanEnsemble(nn.Module):
    """The mean of member networks' predictions; :meth:`spread` is their standard deviation."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def member_predictions(self, x: torch.Tensor) -> torch.Tensor:
        """``(members, n)`` predictions."""
        return torch.stack([m(x).reshape(-1) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean prediction of the members."""
        return self.member_predictions(x).mean(0)

    @torch.inference_mode()
    def spread(self, X: np.ndarray) -> np.ndarray:
        """Population standard deviation of the members' eval-mode predictions per row."""
        preds = np.stack([predict(m, X) for m in self.members])
        return preds.std(axis=0)


def ensemble_seeds(seed: int, members: int, offset: int) -> list[int]:
    """Member seeds of a run with ``seed`` (see :attr:`BaselineConfig.ensemble_seed_offset`)."""
    return [seed] + [offset + 100 * seed + k for k in range(1, members)]


RISK_POINTS = 20
"""Coverage points of the risk-coverage curve stored per set (5 %, 10 %, ..., 100 %)."""


def spread_report(model: ForestModule | MeanEnsemble, X: np.ndarray, y: np.ndarray,
                  masks: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A model's spread (``model.spread``) as an OOD flag and a confidence, for the record.

    Per-row spread on the relation set and the first validation split (small); per OOD set
    (every set of :func:`calkit.columns.is_ood_set`, so a data set's target-named prior and
    extreme sets too) and for the validation rows: the mean spread, the AUROC of flagging the
    set's rows against the validation rows by the spread, and the risk-coverage summary of the
    absolute error of the model's prediction (most confident half, least confident half, the
    area under the curve and the curve at :data:`RISK_POINTS` coverages).
    """
    val = np.logical_or.reduce([masks[s] for s in validation_names(masks)])
    spread = np.full(len(X), np.nan, np.float32)
    error = np.full(len(X), np.nan, np.float64)
    present = {s: m for s, m in masks.items() if col.is_ood_set(s) and m.any()}
    rows = np.logical_or.reduce([val, *present.values()])
    spread[rows] = model.spread(X[rows])
    error[rows] = np.abs(np.asarray(predict(model, X[rows]), np.float64) - y[rows])
    first_val = validation_names(masks)[0]
    kept = [s for s in (col.RELATION, first_val) if s in masks and masks[s].any()]
    curves = {}
    for name, mask in {**present, "val": val}.items():
        rc = risk_coverage(error[mask], spread[mask])
        at = np.clip(np.ceil(np.linspace(1, RISK_POINTS, RISK_POINTS) / RISK_POINTS
                             * mask.sum()).astype(int) - 1, 0, None)
        curves[name] = {"confident_half": rc["confident_half"],
                        "uncertain_half": rc["uncertain_half"], "aurc": rc["aurc"],
                        "risk": [float(v) for v in rc["risk"][at]]}
    return {"spread": {s: spread[masks[s]].round(5).tolist() for s in kept},
            "spread_mean": {**{s: float(spread[m].mean()) for s, m in present.items()},
                            "val": float(spread[val].mean())},
            "spread_auroc": {s: ood_flag_auroc(spread[m], spread[val])
                             for s, m in present.items()},
            "risk_coverage": curves}


def run_ensemble(inputs: MethodInputs) -> MethodOutput:
    """Deep ensemble: ``ensemble_members`` plain IR-nets, prediction = their mean."""
    cfg = BaselineConfig.from_settings(inputs.settings)
    seeds = ensemble_seeds(inputs.train.seed, cfg.ensemble_members, cfg.ensemble_seed_offset)
    template = copy.deepcopy(inputs.fresh_model)
    results = []
    for k, seed in enumerate(seeds):
        model = inputs.fresh_model if k == 0 else reinitialised(template, seed)
        results.append(_fit(inputs, model, train=replace(inputs.train, seed=seed)))
    raw, ema, last, last_ema = (MeanEnsemble([getattr(r, a) for r in results]).eval()
                                for a in ("model", "ema_model", "last_model", "last_ema_model"))
    history = pd.concat({f"m{k}": r.history[[c for c in ("train_batch_loss", "val_loss",
                                                             "ema_val_loss") if c in r.history]]
                         for k, r in enumerate(results)}, axis=1)
    history.columns = [f"{m}/{c}" for m, c in history.columns]
    extra = {"member_seeds": seeds,
             "member_val_loss": [float(r.selected_val_loss) for r in results],
             "member_ema_val_loss": [ema_val_loss(r) for r in results],
             "member_run_info": [r.run_info() for r in results],
             **spread_report(ema, np.asarray(inputs.X, np.float32),
                             np.asarray(inputs.y, np.float64), results[0].sets)}
    return MethodOutput(raw, ema, history, results[0].sets, results[0].run_info(), extra,
                        last, last_ema)


# ----------------------------------------------------------------- loss baselines
def run_cmixup(inputs: MethodInputs) -> MethodOutput:
    """C-Mixup on the engine (the recipe otherwise unchanged)."""
    cfg = BaselineConfig.from_settings(inputs.settings)
    result = _fit(inputs, inputs.fresh_model, CMixupEpoch(cfg.cmixup_alpha, cfg.cmixup_sigma))
    return _output(result, {})


def run_balanced(inputs: MethodInputs) -> MethodOutput:
    """Balanced MSE (BMC) with its noise variance chosen on the validation splits."""
    cfg = BaselineConfig.from_settings(inputs.settings)
    best, noise_var, candidates = fit_each_candidate(
        inputs, "noise_var", cfg.balanced_noise_vars,
        lambda engine, v: LossEpoch(lambda p, t: balanced_mse_loss(p, t, v), "Balanced MSE"))
    return _output(best, {"balanced_noise_var": noise_var, "balanced_candidates": candidates})


def _cvar_epoch(engine: TrainingEngine, alpha: float) -> LossEpoch:
    """An epoch of CVaR-DRO at level ``alpha`` on the engine's per-row loss."""
    per_row = engine.loss_none

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cvar_loss(per_row(pred, target), alpha)

    return LossEpoch(loss, "CVaR")


def run_cvar(inputs: MethodInputs) -> MethodOutput:
    """CVaR-DRO with ``alpha`` chosen on the validation splits."""
    cfg = BaselineConfig.from_settings(inputs.settings)
    best, alpha, candidates = fit_each_candidate(inputs, "alpha", cfg.cvar_alphas, _cvar_epoch)
    return _output(best, {"cvar_alpha": alpha, "cvar_candidates": candidates})


def fit_each_candidate(inputs: MethodInputs, name: str, values: Sequence[float],
                       make_epoch: Callable[[TrainingEngine, float], Any]
                       ) -> tuple[TrainResult, float, list[dict[str, Any]]]:
    """One model per candidate value of a hyperparameter; keep the best on validation.

    Every candidate starts from the same initialisation and sees the same batch order; the
    one whose EMA has the lowest validation loss is kept (the first on a tie).

    Args:
        inputs: The run's inputs.
        name: The hyperparameter's name in the recorded candidates.
        values: Its candidate values.
        make_epoch: ``(engine, value) -> epoch function`` for :meth:`TrainingEngine.fit`.

    Returns:
        The kept result, its value, and every candidate's value and validation losses.
    """
    template = copy.deepcopy(inputs.fresh_model)
    best, best_loss, best_value, candidates = None, math.inf, math.nan, []
    for value in values:
        engine = TrainingEngine(copy.deepcopy(template), inputs.X, inputs.y, inputs.masks,
                                inputs.train)
        result = engine.fit(make_epoch(engine, value))
        loss = ema_val_loss(result)
        candidates.append({name: value, "ema_val_loss": loss,
                           "val_loss": float(result.selected_val_loss), **result.run_info()})
        if best is None or loss < best_loss:
            best, best_loss, best_value = result, loss, value
    if best is None:
        raise ValueError(f"no candidate values of {name} were given.")
    return best, best_value, candidates


_DEFAULTS = BaselineConfig()

register(Method(
    "rf", "random forest", "plain", run_rf,
    "baseline: a random forest on the features (Breiman 2001; scikit-learn), max_features and "
    "min_samples_leaf chosen on the validation splits; not a network, so no epochs or EMA",
    settings=_DEFAULTS.settings("rf"), kind="baseline"))
register(Method(
    "ensemble", "deep ensemble", "plain", run_ensemble,
    "baseline: mean of 5 plain IR-nets of different seeds (deep ensemble; Lakshminarayanan et "
    "al., NeurIPS 2017); their spread is the uncertainty that flags OOD rows",
    settings=_DEFAULTS.settings("ensemble"), kind="baseline"))
register(Method(
    "cmixup", "C-Mixup", "plain", run_cmixup,
    "baseline: mixup with partners drawn by a Gaussian kernel on the label distance (C-Mixup; "
    "Yao et al., NeurIPS 2022)", settings=_DEFAULTS.settings("cmixup"), kind="baseline"))
register(Method(
    "balanced", "Balanced MSE", "plain", run_balanced,
    "baseline: Balanced MSE, batch Monte-Carlo form, its noise variance chosen on the "
    "validation splits (Ren et al., CVPR 2022), for label shifts toward values rare in training",
    settings=_DEFAULTS.settings("balanced"), kind="baseline"))
register(Method(
    "cvar", "CVaR-DRO", "plain", run_cvar,
    "baseline: CVaR-DRO, each batch's loss the mean of its worst alpha fraction of per-sample "
    "losses, alpha chosen on the validation splits (Levy et al., NeurIPS 2020)",
    settings=_DEFAULTS.settings("cvar"), kind="baseline"))
