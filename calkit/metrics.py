"""Per-set regression metrics: MAE, RMSE, R² and smooth-L1 (the paper's "loss")."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from calkit.utils import SetMasks, as_mask_dict

METRICS = ("loss", "mae", "rmse", "r2")


def smooth_l1(y_true: np.ndarray, y_pred: np.ndarray, beta: float = 1.0) -> float:
    """Mean Huber / smooth-L1 loss, as ``torch.nn.SmoothL1Loss(beta=1)`` (the paper's "loss")."""
    d = np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64))
    if d.size == 0:
        return float("nan")
    return float(np.mean(np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    d = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    return float(np.mean(np.abs(d))) if d.size else float("nan")


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    d = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination (NaN for fewer than two rows or constant targets)."""
    yt = np.asarray(y_true, np.float64)
    if yt.size < 2:
        return float("nan")
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((np.asarray(y_pred, np.float64) - yt) ** 2)) / ss_tot


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """All metrics of ``METRICS`` for one set of predictions."""
    return {"loss": smooth_l1(y_true, y_pred), "mae": mae(y_true, y_pred),
            "rmse": rmse(y_true, y_pred), "r2": r2(y_true, y_pred)}


def model_device(model: nn.Module) -> torch.device:
    """Device of a model's first parameter, else of its first buffer, else the CPU.

    Models without parameters (e.g. a wrapped random forest) compute on the CPU.
    """
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.inference_mode()
def predict(model: nn.Module, X: np.ndarray | torch.Tensor, batch_size: int = 8192,
            device: torch.device | str | None = None) -> np.ndarray:
    """Predict in eval mode, in large batches, without autograd.

    The model's train/eval mode is restored afterwards.

    Args:
        model: A module mapping ``(n, d)`` to ``(n,)`` (or ``(n, 1)``).
        X: Inputs as an array or tensor.
        batch_size: Rows per forward pass.
        device: Device for the computation; defaults to the model's.

    Returns:
        Predictions as a float32 NumPy array of shape ``(n,)``.
    """
    dev = torch.device(device) if device is not None else model_device(model)
    Xt = torch.as_tensor(X, dtype=torch.float32, device=dev)
    was_training = model.training
    model.eval()
    try:
        out = [model(Xt[i:i + batch_size]).reshape(-1) for i in range(0, len(Xt), batch_size)]
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0, np.float32)
    return torch.cat(out).float().cpu().numpy()


def metrics_table(y_true: np.ndarray, y_pred: np.ndarray,
                  sets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per-set metrics from precomputed predictions.

    Args:
        y_true: Targets, shape ``(n,)``.
        y_pred: Predictions, shape ``(n,)``.
        sets: ``{name: bool mask}`` over the ``n`` rows.

    Returns:
        DataFrame indexed by set name with columns ``n, loss, mae, rmse, r2``.
    """
    rows = {}
    for name, mask in sets.items():
        rows[name] = {"n": int(mask.sum()), **regression_metrics(y_true[mask], y_pred[mask])}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["n", *METRICS])
    df.index.name = "set"
    return df


def evaluate_sets(model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
                  batch_size: int = 8192) -> pd.DataFrame:
    """Evaluate ``model`` on every set: one forward pass over the union of the sets' rows.

    Args:
        model: A trained model.
        X: Standardised features, ``(n, d)``.
        y: Targets, ``(n,)``.
        sets: Boolean masks (dict or DataFrame of bool columns); must include ``"train"``.
        batch_size: Rows per forward pass.

    Returns:
        DataFrame (rows = sets, columns ``n, loss, mae, rmse, r2``); ``loss`` is smooth-L1.
    """
    masks = as_mask_dict(sets, len(X))
    union = np.logical_or.reduce(list(masks.values()))
    pred = np.full(len(X), np.nan, np.float32)
    pred[union] = predict(model, X[union], batch_size=batch_size)
    return metrics_table(np.asarray(y), pred, masks)


def record_metrics(models: Mapping[str, nn.Module], X: np.ndarray, y: np.ndarray,
                   masks: Mapping[str, np.ndarray], unit_scale: float = 1.0
                   ) -> dict[str, dict[str, dict[str, float]]]:
    """Per-model, per-set metrics as a record stores them.

    Args:
        models: Model name (``raw``, ``ema``, ...) -> model.
        X: Features of every row.
        y: Targets of every row, in the model's units.
        masks: Set name -> boolean row mask.
        unit_scale: The target's scale: MAE and RMSE are multiplied by it so they read in the
            target's units; ``loss`` stays in the units the model was trained in.

    Returns:
        ``{model: {set: {metric: value}}}``.
    """
    in_units = {"mae", "rmse"}
    out = {}
    for key, model in models.items():
        table = evaluate_sets(model, X, y, masks)
        out[key] = {name: {k: float(v) * (unit_scale if k in in_units else 1.0)
                           for k, v in row.items()} for name, row in table.iterrows()}
    return out


def record_predictions(model: nn.Module, ids: np.ndarray, X: np.ndarray, y: np.ndarray,
                       masks: Mapping[str, np.ndarray], names: list[str],
                       center: float = 0.0, scale: float = 1.0) -> dict[str, dict[str, list]]:
    """A model's predictions on some sets, in the target's units, as a record stores them.

    Args:
        model: The model.
        ids: Row ids.
        X: Features of every row.
        y: Targets of every row, in the model's units.
        masks: Set name -> boolean row mask.
        names: The sets to predict (absent or empty sets are left out).
        center: The target's centre (model units -> target units).
        scale: The target's scale.

    Returns:
        ``{set: {"id": [...], "y": [...], "pred": [...]}}``, values rounded to 5 decimals.
    """
    out = {}
    for name in names:
        if name not in masks or not masks[name].any():
            continue
        rows = np.flatnonzero(masks[name])
        out[name] = {
            "id": np.asarray(ids)[rows].tolist(),
            "y": _in_units(y[rows], center, scale).round(5).tolist(),
            "pred": _in_units(np.asarray(predict(model, X[rows])), center, scale).round(5).tolist(),
        }
    return out


def _in_units(values: np.ndarray, center: float, scale: float) -> np.ndarray:
    # The identity scale returns the float32 values untouched, so delta_e records stay as
    # they were before targets became a parameter.
    if center == 0.0 and scale == 1.0:
        return np.asarray(values)
    return np.asarray(values, dtype=np.float64) * scale + center
