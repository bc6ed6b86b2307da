"""scikit-learn estimators wrapping plain IR-net training and CAL, for a user's own table.

Both estimators hold only hyperparameters in ``__init__`` (so ``sklearn.base.clone``,
``Pipeline`` and ``cross_val_score`` work) and own everything a prediction needs:

* the features are standardised inside (``scale_X``: a :class:`~calkit.features.FeatureScaler`
  fitted on the ``fit`` rows, with its near-constant-feature clip), and so is the target
  (``scale_y``), so a table in meV trains like the same table in eV;
* early stopping on a random internal validation split of the ``fit`` rows (``val_fraction``,
  as five splits), never on anything the caller holds out;
* a row with a missing or infinite feature (a formula that could not be featurised) is an
  error that names the rows, or, with ``on_invalid="nan"``, a NaN prediction (a warning
  counts them; ``fit`` leaves them out and counts them in ``n_invalid_fit_``);
* ``n_models`` networks from consecutive seeds form a deep ensemble, and
  ``predict(X, return_std=True)`` gives their spread as an uncertainty;
* :meth:`save` writes model, scalers and settings to one file and :func:`load` reads it back
  without running code from it (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from calkit.columns import RANDOM_SPLITS
from calkit.config import CALConfig, SALConfig, Schedule, TrainConfig
from calkit.engine import train
from calkit.features import FeatureScaler
from calkit.methods.cal import fit_cal
from calkit.metrics import predict
from calkit.models import IRNet, build_model
from calkit.profiles import check_profile

SAVE_FORMAT = 1
"""Version of the file :meth:`save` writes."""

OnInvalid = Literal["raise", "nan"]


def _internal_sets(n: int, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(len(RANDOM_SPLITS), round(val_fraction * n))
    if n - n_val < 2:
        raise ValueError(f"too few samples: got {n} sample(s), but an internal validation "
                         f"split of {val_fraction} needs at least {n_val + 2}.")
    sets = {"train": np.zeros(n, bool)}
    sets["train"][order[n_val:]] = True
    for name, chunk in zip(RANDOM_SPLITS, np.array_split(order[:n_val], len(RANDOM_SPLITS)),
                           strict=True):
        sets[name] = np.zeros(n, bool)
        sets[name][chunk] = True
    return sets


def invalid_rows(X: np.ndarray) -> np.ndarray:
    """Rows with a missing or infinite feature (a composition that could not be featurised)."""
    return ~np.isfinite(X).all(axis=1)


def _invalid_message(bad: np.ndarray, during: str) -> str:
    rows = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in rows[:8]) + (", ..." if len(rows) > 8 else "")
    return (f"{len(rows)} row(s) of X have missing or infinite features in {during} (rows "
            f"{shown}), usually formulas that could not be featurised: fix or drop them, or "
            f"pass on_invalid='nan' to give them NaN predictions (and leave them out of fit).")


class _IRNetBase(RegressorMixin, BaseEstimator):
    """What both estimators share: scaling, invalid rows, ensembles, prediction, saving."""

    def _build(self, n_features: int, seed: int) -> IRNet:
        import torch

        torch.manual_seed(seed)
        if self.widths is not None:
            return IRNet(n_features, self.widths, norm=self.norm or "layer",
                         dropout=0.5 if self.dropout is None else self.dropout)
        return build_model(self.preset, n_features, dropout=self.dropout, norm=self.norm)

    def _check_choices(self) -> None:
        if self.on_invalid not in ("raise", "nan"):
            raise ValueError(f"on_invalid must be 'raise' or 'nan', got {self.on_invalid!r}.")
        if int(self.n_models) < 1:
            raise ValueError(f"n_models must be >= 1, got {self.n_models}.")

    def _prepare_fit(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """Validate, drop (or refuse) invalid rows, fit the scalers; return scaled X and y."""
        self._check_choices()
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True,
                             ensure_all_finite=False)
        if not np.isfinite(y).all():
            raise ValueError("y has missing or infinite values: drop those rows before fit.")
        bad = invalid_rows(X)
        if bad.any() and self.on_invalid == "raise":
            raise ValueError(_invalid_message(bad, "fit"))
        self.n_invalid_fit_ = int(bad.sum())
        X, y = X[~bad], np.asarray(y, np.float64)[~bad]
        self.x_scaler_ = FeatureScaler(clip=self.clip).fit(X) if self.scale_X else None
        self.y_mean_ = float(y.mean()) if self.scale_y else 0.0
        scale = float(y.std()) if self.scale_y else 1.0
        self.y_scale_ = scale if np.isfinite(scale) and scale > 0 else 1.0
        return self._scale_X(X), ((y - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _scale_X(self, X: np.ndarray) -> np.ndarray:
        scaler = getattr(self, "x_scaler_", None)
        return X.astype(np.float32) if scaler is None else scaler.transform(X)

    def _fit_member(self, X: np.ndarray, y: np.ndarray, index: int, **fit_kw: Any):
        raise NotImplementedError

    def _fit_members(self, X: np.ndarray, y: np.ndarray, **fit_kw: Any) -> None:
        results = [self._fit_member(X, y, i, **fit_kw) for i in range(int(self.n_models))]
        self.results_ = results
        self.result_ = results[0]
        self.models_ = [(r.ema_model if self.use_ema else r.model).cpu() for r in results]
        self.model_ = self.models_[0]

    def predict(self, X, return_std: bool = False):
        """Predict in the units of ``y``: the ensemble mean, and its spread with ``return_std``.

        Args:
            X: Raw features, as in ``fit``.
            return_std: Also return the standard deviation over the ``n_models`` members
                (a deep ensemble's uncertainty; needs ``n_models >= 2``).

        Returns:
            ``mean`` or ``(mean, std)``; rows with missing or infinite features are NaN with
            ``on_invalid="nan"`` (a warning gives their count) and an error otherwise.
        """
        check_is_fitted(self, "models_")
        X = validate_data(self, X, reset=False, dtype=np.float32, ensure_all_finite=False)
        if return_std and len(self.models_) < 2:
            raise ValueError("return_std needs an ensemble: fit with n_models >= 2.")
        bad = invalid_rows(X)
        if bad.any() and self.on_invalid == "raise":
            raise ValueError(_invalid_message(bad, "predict"))
        if bad.any():
            warnings.warn(f"{int(bad.sum())} of {len(X)} rows have missing or infinite features "
                          f"(formulas that could not be featurised?): their predictions are NaN.",
                          UserWarning, stacklevel=2)
        device = "cpu" if self.device == "auto" else self.device
        Xs = self._scale_X(np.where(bad[:, None], 0.0, X))
        members = np.stack([predict(m, Xs, device=device) for m in self.models_]).astype(
            np.float64) * self.y_scale_ + self.y_mean_
        mean = members.mean(axis=0)
        mean[bad] = np.nan
        if not return_std:
            return mean
        std = members.std(axis=0, ddof=1)
        std[bad] = np.nan
        return mean, std

    # ------------------------------------------------------------------ saving
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator (networks, scalers, settings) to ``path``; returns it."""
        import torch

        check_is_fitted(self, "models_")
        scaler = self.x_scaler_
        payload = {
            "format": SAVE_FORMAT, "estimator": type(self).__name__,
            "params": json.dumps(_jsonable(self.get_params())),
            "n_features_in": int(self.n_features_in_),
            "feature_names": [str(n) for n in getattr(self, "feature_names_in_", [])],
            "y_mean": self.y_mean_, "y_scale": self.y_scale_,
            "x_mean": None if scaler is None else torch.as_tensor(scaler.mean_),
            "x_scale": None if scaler is None else torch.as_tensor(scaler.scale_),
            "models": [m.state_dict() for m in self.models_],
        }
        path = Path(path)
        torch.save(payload, path)
        return path


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """``get_params()`` as JSON: a ``CALConfig`` becomes its nested dict."""
    out = dict(params)
    if isinstance(out.get("config"), CALConfig):
        out["config"] = dataclasses.asdict(out["config"])
    if out.get("widths") is not None:
        out["widths"] = list(out["widths"])
    return out


def _from_json(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    config = out.get("config")
    if isinstance(config, dict):
        train_fields = dict(config["train"])
        if train_fields.get("history_sets") is not None:
            train_fields["history_sets"] = tuple(train_fields["history_sets"])
        out["config"] = CALConfig(TrainConfig(**train_fields), SALConfig(**config["sal"]))
    if out.get("widths") is not None:
        out["widths"] = tuple(out["widths"])
    return out


def load(path: str | Path) -> _IRNetBase:
    """Read an estimator written by :meth:`_IRNetBase.save` (no code runs from the file).

    Raises:
        ValueError: If the file is not a calkit model file, or of a newer format.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}: train one with `calkit train` or "
                                f"an estimator's save().")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, or not a torch file at all
        raise ValueError(f"{path} is not a calkit model file ({exc}).") from exc
    if not isinstance(payload, dict) or payload.get("estimator") not in ESTIMATORS_BY_CLASS:
        raise ValueError(f"{path} is not a calkit model file.")
    if payload["format"] > SAVE_FORMAT:
        raise ValueError(f"{path} was written by a newer calkit (format {payload['format']}); "
                         f"upgrade calkit-ood to read it.")
    est = ESTIMATORS_BY_CLASS[payload["estimator"]](**_from_json(json.loads(payload["params"])))
    n = payload["n_features_in"]
    est.n_features_in_ = n
    if payload["feature_names"]:
        est.feature_names_in_ = np.asarray(payload["feature_names"], dtype=object)
    est.y_mean_, est.y_scale_ = payload["y_mean"], payload["y_scale"]
    est.x_scaler_ = None
    if payload["x_mean"] is not None:
        scaler = FeatureScaler(clip=est.clip)
        scaler.mean_ = payload["x_mean"].numpy()
        scaler.scale_ = payload["x_scale"].numpy()
        est.x_scaler_ = scaler
    est.models_ = []
    for i, state in enumerate(payload["models"]):
        model = est._build(n, est.seed + i)
        model.load_state_dict(state)
        est.models_.append(model.eval())
    est.model_ = est.models_[0]
    return est


class IRNetRegressor(_IRNetBase):
    """Plain IR-net regression (``calkit.engine.train``) as a scikit-learn estimator.

    Args:
        preset: Model preset (``paper``, ``irnet3``, ``irnet17``, ``cpu``).
        widths: Custom block widths (overrides ``preset``).
        norm: ``"layer"``/``"batch"``/``"none"``; ``None`` keeps the preset's.
        dropout: Dropout; ``None`` keeps the preset's.
        lr: Adam learning rate.
        epochs: Maximum epochs.
        batch_size: Mini-batch size.
        patience: Early-stopping patience on the internal validation rows.
        schedule: LR schedule (``cosine``, ``plateau``, ``none``).
        val_fraction: Fraction of ``fit`` rows held out for early stopping.
        use_ema: Predict with the EMA of the weights instead of the best raw state. Off by
            default: on small data sets the EMA lags far behind the model.
        seed: Seed of the split, initialisation and shuffling (member ``i`` of an ensemble
            uses ``seed + i``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: Show a progress bar with the epoch and the validation loss.
        scale_X: Standardise the features inside (clip ``±clip``).
        clip: Bound on standardised features (the near-constant-feature guard).
        scale_y: Standardise the target inside; predictions are in the units of ``y``.
        n_models: Networks in the deep ensemble (``predict(..., return_std=True)``).
        on_invalid: ``"raise"`` (default) or ``"nan"`` for rows with missing features.
    """

    def __init__(self, preset: str = "cpu", widths: tuple[int, ...] | None = None,
                 norm: str | None = None, dropout: float | None = None, lr: float = 1e-3,
                 epochs: int = 100, batch_size: int = 256, patience: int = 20,
                 schedule: Schedule = "cosine", val_fraction: float = 0.15, use_ema: bool = False,
                 seed: int = 0, device: str = "auto", progress: bool = False,
                 scale_X: bool = True, clip: float | None = 10.0, scale_y: bool = True,
                 n_models: int = 1, on_invalid: OnInvalid = "raise") -> None:
        self.preset = preset
        self.widths = widths
        self.norm = norm
        self.dropout = dropout
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.schedule = schedule
        self.val_fraction = val_fraction
        self.use_ema = use_ema
        self.seed = seed
        self.device = device
        self.progress = progress
        self.scale_X = scale_X
        self.clip = clip
        self.scale_y = scale_y
        self.n_models = n_models
        self.on_invalid = on_invalid

    def _fit_member(self, X: np.ndarray, y: np.ndarray, index: int, **fit_kw: Any):
        seed = self.seed + index
        sets = _internal_sets(len(X), self.val_fraction, self.seed)
        cfg = TrainConfig(lr=self.lr, epochs=self.epochs, batch_size=self.batch_size,
                          patience=self.patience, schedule=self.schedule, seed=seed,
                          device=self.device, progress=self.progress,
                          ema_start_epoch=min(20, max(self.epochs // 4, 1)))
        return train(self._build(X.shape[1], seed), X, y, sets, cfg)

    def fit(self, X, y) -> IRNetRegressor:
        """Train on ``X, y`` with early stopping on an internal random validation split."""
        Xs, ys = self._prepare_fit(X, y)
        self._fit_members(Xs, ys)
        return self


class CALRegressor(_IRNetBase):
    """CAL (or targeted CAL) as a scikit-learn estimator.

    Args:
        preset: Model preset.
        profile: Profile whose recipe and SAL settings are used (``cpu``, ``authors``, ...).
        config: A full :class:`~calkit.config.CALConfig`; overrides ``profile``.
        epochs: If set, overrides the config's maximum epochs.
        widths, norm, dropout, val_fraction, use_ema, seed, device, progress, scale_X, clip,
            scale_y, n_models, on_invalid: As :class:`IRNetRegressor`.

    ``fit(X, y, X_target=..., y_target=...)`` runs targeted CAL with every target row as
    the adversarial source (the target rows are not used as training rows); they are scaled
    with the scalers fitted on ``X, y``.
    """

    def __init__(self, preset: str = "cpu", profile: str = "cpu",
                 config: CALConfig | None = None, epochs: int | None = None,
                 widths: tuple[int, ...] | None = None, norm: str | None = None,
                 dropout: float | None = None, val_fraction: float = 0.15,
                 use_ema: bool = False, seed: int = 0, device: str = "auto",
                 progress: bool = False, scale_X: bool = True, clip: float | None = 10.0,
                 scale_y: bool = True, n_models: int = 1,
                 on_invalid: OnInvalid = "raise") -> None:
        self.preset = preset
        self.profile = profile
        self.config = config
        self.epochs = epochs
        self.widths = widths
        self.norm = norm
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.use_ema = use_ema
        self.seed = seed
        self.device = device
        self.progress = progress
        self.scale_X = scale_X
        self.clip = clip
        self.scale_y = scale_y
        self.n_models = n_models
        self.on_invalid = on_invalid

    def _config(self, seed: int) -> CALConfig:
        if self.config is not None:
            cfg = self.config
        else:
            prof = check_profile(self.profile)
            cfg = CALConfig(prof.recipe, prof.sal)
        train_cfg = replace(cfg.train, seed=seed, device=self.device, progress=self.progress)
        if self.epochs is not None:
            train_cfg = replace(train_cfg, epochs=self.epochs)
        return CALConfig(train_cfg, cfg.sal)

    def _fit_member(self, X: np.ndarray, y: np.ndarray, index: int, **fit_kw: Any):
        seed = self.seed + index
        sets = _internal_sets(len(X), self.val_fraction, self.seed)
        Xt, yt = fit_kw.get("target", (None, None))
        target = None
        if Xt is not None:
            n = len(X)
            X, y = np.vstack([X, Xt]), np.concatenate([y, yt])
            sets = {k: np.concatenate([m, np.zeros(len(Xt), bool)]) for k, m in sets.items()}
            sets["target"] = np.concatenate([np.zeros(n, bool), np.ones(len(Xt), bool)])
            target = "target"
        return fit_cal(self._build(X.shape[1], seed), X, y, sets, self._config(seed),
                       target_set=target, n_target=0 if target is None else len(Xt))

    def fit(self, X, y, X_target=None, y_target=None) -> CALRegressor:
        """Train with CAL; pass ``X_target, y_target`` for targeted CAL."""
        if (X_target is None) != (y_target is None):
            raise ValueError("pass both X_target and y_target for targeted CAL, or neither.")
        Xs, ys = self._prepare_fit(X, y)
        target: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        if X_target is not None:
            Xt = check_array(X_target, dtype=np.float32, ensure_all_finite=True)
            yt = np.asarray(y_target, np.float64).reshape(-1)
            if len(Xt) != len(yt) or len(Xt) < 2 or Xt.shape[1] != self.n_features_in_:
                raise ValueError("X_target and y_target need the same length (at least 2) and "
                                 "X_target the same columns as X.")
            target = (self._scale_X(Xt), ((yt - self.y_mean_) / self.y_scale_).astype(np.float32))
        self._fit_members(Xs, ys, target=target)
        return self


ESTIMATORS: dict[str, type[_IRNetBase]] = {"baseline": IRNetRegressor, "cal": CALRegressor}
"""The registry methods an estimator trains (``calkit train --method``)."""

ESTIMATORS_BY_CLASS = {cls.__name__: cls for cls in ESTIMATORS.values()}


def cal_pipeline(clip: float = 10.0, **cal_params):
    """CAL on raw features: ``FeatureScaler(clip) -> CALRegressor(**cal_params)``.

    Kept for the book's three-line example; :class:`CALRegressor` now scales its inputs
    itself, so ``CALRegressor(**cal_params)`` alone does the same.

    Example:
        >>> model = cal_pipeline(epochs=60).fit(featurize(formulas).to_numpy(), y)  # doctest: +SKIP
    """
    from sklearn.pipeline import make_pipeline

    return make_pipeline(FeatureScaler(clip=clip), CALRegressor(clip=clip, **cal_params))
