"""scikit-learn estimators wrapping plain IR-net training and CAL.

Both estimators hold only hyperparameters in ``__init__`` (so ``sklearn.base.clone``,
``Pipeline`` and ``cross_val_score`` work), draw their own random validation rows for
early stopping (``val_fraction``, split into five ``Rsplt`` sets), and expect
standardised inputs (put a ``StandardScaler`` in front in a ``Pipeline``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from calkit.columns import RANDOM_SPLITS
from calkit.config import CALConfig, TrainConfig
from calkit.engine import train
from calkit.methods.cal import fit_cal
from calkit.metrics import predict
from calkit.models import IRNet, build_model
from calkit.profiles import check_profile


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


class _IRNetBase(RegressorMixin, BaseEstimator):
    def _build(self, n_features: int) -> IRNet:
        import torch

        torch.manual_seed(self.seed)
        if self.widths is not None:
            return IRNet(n_features, self.widths, norm=self.norm or "layer",
                         dropout=0.5 if self.dropout is None else self.dropout)
        return build_model(self.preset, n_features, dropout=self.dropout, norm=self.norm)

    def predict(self, X) -> np.ndarray:
        """Predict with the EMA model (``use_ema=True``) or the best raw state."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return predict(self.model_, X, device="cpu" if self.device == "auto" else self.device)


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
            default: a per-step decay of 0.999 spans ~1000 steps, i.e. many epochs on
            small data sets, where the EMA then lags far behind the model.
        seed: Seed of the split, initialisation and shuffling.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: Show a progress bar.
    """

    def __init__(self, preset: str = "cpu", widths: tuple[int, ...] | None = None,
                 norm: str | None = None, dropout: float | None = None, lr: float = 1e-3,
                 epochs: int = 100, batch_size: int = 256, patience: int = 20,
                 schedule: str = "cosine", val_fraction: float = 0.15, use_ema: bool = False,
                 seed: int = 0, device: str = "auto", progress: bool = False) -> None:
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

    def fit(self, X, y) -> IRNetRegressor:
        """Train on ``X, y`` with early stopping on an internal random validation split."""
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        sets = _internal_sets(len(X), self.val_fraction, self.seed)
        cfg = TrainConfig(lr=self.lr, epochs=self.epochs, batch_size=self.batch_size,
                          patience=self.patience, schedule=self.schedule, seed=self.seed,
                          device=self.device, progress=self.progress,
                          ema_start_epoch=min(20, max(self.epochs // 4, 1)))
        self.result_ = train(self._build(X.shape[1]), X, y.astype(np.float32), sets, cfg)
        self.model_ = (self.result_.ema_model if self.use_ema else self.result_.model).cpu()
        return self


class CALRegressor(_IRNetBase):
    """CAL (or targeted CAL) as a scikit-learn estimator.

    Args:
        preset: Model preset.
        profile: Profile whose recipe and SAL settings are used (``cpu``, ``paper``).
        config: A full :class:`~calkit.config.CALConfig`; overrides ``profile``.
        epochs: If set, overrides the config's maximum epochs.
        widths, norm, dropout, val_fraction, use_ema, seed, device, progress: As
            :class:`IRNetRegressor`.

    ``fit(X, y, X_target=..., y_target=...)`` runs targeted CAL with every target row as
    the adversarial source (the target rows are not used as training rows). Inside a
    ``Pipeline`` pass them as ``pipe.fit(X, y, cal__X_target=..., cal__y_target=...)``;
    note that earlier steps do not transform them, so standardise them yourself.
    """

    def __init__(self, preset: str = "cpu", profile: str = "cpu",
                 config: CALConfig | None = None, epochs: int | None = None,
                 widths: tuple[int, ...] | None = None, norm: str | None = None,
                 dropout: float | None = None, val_fraction: float = 0.15,
                 use_ema: bool = False, seed: int = 0, device: str = "auto",
                 progress: bool = False) -> None:
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

    def _config(self) -> CALConfig:
        if self.config is not None:
            cfg = self.config
        else:
            prof = check_profile(self.profile)
            cfg = CALConfig(prof.recipe, prof.sal)
        train_cfg = replace(cfg.train, seed=self.seed, device=self.device, progress=self.progress)
        if self.epochs is not None:
            train_cfg = replace(train_cfg, epochs=self.epochs)
        return CALConfig(train_cfg, cfg.sal)

    def fit(self, X, y, X_target=None, y_target=None) -> CALRegressor:
        """Train with CAL; pass ``X_target, y_target`` for targeted CAL."""
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        y = y.astype(np.float32)
        sets = _internal_sets(len(X), self.val_fraction, self.seed)
        target = None
        if (X_target is None) != (y_target is None):
            raise ValueError("pass both X_target and y_target for targeted CAL, or neither.")
        if X_target is not None:
            Xt = validate_data(self, X_target, reset=False, dtype=np.float32)
            yt = np.asarray(y_target, np.float32).reshape(-1)
            if len(Xt) != len(yt) or len(Xt) < 2:
                raise ValueError("X_target and y_target need the same length, at least 2.")
            n = len(X)
            X, y = np.vstack([X, Xt]), np.concatenate([y, yt])
            sets = {k: np.concatenate([m, np.zeros(len(Xt), bool)]) for k, m in sets.items()}
            sets["target"] = np.concatenate([np.zeros(n, bool), np.ones(len(Xt), bool)])
            target = "target"
        self.result_ = fit_cal(self._build(X.shape[1]), X, y, sets, self._config(),
                               target_set=target,
                               n_target=0 if target is None else len(X_target))
        self.model_ = (self.result_.ema_model if self.use_ema else self.result_.model).cpu()
        return self


def cal_pipeline(clip: float = 10.0, **cal_params):
    """CAL on raw features: ``FeatureScaler(clip) -> CALRegressor(**cal_params)``.

    The scaler is fitted on the rows passed to ``fit`` and clips standardised values to
    ``±clip`` (the near-constant-feature guard of the book's runs).

    Example:
        >>> model = cal_pipeline(epochs=60).fit(featurize(formulas).to_numpy(), y)  # doctest: +SKIP
    """
    from sklearn.pipeline import make_pipeline

    from calkit.features import FeatureScaler

    return make_pipeline(FeatureScaler(clip=clip), CALRegressor(**cal_params))
