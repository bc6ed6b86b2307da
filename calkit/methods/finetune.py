"""Traditional fine-tuning of the trained baseline on the N target rows, on the one engine.

It is the comparison for targeted CAL.

Protocol (the paper does not document its own): split the N rows (seeded) into fit and
held-out parts (``holdout_fraction``); for each candidate ``lr`` fine-tune a copy of the
baseline on the fit rows for up to ``max_epochs``, early-stopped on the held-out rows; pick
the ``(lr, epochs)`` with the lowest held-out loss, where "0 epochs" (the baseline) is a
candidate, so the choice is never worse than no fine-tuning on the held-out rows; then refit
a fresh copy on all N rows with the chosen settings. No other rows are ever looked at.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from calkit.config import FineTuneConfig, TrainConfig
from calkit.engine import TrainingEngine, loss_functions
from calkit.methods.registry import Method, MethodInputs, MethodOutput, register
from calkit.splits import select_target
from calkit.utils import SetMasks, seed_everything, select_device

HELDOUT = "heldout"


@dataclass
class FineTuneResult:
    """Outcome of :func:`fine_tune`.

    Attributes:
        model: Baseline refitted on all N rows with the chosen settings (or the baseline
            itself when 0 epochs won).
        lr: Chosen learning rate (``None`` with 0 epochs).
        epochs: Chosen number of epochs (0 = no fine-tuning beat the baseline).
        heldout_loss: Held-out loss of the selected candidate (fit on the other rows).
        baseline_heldout_loss: Held-out loss without fine-tuning.
        grid: Per candidate ``lr``: its selected epoch count and held-out loss.
        note: Human-readable summary of the decision.
        holdout_indices: Positions (within the N rows) used as held-out.
    """

    model: nn.Module
    lr: float | None
    epochs: int
    heldout_loss: float
    baseline_heldout_loss: float
    grid: pd.DataFrame
    note: str
    holdout_indices: np.ndarray


def _heldout_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_none) -> float:
    was = model.training
    model.eval()
    with torch.inference_mode():
        value = float(loss_none(model(X), y).mean())
    model.train(was)
    return value


def holdout_positions(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions (within N target rows) held out to choose a targeted method's settings.

    Fine-tuning and targeted CAL with a chosen recipe share it, so both choose on the same rows.
    """
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:min(max(1, round(fraction * n)), n - 1)])


def fine_tune(model: nn.Module, X_target: np.ndarray, y_target: np.ndarray,
              config: FineTuneConfig | None = None,
              recipe: TrainConfig | None = None) -> FineTuneResult:
    """Fine-tune every layer of a trained model on N target rows (module docstring).

    Args:
        model: The trained baseline (not modified).
        X_target: Standardised features of the N target rows.
        y_target: Their targets.
        config: The protocol (candidate rates, budget, held-out share).
        recipe: Batch size, loss, seed, device and optimiser kernel; its ``lr``, epochs,
            patience and EMA are set by the protocol.

    Returns:
        A :class:`FineTuneResult`.
    """
    cfg = (config or FineTuneConfig()).validate()
    recipe = recipe or TrainConfig(schedule="none", fused_adam=False)
    n = len(X_target)
    if n < 2:
        raise ValueError(f"fine-tuning needs at least 2 target rows, got {n}.")
    device = select_device(recipe.device)
    gen = seed_everything(recipe.seed)
    _, loss_none = loss_functions(recipe.loss)
    Xt = torch.as_tensor(np.asarray(X_target, np.float32), device=device)
    yt = torch.as_tensor(np.asarray(y_target, np.float32).reshape(-1), device=device)
    hold = holdout_positions(n, cfg.holdout_fraction, recipe.seed)
    n_hold = len(hold)
    is_hold = np.zeros(n, bool)
    is_hold[hold] = True
    base = copy.deepcopy(model).to(device)
    hold_t = torch.as_tensor(hold, device=device)
    baseline_loss = _heldout_loss(base, Xt[hold_t], yt[hold_t], loss_none)
    search = replace(recipe, epochs=cfg.max_epochs, patience=cfg.patience, ema_start_epoch=None,
                     selection="val", history_sets=(HELDOUT,), progress=False)
    rows = []
    best: tuple[float, float | None, int] = (baseline_loss, None, 0)
    for lr in cfg.lrs:
        result = TrainingEngine(copy.deepcopy(base), Xt.cpu().numpy(), yt.cpu().numpy(),
                                {"train": ~is_hold, HELDOUT: is_hold}, replace(search, lr=lr),
                                val_sets=[HELDOUT], generator=gen).fit()
        curve = result.history["val_loss"].to_numpy() if len(result.history) else np.zeros(0)
        k = result.selected_epoch
        loss_k = float(curve[k]) if k >= 0 and math.isfinite(curve[k]) else math.inf
        rows.append({"lr": lr, "best_epochs": k + 1 if k >= 0 else 0, "heldout_loss": loss_k})
        if loss_k < best[0]:
            best = (loss_k, lr, k + 1)
    heldout, chosen_lr, epochs = best
    if chosen_lr is None:
        note = (f"no candidate beat the baseline on the {n_hold} held-out rows "
                f"(baseline loss {baseline_loss:.4g}); chose 0 epochs (no fine-tuning).")
        tuned = base
    else:
        note = (f"chose lr={chosen_lr:g}, {epochs} epochs: held-out loss {heldout:.4g} vs "
                f"{baseline_loss:.4g} without fine-tuning; refit on all {n} rows.")
        refit = replace(search, lr=chosen_lr, epochs=epochs, history_sets=())
        tuned = TrainingEngine(copy.deepcopy(base), Xt.cpu().numpy(), yt.cpu().numpy(),
                               {"train": np.ones(n, bool)}, refit, val_sets=[],
                               generator=gen).fit().model
    tuned.eval()
    return FineTuneResult(model=tuned, lr=chosen_lr, epochs=epochs, heldout_loss=heldout,
                          baseline_heldout_loss=baseline_loss, grid=pd.DataFrame(rows),
                          note=note, holdout_indices=hold)


def fine_tune_on_set(model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
                     target_set: str, n_target: int, config: FineTuneConfig | None = None,
                     recipe: TrainConfig | None = None, seed: int = 3141
                     ) -> tuple[FineTuneResult, np.ndarray, dict[str, np.ndarray]]:
    """Fine-tune on the same N rows targeted CAL draws (same ``seed``).

    Returns:
        ``(result, target_indices, sets_without_them)`` for evaluation as in targeted CAL.
    """
    idx, new_sets = select_target(sets, target_set, n_target, seed, n_rows=len(X))
    return fine_tune(model, X[idx], y[idx], config, recipe), idx, new_sets


def run_finetune(inputs: MethodInputs) -> MethodOutput:
    """Registry run function of the fine-tune family: fine-tune the baseline's EMA model."""
    _, base_ema = inputs.baseline_models()
    result, idx, eval_masks = fine_tune_on_set(
        base_ema, inputs.X, inputs.y, inputs.masks, inputs.target, inputs.n_target,
        inputs.finetune, inputs.train, seed=inputs.target_seed)
    extra = {"target_set": inputs.target, "target_indices": idx.tolist(),
             "finetune": {"lr": result.lr, "epochs": result.epochs,
                          "heldout_loss": result.heldout_loss,
                          "baseline_heldout_loss": result.baseline_heldout_loss,
                          "note": result.note, "grid": result.grid.to_dict(orient="records")}}
    return MethodOutput(result.model, result.model, pd.DataFrame(), eval_masks, {}, extra)


register(Method(
    "finetune", "fine-tune", "finetune", run_finetune,
    "the trained baseline's EMA model fine-tuned on the N target rows, tuned on a held-out "
    "part of them",
    recipe_changes={"schedule": "none", "fused_adam": False},
    why="Fine-tuning searches a constant learning rate per candidate; the loop Adam kernel "
        "keeps the wave-1 fine-tune records bit-identical.",
    needs_target=True, needs_baseline=True, paper_rows=("targeted",)))


ORACLE = "oracle"


def fine_tune_oracle(model: nn.Module, X: np.ndarray, y: np.ndarray, fit_rows: np.ndarray,
                     eval_rows: np.ndarray, config: FineTuneConfig | None = None,
                     recipe: TrainConfig | None = None) -> tuple[nn.Module, nn.Module, dict]:
    """Fine-tuning selected on the evaluation rows themselves: an oracle no user could run.

    Every candidate rate fine-tunes a copy of the baseline on all N ``fit_rows``; the
    ``(lr, epoch)`` with the lowest loss on ``eval_rows`` (the target set's test rows) wins,
    and "0 epochs" (the baseline) is a candidate. This is how the authors' result log chose its
    fine-tune checkpoints (cal-paper.md section 9); it shows where such numbers come from.

    Returns:
        ``(selected model, the chosen candidate's last-epoch model, facts for the record)``.
    """
    cfg = (config or FineTuneConfig()).validate()
    recipe = recipe or TrainConfig(schedule="none", fused_adam=False)
    device = select_device(recipe.device)
    gen = seed_everything(recipe.seed)
    _, loss_none = loss_functions(recipe.loss)
    base = copy.deepcopy(model).to(device)
    if len(eval_rows) == 0:  # N took the whole set: nothing left to choose on (or report)
        info: dict[str, Any] = {
            "lr": None, "epochs": 0, "oracle_loss": math.nan, "baseline_loss": math.nan,
            "grid": [], "note": "ORACLE: no evaluation rows left after drawing N; the baseline "
                                "is returned unchanged."}
        return base.eval(), base, info
    rows = torch.as_tensor(eval_rows, device=device)
    Xt = torch.as_tensor(np.asarray(X, np.float32), device=device)
    yt = torch.as_tensor(np.asarray(y, np.float32), device=device)
    baseline_loss = _heldout_loss(base, Xt[rows], yt[rows], loss_none)
    fit = np.zeros(len(X), bool)
    fit[fit_rows] = True
    oracle = np.zeros(len(X), bool)
    oracle[eval_rows] = True
    search = replace(recipe, epochs=cfg.max_epochs, patience=cfg.patience, ema_start_epoch=None,
                     selection="val", history_sets=(ORACLE,), progress=False)
    best: tuple[float, float | None, int, nn.Module, nn.Module | None] = (
        baseline_loss, None, 0, base, base)
    grid = []
    for lr in cfg.lrs:
        result = TrainingEngine(copy.deepcopy(base), X, y, {"train": fit, ORACLE: oracle},
                                replace(search, lr=lr), val_sets=[ORACLE], generator=gen).fit()
        loss = result.selected_val_loss
        grid.append({"lr": lr, "best_epochs": result.selected_epoch + 1, "oracle_loss": loss})
        if math.isfinite(loss) and loss < best[0]:
            best = (loss, lr, result.selected_epoch + 1, result.model, result.last_model)
    loss, chosen_lr, epochs, chosen, last = best
    info = {"lr": chosen_lr, "epochs": epochs, "oracle_loss": loss, "baseline_loss": baseline_loss,
            "grid": grid, "note": "ORACLE: epochs and rate chosen on the evaluation rows of the "
                                  "target set, which no user has; for comparison only."}
    return chosen.eval(), (chosen if last is None else last).eval(), info


def run_finetune_oracle(inputs: MethodInputs) -> MethodOutput:
    """Registry run function of the oracle fine-tune control."""
    _, base_ema = inputs.baseline_models()
    idx, eval_masks = select_target(inputs.masks, inputs.target, inputs.n_target,
                                    inputs.target_seed, n_rows=len(inputs.X))
    eval_rows = np.flatnonzero(eval_masks[inputs.target])
    chosen, last, info = fine_tune_oracle(base_ema, inputs.X, inputs.y, idx, eval_rows,
                                          inputs.finetune, inputs.train)
    extra = {"target_set": inputs.target, "target_indices": idx.tolist(), "finetune": info}
    return MethodOutput(chosen, chosen, pd.DataFrame(), eval_masks, {}, extra, last, last)
