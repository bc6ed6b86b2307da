"""Plain (supervised) training of IR-nets, and the training engine CAL builds on.

The engine (:class:`TrainingEngine`) owns everything a CAL run shares with plain
training: tensors on the device, the supervised mini-batch step, the per-epoch
evaluation of every set, the EMA of the weights, best-state selection by the mean
random-split loss, early stopping, the NaN/inf guard and the history frame.
:func:`train` is the plain baseline; :func:`calkit.cal.fit_cal` drives the same
engine with adversarial epochs.

Default learning rate and schedule (``TrainConfig``): Adam at 1e-3 with a cosine
decay to 1 % over ``epochs``. Why: the paper's constant 1e-4 leaves the paper-size net
far from converged after 40 epochs on the 22 k training rows (the random-split loss is
still falling steeply; toolchain trial), so a 1e-4 baseline would be a straw man; a
constant 1e-3 converges faster but ends noisy (and made CAL's adversarial phase diverge
in half of the trials), and the cosine decay removes that late noise while keeping the
fast start. This default was chosen on reasoning and synthetic runs, not yet by a sweep
on the real data: compare ``schedule`` / ``lr`` candidates on the mean random-split loss
(``result.best_val_loss``) only, never on an OOD set. ``schedule="plateau"`` (multiply
by 0.5 after a 5-epoch plateau of the random-split loss) and ``"none"`` are available.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from calkit.metrics import evaluate_sets
from calkit.models import set_dropout
from calkit.utils import SetMasks, as_mask_dict, seed_everything, select_device, validation_names

LOSSES = ("smooth_l1", "mae")
SCHEDULES = ("cosine", "plateau", "none")


@dataclass
class TrainConfig:
    """Hyperparameters of plain training (and the shared part of CAL's).

    Attributes:
        lr: Adam learning rate of the supervised step (module docstring: why 1e-3).
        batch_size: Mini-batch size.
        epochs: Maximum number of epochs.
        loss: ``"smooth_l1"`` (Huber, beta 1; the paper's) or ``"mae"``.
        weight_decay: Adam (L2) weight decay.
        schedule: ``"cosine"`` (to ``lr * min_lr_factor`` over ``epochs``), ``"plateau"``
            (multiply by ``plateau_factor`` after ``plateau_patience`` epochs without a new
            best random-split loss) or ``"none"``.
        min_lr_factor: Final LR of the cosine schedule, relative to ``lr``.
        plateau_factor: LR factor of the plateau schedule.
        plateau_patience: Epochs without improvement before the plateau schedule cuts.
        patience: Early stopping: epochs without a new best mean random-split loss.
        ema_decay: Decay of the exponential moving average of the weights (per step).
        ema_start_epoch: First epoch the EMA is updated; before it the EMA equals the model.
        dropout: If set, overrides the model's dropout probability.
        research_eval_mode_quirk: Reproduce the research code's bug of training in eval
            mode after epoch 0 (dropout off, BatchNorm frozen). Off by default.
        seed: Seeds weights-independent randomness (shuffling, dropout, CAL's draws).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:i]"``.
        progress: Show a tqdm progress bar over epochs.
        eval_batch_size: Rows per forward pass when evaluating.
        history_sets: Sets evaluated every epoch; ``None`` = every set given.
        selection: ``"val"`` keeps the state with the lowest mean random-split loss (the
            paper's rule); ``"last"`` keeps the final state (the research logs also report
            "last"). Early stopping uses the random-split loss either way.
    """

    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 100
    loss: str = "smooth_l1"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    min_lr_factor: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    patience: int = 20
    ema_decay: float = 0.999
    ema_start_epoch: int = 20
    dropout: float | None = None
    research_eval_mode_quirk: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    eval_batch_size: int = 8192
    history_sets: tuple[str, ...] | None = None
    selection: str = "val"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field and its valid values."""
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}.")
        if self.selection not in ("val", "last"):
            raise ValueError(f"unknown selection {self.selection!r}; valid: val, last.")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")


@dataclass
class TrainResult:
    """Outcome of :func:`train` (and the base of :class:`calkit.cal.CALResult`).

    Attributes:
        model: The best-state model (lowest mean random-split loss), in eval mode.
        ema_model: The EMA of the weights as it was at the selected epoch.
        history: One row per epoch: ``<set>/loss`` (smooth-L1), ``<set>/mae`` for every
            evaluated set, ``val_loss`` (mean over Rsplt sets), ``train_batch_loss``,
            ``lr``, ``seconds`` and, for CAL, the adversarial diagnostics.
        best_epoch: Epoch whose state ``model`` holds.
        best_val_loss: Mean random-split loss of the selected epoch.
        epochs_run: Number of epochs run.
        stopped_early: Whether early stopping ended the run.
        diverged: Whether a NaN/inf loss, gradient or weight stopped the run.
        diverged_epoch: The epoch where that happened, else ``None``.
        config: The configuration used (as a dict).
        sets: The set masks used for evaluation.
    """

    model: nn.Module
    ema_model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    diverged: bool
    diverged_epoch: int | None
    config: dict[str, Any]
    sets: dict[str, np.ndarray] = field(repr=False)

    def evaluate(self, X: np.ndarray, y: np.ndarray, sets: SetMasks | None = None,
                 use_ema: bool = True) -> pd.DataFrame:
        """Per-set metrics table of the EMA (default, as the paper reports) or raw best model."""
        return evaluate_sets(self.ema_model if use_ema else self.model, X, y,
                             self.sets if sets is None else sets)


class Diverged(RuntimeError):
    """Raised inside an epoch when a loss, gradient or weight is not finite."""


def loss_functions(name: str):
    """Return ``(mean_loss, per_sample_loss)`` callables for a loss name."""
    if name == "smooth_l1":
        return (lambda p, t: F.smooth_l1_loss(p, t, beta=1.0),
                lambda p, t: F.smooth_l1_loss(p, t, beta=1.0, reduction="none"))
    if name == "mae":
        return (lambda p, t: F.l1_loss(p, t), lambda p, t: F.l1_loss(p, t, reduction="none"))
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}.")


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied).

    Before :meth:`start` is called the average is inactive and :meth:`state_dict` returns
    the live model's state, so a snapshot always reflects "the EMA if any, else the model".
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.active = False
        self._src = model

    def start(self) -> None:
        """Copy the live weights and begin averaging."""
        self.model.load_state_dict(self._src.state_dict())
        self.active = True

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step (a fused ``lerp`` over all tensors; no Python loop per element)."""
        if not self.active:
            return
        torch._foreach_lerp_(list(self.model.parameters()), list(self._src.parameters()),
                             1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), self._src.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State of the average (or of the live model while inactive)."""
        return (self.model if self.active else self._src).state_dict()


def clone_state(model_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copy of a state dict."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k: v.detach().clone() for k, v in state.items()}


def _finite_state(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


class TrainingEngine:
    """Shared machinery of plain training and CAL (one instance per run).

    Args:
        model: The network to train (moved to the device, trained in place).
        X: Standardised features ``(n, d)``, float32.
        y: Targets ``(n,)``.
        sets: Boolean masks including ``"train"`` and ``Rsplt1..5``.
        config: A :class:`TrainConfig` (or subclass such as ``CALConfig``).
    """

    def __init__(self, model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
                 config: TrainConfig) -> None:
        config.validate()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, d) and y (n,); got {X.shape} and {y.shape}.")
        if not np.isfinite(X).all() or not np.isfinite(y).all():
            raise ValueError("X and y must be finite; impute or drop NaN/inf rows first.")
        self.config = config
        self.masks = as_mask_dict(sets, len(X))
        self.val_names = validation_names(self.masks)
        self.device = select_device(config.device)
        self.gen = seed_everything(config.seed)
        self.model = model.to(self.device)
        if config.dropout is not None:
            set_dropout(self.model, config.dropout)
        self.has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                 for m in self.model.modules())
        self.loss_fn, self.loss_none = loss_functions(config.loss)
        # Everything lives on the device once; batches are slices of one gathered copy.
        self.X = torch.as_tensor(X, device=self.device)
        self.y = torch.as_tensor(y, device=self.device)
        self.train_idx = self._idx(self.masks["train"])
        names = list(self.masks) if config.history_sets is None else list(config.history_sets)
        for v in self.val_names:
            if v not in names:
                names.append(v)
        self.eval_names = names
        union = np.logical_or.reduce([self.masks[s] for s in names])
        self.eval_rows = self._idx(union)
        pos = np.full(len(X), -1, np.int64)
        pos[union] = np.arange(int(union.sum()))
        # Position of each set's rows inside the union's prediction vector.
        self.eval_pos = {s: torch.as_tensor(pos[self.masks[s]], device=self.device) for s in names}
        self.optimizer = self.make_adam(config.lr, config.weight_decay)
        self.scheduler = self._make_scheduler()
        self.ema = EMA(self.model, config.ema_decay)
        self.best_val = math.inf
        self.selected_val = math.inf
        self.best_epoch = -1
        self.best_state = clone_state(self.model)
        self.best_ema_state = clone_state(self.model)
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []
        self.diverged = False
        self.diverged_epoch: int | None = None
        self.stopped_early = False
        self.epochs_run = 0
        self._bar = None

    # ----------------------------------------------------------------- setup helpers
    def _idx(self, mask: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.flatnonzero(mask), device=self.device)

    def make_adam(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
        """Adam over the model's parameters; fused kernels where the device supports them."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError):  # pragma: no cover - device without fused Adam
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)

    def _make_scheduler(self):
        c = self.config
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(c.epochs, 1), eta_min=c.lr * c.min_lr_factor)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=c.plateau_factor, patience=c.plateau_patience)
        return None

    # ----------------------------------------------------------------- training pieces
    def set_train_mode(self, epoch: int) -> None:
        """Train mode, unless the research-code quirk is on and ``epoch > 0``."""
        self.model.train(not (self.config.research_eval_mode_quirk and epoch > 0))

    def batches(self, idx: torch.Tensor, shuffle: bool = True
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` mini-batches of the rows ``idx`` in a seeded random order.

        The rows are gathered once per epoch; batches are views. A trailing batch of
        one row is dropped (BatchNorm cannot normalise it and its gradient is noise).
        """
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=self.gen).to(idx.device)]
        xs, ys = self.X[idx], self.y[idx]
        bs = self.config.batch_size
        for i in range(0, len(idx), bs):
            if len(idx) - i < 2 and i > 0:
                break
            yield xs[i:i + bs], ys[i:i + bs]

    def supervised_step(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """One Adam step on ``loss(f(xb), yb)``; raises :class:`Diverged` before stepping on NaN."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(xb), yb)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Diverged(f"non-finite supervised loss {value}")
        loss.backward()
        self.optimizer.step()
        return value

    def plain_epoch(self, epoch: int, idx: torch.Tensor | None = None) -> float:
        """A supervised epoch over ``idx`` (default: all training rows); returns mean loss."""
        self.set_train_mode(epoch)
        if epoch == self.config.ema_start_epoch and not self.ema.active:
            self.ema.start()
        total, count = 0.0, 0
        for xb, yb in self.batches(self.train_idx if idx is None else idx):
            total += self.supervised_step(xb, yb) * len(yb)
            count += len(yb)
            self.ema.update()
        return total / max(count, 1)

    @torch.inference_mode()
    def predict_rows(self, idx: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
        """Eval-mode predictions for rows ``idx`` in large batches."""
        model = self.model if model is None else model
        was = model.training
        model.eval()
        bs = self.config.eval_batch_size
        out = torch.cat([model(self.X[idx[i:i + bs]]).reshape(-1)
                         for i in range(0, len(idx), bs)]) if len(idx) else self.y[:0]
        model.train(was)
        return out

    @torch.inference_mode()
    def per_sample_loss(self, idx: torch.Tensor) -> torch.Tensor:
        """Eval-mode loss of every row in ``idx`` (used by partial sampling)."""
        return self.loss_none(self.predict_rows(idx), self.y[idx])

    @torch.inference_mode()
    def evaluate_epoch(self) -> dict[str, float]:
        """Loss and MAE of every history set from one forward pass over their union."""
        pred = self.predict_rows(self.eval_rows)
        target = self.y[self.eval_rows]
        row: dict[str, float] = {}
        err = pred - target
        huber = self.loss_none(pred, target) if self.config.loss == "smooth_l1" else \
            F.smooth_l1_loss(pred, target, beta=1.0, reduction="none")
        for s in self.eval_names:
            p = self.eval_pos[s]
            row[f"{s}/loss"] = float(huber[p].mean()) if len(p) else math.nan
            row[f"{s}/mae"] = float(err[p].abs().mean()) if len(p) else math.nan
        # Selection uses the training loss function (smooth-L1 or MAE) on the Rsplt sets.
        key = "loss" if self.config.loss == "smooth_l1" else "mae"
        row["val_loss"] = float(np.mean([row[f"{s}/{key}"] for s in self.val_names]))
        return row

    # ----------------------------------------------------------------- bookkeeping
    def end_epoch(self, epoch: int, train_loss: float, started: float,
                  extra: dict[str, float] | None = None) -> bool:
        """Evaluate, log, update the best state, step the schedule; return True to stop."""
        row = {"epoch": epoch, "train_batch_loss": train_loss,
               "lr": self.optimizer.param_groups[0]["lr"], **self.evaluate_epoch(), **(extra or {})}
        row["seconds"] = time.perf_counter() - started
        self.history.append(row)
        self.epochs_run = epoch + 1
        val = row["val_loss"]
        if not math.isfinite(val):
            raise Diverged(f"non-finite validation loss {val}")
        improved = val < self.best_val
        if improved or self.config.selection == "last":
            self.best_epoch, self.selected_val = epoch, val
            self.best_state = clone_state(self.model)
            self.best_ema_state = clone_state(self.ema.state_dict())
        if improved:
            self.best_val, self.bad_epochs = val, 0
        else:
            self.bad_epochs += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val)
        elif self.scheduler is not None:
            self.scheduler.step()
        if self._bar is not None:
            self._bar.set_postfix(val=f"{val:.4f}", best=f"{self.best_val:.4f}@{self.best_epoch}")
            self._bar.update(1)
        if self.bad_epochs >= self.config.patience:
            self.stopped_early = True
            return True
        return False

    def mark_diverged(self, epoch: int, good_state: dict[str, torch.Tensor] | None) -> None:
        """Record a divergence and put a finite state back into the live model."""
        self.diverged, self.diverged_epoch = True, epoch
        state = good_state if good_state is not None and _finite_state(good_state) \
            else self.best_state
        self.model.load_state_dict(state)

    def progress(self, desc: str):
        """Context manager for the epoch progress bar (no-op when disabled)."""
        self._bar = tqdm(total=self.config.epochs, desc=desc, disable=not self.config.progress,
                         leave=False)
        return self._bar

    def history_frame(self) -> pd.DataFrame:
        """The per-epoch history as a DataFrame indexed by epoch."""
        return pd.DataFrame(self.history).set_index("epoch") if self.history else \
            pd.DataFrame(index=pd.Index([], name="epoch"))

    def result_kwargs(self) -> dict[str, Any]:
        """Fields shared by :class:`TrainResult` and its subclasses."""
        best = copy.deepcopy(self.model)
        best.load_state_dict(self.best_state)
        best.eval()
        ema = copy.deepcopy(self.model)
        ema.load_state_dict(self.best_ema_state)
        ema.eval()
        for p in ema.parameters():
            p.requires_grad_(False)
        return dict(model=best, ema_model=ema, history=self.history_frame(),
                    best_epoch=self.best_epoch, best_val_loss=self.selected_val,
                    epochs_run=self.epochs_run, stopped_early=self.stopped_early,
                    diverged=self.diverged, diverged_epoch=self.diverged_epoch,
                    config=asdict(self.config), sets=self.masks)


def train(model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
          config: TrainConfig | None = None) -> TrainResult:
    """Train ``model`` on the ``"train"`` rows with early stopping on the Rsplt sets.

    Every set in ``sets`` is evaluated after every epoch (``history``); the state with
    the lowest mean random-split loss is kept, together with the EMA at that epoch.
    A non-finite loss stops the run (``result.diverged``) and the best finite state is
    returned; no optimiser step is ever taken on a NaN loss.

    Args:
        model: An untrained (or pre-trained) network, e.g. ``build_model("cpu", 145)``.
        X: Standardised features ``(n, d)``, float32.
        y: Targets ``(n,)``.
        sets: Boolean masks (dict or DataFrame) with ``"train"`` and ``Rsplt1..5``.
        config: Training hyperparameters; defaults to ``TrainConfig()``.

    Returns:
        A :class:`TrainResult`.
    """
    config = TrainConfig() if config is None else config
    eng = TrainingEngine(model, X, y, sets, config)
    with eng.progress("train"):
        for epoch in range(config.epochs):
            started = time.perf_counter()
            good = clone_state(eng.model)
            try:
                loss = eng.plain_epoch(epoch)
                if eng.end_epoch(epoch, loss, started):
                    break
            except Diverged:
                eng.mark_diverged(epoch, good)
                break
    return TrainResult(**eng.result_kwargs())
