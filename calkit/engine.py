"""The one training engine: every method's epochs run through :meth:`TrainingEngine.fit`.

The engine owns what every method shares: tensors on the device, the supervised mini-batch
step, the per-epoch evaluation of every set, the EMA of the weights, model selection by the
validation loss, early stopping, the NaN/inf guard and the history frame. A method supplies
only its epoch (``epoch_fn(engine, epoch) -> (mean loss, diagnostics)``), as in Dive into Deep
Learning's ``Trainer.fit`` / ``fit_epoch``: plain training (:func:`train`), the CAL schedule
(:mod:`calkit.methods.cal`) and fine-tuning (:mod:`calkit.methods.finetune`).
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from calkit.config import LOSSES, TrainConfig
from calkit.files import atomic_write
from calkit.metrics import evaluate_sets
from calkit.models import set_dropout
from calkit.utils import SetMasks, as_mask_dict, seed_everything, select_device, validation_names

EpochFn = Callable[["TrainingEngine", int], tuple[float, dict[str, float]]]
"""A method's epoch: ``(engine, epoch) -> (mean training loss, diagnostics for the history)``."""


@dataclass
class TrainResult:
    """Outcome of :meth:`TrainingEngine.fit` (and the base of method-specific results).

    Attributes:
        model: The raw model at the selected epoch, in eval mode.
        ema_model: The EMA of the weights at its selected epoch (``ema_selection``).
        history: One row per epoch: ``<set>/loss`` (smooth-L1), ``<set>/mae`` for every
            evaluated set, ``val_loss`` (mean over the validation sets), ``train_batch_loss``,
            ``lr``, ``seconds`` and the method's diagnostics.
        selected_epoch: Epoch whose state ``model`` holds (by the config's ``selection``).
        selected_val_loss: Validation loss of the selected epoch.
        epochs_run: Number of epochs run.
        stopped_early: Whether early stopping ended the run.
        diverged: Whether a NaN/inf loss, gradient or weight stopped the run.
        diverged_epoch: The epoch where that happened, else ``None``.
        config: The recipe used (as a dict).
        sets: The set masks used for evaluation.
        last_model: The raw model after the last epoch run.
        last_ema_model: The EMA after the last epoch run.
        ema_selected_epoch: Epoch whose EMA state ``ema_model`` holds.
        resumed: One entry per resume from a :class:`Snapshot`: the first epoch run after it,
            the code that wrote the snapshot and the epoch seconds spent before it.
    """

    model: nn.Module
    ema_model: nn.Module
    history: pd.DataFrame
    selected_epoch: int
    selected_val_loss: float
    epochs_run: int
    stopped_early: bool
    diverged: bool
    diverged_epoch: int | None
    config: dict[str, Any]
    sets: dict[str, np.ndarray] = field(repr=False)
    last_model: nn.Module | None = field(default=None, repr=False)
    last_ema_model: nn.Module | None = field(default=None, repr=False)
    ema_selected_epoch: int = -1
    resumed: list[dict[str, Any]] = field(default_factory=list)

    def run_info(self) -> dict[str, Any]:
        """Selection and stopping facts, for the run record (with ``resumed`` if it resumed)."""
        info = {"selected_epoch": int(self.selected_epoch),
                "ema_selected_epoch": int(self.ema_selected_epoch),
                "epochs_run": int(self.epochs_run),
                "stopped_early": bool(self.stopped_early), "diverged": bool(self.diverged),
                "diverged_epoch": self.diverged_epoch}
        return {**info, "resumed": self.resumed} if self.resumed else info

    def evaluate(self, X: np.ndarray, y: np.ndarray, sets: SetMasks | None = None,
                 use_ema: bool = True) -> pd.DataFrame:
        """Per-set metrics of the EMA (default, as the paper reports) or the raw model."""
        return evaluate_sets(self.ema_model if use_ema else self.model, X, y,
                             self.sets if sets is None else sets)


class Diverged(RuntimeError):
    """Raised inside an epoch when a loss, gradient or weight is not finite."""


@dataclass(frozen=True)
class Snapshot:
    """Where a fit keeps its whole state after every epoch, so an interrupted run resumes there.

    The state is everything the next epoch reads (weights, optimiser and schedule, EMA,
    selection, history, every random generator and the method's own state), so a resumed run
    gives the same numbers as one that was never stopped.

    Attributes:
        path: The snapshot file, replaced atomically after every epoch.
        owner: What the state belongs to (the run id); a file of another owner is refused.
        code: The code writing it (the git commit), reported when another code resumes it.
    """

    path: Path
    owner: str
    code: str | None = None

    def stage(self, name: str) -> Snapshot:
        """The snapshot of one fit (``name``, e.g. ``candidate0``) of a run that fits several."""
        return Snapshot(stage_snapshot_path(self.path, name), f"{self.owner}:{name}", self.code)


def stage_snapshot_path(snapshot: Path, stage: str) -> Path:
    """Where one fit (``stage``) of a run that fits several keeps its state, beside the run's."""
    return snapshot.with_name(f"{snapshot.stem}.{stage}{snapshot.suffix}")


class SnapshotError(RuntimeError):
    """A snapshot file that cannot be resumed from (unreadable or of another run)."""


@dataclass(frozen=True)
class SnapshotProgress:
    """How far an unfinished run got, read from its snapshot.

    Attributes:
        epochs_run: Epochs finished and kept in the snapshot.
        seconds: Their summed epoch times (across every resume).
        recent_epoch_seconds: Mean time of the last few epochs of the current phase: the pace
            to expect next.
        warming_up: The last epoch was a CAL warm-up epoch, so the pace says little about the
            adversarial epochs to come, which cost many times more.
        bad_epochs: Epochs since the best validation loss (early stopping counts these).
        planned_epochs: The fit's own epoch budget, ``None`` in a snapshot written before
            snapshots kept it. A run that fits several networks plans each one apart (the
            refit of ``targeted_select`` runs exactly the epochs its search chose).
        patience: The fit's own early-stopping patience, ``None`` likewise.
    """

    epochs_run: int
    seconds: float
    recent_epoch_seconds: float
    warming_up: bool = False
    bad_epochs: int = 0
    planned_epochs: int | None = None
    patience: int | None = None


def read_snapshot_progress(path: Path, recent: int = 5) -> SnapshotProgress | None:
    """Progress of the run whose snapshot is ``path``; ``None`` if there is none to read.

    The tensors are memory-mapped, not read, so this takes a fraction of a second even for
    the paper model's 140 MB snapshots, and it can run while a worker replaces the file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        history, bad_epochs = state["history"], int(state["bookkeeping"]["bad_epochs"])
        seconds = [float(row.get("seconds", 0.0)) for row in history]
        phases = [row.get("phase") for row in history]
        plan = state.get("plan") or {}
        planned_epochs, patience = plan.get("epochs"), plan.get("patience")
    except Exception:  # noqa: BLE001 - missing, half-replaced or foreign: no progress to show
        return None
    if not seconds:
        return SnapshotProgress(0, 0.0, 0.0, planned_epochs=planned_epochs, patience=patience)
    same_phase = [t for t, phase in zip(seconds, phases, strict=True) if phase == phases[-1]]
    last = same_phase[-recent:]
    return SnapshotProgress(len(seconds), sum(seconds), sum(last) / len(last),
                            warming_up=phases[-1] == 0.0, bad_epochs=bad_epochs,
                            planned_epochs=planned_epochs, patience=patience)


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

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.active = False
        self._src = model

    def start(self) -> None:
        """Copy the live weights and begin averaging."""
        self.model.load_state_dict(self._src.state_dict())
        self.active = True

    def current_decay(self) -> float:
        """The decay of the next update (with the warm-up: ``min(decay, (1+n)/(10+n))``)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step (a fused ``lerp`` over all tensors; no Python loop per element)."""
        if not self.active:
            return
        torch._foreach_lerp_(list(self.model.parameters()), list(self._src.parameters()),
                             1.0 - self.current_decay())
        self.updates += 1
        for b_ema, b in zip(self.model.buffers(), self._src.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """State of the average (or of the live model while inactive)."""
        return (self.model if self.active else self._src).state_dict()


def clone_state(model_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copy of a state dict."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k: v.detach().clone() for k, v in state.items()}


_BOOKKEEPING = ("best_ema_val", "ema_selected_epoch", "best_val", "selected_val",
                "selected_epoch", "bad_epochs", "diverged", "diverged_epoch", "stopped_early",
                "epochs_run")
"""Selection and stopping attributes of the engine that a snapshot carries."""


def _plain(value: Any) -> Any:
    """A history value as a built-in type (NumPy scalars are not allowed in a safe load)."""
    if type(value) in (int, float, bool, str) or value is None:
        return value
    return value.item() if hasattr(value, "item") else float(value)


def _numpy_rng_state() -> tuple:
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)


def _finite_state(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


class TrainingEngine:
    """Shared machinery of every training method (one instance per fit).

    Args:
        model: The network to train (moved to the device, trained in place).
        X: Standardised features ``(n, d)``, float32.
        y: Targets ``(n,)``.
        sets: Boolean masks including ``"train"`` and the validation sets.
        config: The recipe.
        val_sets: Names of the sets whose mean loss drives selection and early stopping;
            ``None`` = the random splits ``Rsplt1..5``; an empty list = no validation (the
            final state is kept and every epoch of the budget runs).
        generator: Generator for shuffling and the method's draws. ``None`` seeds a new one
            (and the global RNGs) from ``config.seed``; pass one to continue a stream.
    """

    def __init__(self, model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
                 config: TrainConfig, val_sets: Sequence[str] | None = None,
                 generator: torch.Generator | None = None) -> None:
        config.validate()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, d) and y (n,); got {X.shape} and {y.shape}.")
        if not np.isfinite(X).all() or not np.isfinite(y).all():
            raise ValueError("X and y must be finite; impute or drop NaN/inf rows first.")
        self.config = config
        self.masks = as_mask_dict(sets, len(X))
        self.val_names = validation_names(self.masks) if val_sets is None else list(val_sets)
        self.device = select_device(config.device)
        self.gen = seed_everything(config.seed) if generator is None else generator
        self.model = model.to(self.device)
        if config.dropout is not None:
            set_dropout(self.model, config.dropout)
        self.loss_fn, self.loss_none = loss_functions(config.loss)
        # Everything lives on the device once; batches are slices of one gathered copy.
        self.X = torch.tensor(X, device=self.device)  # a copy: inputs may be read-only views
        self.y = torch.tensor(y, device=self.device)
        self.train_idx = self._idx(self.masks["train"])
        names = list(self.masks) if config.history_sets is None else list(config.history_sets)
        names += [v for v in self.val_names if v not in names]
        self.eval_names = names
        union = np.zeros(len(X), bool)
        for s in names:
            union |= self.masks[s]
        self.eval_rows = self._idx(union)
        pos = np.full(len(X), -1, np.int64)
        pos[union] = np.arange(int(union.sum()))
        # Position of each set's rows inside the union's prediction vector.
        self.eval_pos = {s: torch.as_tensor(pos[self.masks[s]], device=self.device) for s in names}
        self.optimizer = self.make_adam(config.lr, config.weight_decay)
        self.scheduler = self._make_scheduler()
        self.ema = EMA(self.model, config.ema_decay, warmup=config.ema_warmup)
        self.best_ema_val = math.inf
        self.ema_selected_epoch = -1
        self.best_val = math.inf
        self.selected_val = math.inf
        self.selected_epoch = -1
        self.selected_state = clone_state(self.model)
        self.selected_ema_state = clone_state(self.model)
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []
        self.diverged = False
        self.diverged_epoch: int | None = None
        self.stopped_early = False
        self.epochs_run = 0
        self.resumed: list[dict[str, Any]] = []
        self._bar = None

    # ----------------------------------------------------------------- setup helpers
    def _idx(self, mask: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.flatnonzero(mask), device=self.device)

    def make_adam(self, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
        """Adam over the trainable parameters (fused kernel when ``config.fused_adam``)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.config.fused_adam:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        try:
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError):  # pragma: no cover - device without fused Adam
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)

    def _make_scheduler(self):
        c = self.config
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(c.schedule_epochs or c.epochs, 1),
                eta_min=c.lr * c.min_lr_factor)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=c.plateau_factor, patience=c.plateau_patience)
        return None

    # ----------------------------------------------------------------- the loop
    def fit(self, epoch_fn: EpochFn | None = None, desc: str = "train",
            snapshot: Snapshot | None = None) -> TrainResult:
        """Run the method's epochs with evaluation, selection, early stopping and the NaN rule.

        Args:
            epoch_fn: The method's epoch; ``None`` is a plain supervised epoch. An epoch with
                state of its own (the CAL schedule) saves it with ``state_dict()`` and
                ``load_state_dict()`` for snapshots.
            desc: Label of the progress bar.
            snapshot: Keep the state here after every epoch and, if the file exists, resume
                from it instead of starting at epoch 0.

        A :class:`Diverged` raised inside an epoch ends the run: the live model gets back the
        last finite state, and the result is flagged ``diverged``.
        """
        epoch_fn = epoch_fn or (lambda eng, epoch: (eng.plain_epoch(epoch), {}))
        if snapshot is not None and snapshot.path.is_file():
            self.resume(snapshot, epoch_fn)
        first = self.config.epochs if self.stopped_early or self.diverged else self.epochs_run
        with self.progress(desc):
            if self._bar is not None and first:
                self._bar.update(min(first, self.config.epochs))
            for epoch in range(first, self.config.epochs):
                started = time.perf_counter()
                good = clone_state(self.model)
                try:
                    loss, extra = epoch_fn(self, epoch)
                    if self.config.ema_every == "epoch":
                        self.ema.update()
                    stop = self.end_epoch(epoch, loss, started, extra)
                except Diverged:
                    self.mark_diverged(epoch, good)
                    stop = True
                if snapshot is not None:
                    self.save_snapshot(snapshot, epoch_fn)
                if stop:
                    break
        return TrainResult(**self.result_kwargs())

    # ----------------------------------------------------------------- snapshots
    def snapshot_state(self, epoch_fn: EpochFn | None = None) -> dict[str, Any]:
        """Everything the next epoch reads, as plain types and tensors."""
        cuda = self.device.type == "cuda"
        method_state = getattr(epoch_fn, "state_dict", None)  # stateful epoch functions only
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "ema": {"model": self.ema.model.state_dict(), "updates": self.ema.updates,
                    "active": self.ema.active},
            "selected_state": self.selected_state,
            "selected_ema_state": self.selected_ema_state,
            "bookkeeping": {name: getattr(self, name) for name in _BOOKKEEPING},
            "history": [{k: _plain(v) for k, v in row.items()} for row in self.history],
            "rng": {"shuffle": self.gen.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if cuda else None,
                    "numpy": _numpy_rng_state(), "python": random.getstate()},
            "method": method_state() if method_state is not None else None,
        }

    def load_snapshot_state(self, state: dict[str, Any],
                            epoch_fn: EpochFn | None = None) -> None:
        """Put back a :meth:`snapshot_state` (the engine must be built the same way)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.ema.model.load_state_dict(state["ema"]["model"])
        self.ema.updates, self.ema.active = state["ema"]["updates"], state["ema"]["active"]
        self.selected_state = state["selected_state"]
        self.selected_ema_state = state["selected_ema_state"]
        for name, value in state["bookkeeping"].items():
            setattr(self, name, value)
        self.history = [dict(row) for row in state["history"]]
        rng = state["rng"]
        self.gen.set_state(rng["shuffle"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, cached))
        random.setstate(rng["python"])
        load_method_state = getattr(epoch_fn, "load_state_dict", None)
        if state["method"] is not None and load_method_state is not None:
            load_method_state(state["method"])

    def save_snapshot(self, snapshot: Snapshot, epoch_fn: EpochFn | None = None) -> None:
        """Write the state to ``snapshot.path`` atomically (a kill never leaves half a file)."""
        state = {"owner": snapshot.owner, "code": snapshot.code, "resumed": self.resumed,
                 # read by the sweep's progress lines; not put back on resume (the config is)
                 "plan": {"epochs": int(self.config.epochs),
                          "patience": int(self.config.patience)},
                 **self.snapshot_state(epoch_fn)}
        with atomic_write(snapshot.path) as tmp:
            torch.save(state, tmp)

    def resume(self, snapshot: Snapshot, epoch_fn: EpochFn | None = None) -> None:
        """Load ``snapshot.path`` into this engine and note the resume in :attr:`resumed`.

        Raises:
            SnapshotError: If the file cannot be read or belongs to another run.
        """
        try:
            state = torch.load(snapshot.path, map_location=self.device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise SnapshotError(
                f"the snapshot {snapshot.path} of an interrupted run cannot be read ({err}). "
                "Delete it to start the run again from epoch 0.") from err
        if state.get("owner") != snapshot.owner:
            raise SnapshotError(
                f"the snapshot {snapshot.path} belongs to {state.get('owner')!r}, not "
                f"{snapshot.owner!r}. Delete it (or move it) to start {snapshot.owner} afresh.")
        self.load_snapshot_state(state, epoch_fn)
        seconds = float(sum(row.get("seconds", 0.0) for row in self.history))
        self.resumed = [*state["resumed"], {"epoch": self.epochs_run, "code": state["code"],
                                            "seconds_before": round(seconds, 2)}]
        if state["code"] != snapshot.code:
            print(f"[calkit] {snapshot.owner}: the snapshot was written by code {state['code']} "
                  f"and is resumed by {snapshot.code}; the record lists both.",
                  file=sys.stderr, flush=True)
        print(f"[calkit] {snapshot.owner}: resuming at epoch {self.epochs_run} from "
              f"{snapshot.path.name}", file=sys.stderr, flush=True)

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
        """One step of the supervised optimiser on ``loss(f(xb), yb)``; returns the loss."""
        return self.optimizer_step(self.optimizer, xb, yb, "supervised")

    def optimizer_step(self, optimizer: torch.optim.Optimizer, xb: torch.Tensor,
                       yb: torch.Tensor, what: str) -> float:
        """One step of ``optimizer`` on ``loss(f(xb), yb)``; returns the loss.

        Raises:
            Diverged: Before stepping, if the loss is not finite.
        """
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(xb), yb)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Diverged(f"non-finite {what} loss {value}")
        loss.backward()
        optimizer.step()
        return value

    def start_ema_at(self, epoch: int) -> None:
        """Begin the EMA once ``epoch`` reaches ``ema_start_epoch`` (never when it is None)."""
        start = self.config.ema_start_epoch
        if start is not None and epoch >= start and not self.ema.active:
            self.ema.start()

    def ema_step(self) -> None:
        """The per-step EMA update (only when ``ema_every == "step"``)."""
        if self.config.ema_every == "step":
            self.ema.update()

    def plain_epoch(self, epoch: int, idx: torch.Tensor | None = None) -> float:
        """A supervised epoch over ``idx`` (default: all training rows); returns mean loss."""
        self.set_train_mode(epoch)
        self.start_ema_at(epoch)
        total, count = 0.0, 0
        for xb, yb in self.batches(self.train_idx if idx is None else idx):
            total += self.supervised_step(xb, yb) * len(yb)
            count += len(yb)
            self.ema_step()
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
        row: dict[str, float] = {}
        if len(self.eval_rows):
            pred = self.predict_rows(self.eval_rows)
            target = self.y[self.eval_rows]
            err = pred - target
            huber = self.loss_none(pred, target) if self.config.loss == "smooth_l1" else \
                F.smooth_l1_loss(pred, target, beta=1.0, reduction="none")
            for s in self.eval_names:
                p = self.eval_pos[s]
                row[f"{s}/loss"] = float(huber[p].mean()) if len(p) else math.nan
                row[f"{s}/mae"] = float(err[p].abs().mean()) if len(p) else math.nan
        # Selection uses the training loss function (smooth-L1 or MAE) on the validation sets.
        key = "loss" if self.config.loss == "smooth_l1" else "mae"
        row["val_loss"] = float(np.mean([row[f"{s}/{key}"] for s in self.val_names])) \
            if self.val_names else math.nan
        row["ema_val_loss"] = self._ema_val_loss() if self.ema.active else row["val_loss"]
        return row

    def _ema_val_loss(self) -> float:
        """Mean validation loss of the EMA model (its own selection needs it every epoch)."""
        if not self.val_names:
            return math.nan
        _, loss_none = loss_functions(self.config.loss)
        losses = []
        for s in self.val_names:
            rows = self._idx(self.masks[s])
            losses.append(float(loss_none(self.predict_rows(rows, self.ema.model),
                                          self.y[rows]).mean()))
        return float(np.mean(losses))

    # ----------------------------------------------------------------- bookkeeping
    def end_epoch(self, epoch: int, train_loss: float, started: float,
                  extra: dict[str, float] | None = None) -> bool:
        """Evaluate, log, update the selected state, step the schedule; return True to stop."""
        row = {"epoch": epoch, "train_batch_loss": train_loss,
               "lr": self.optimizer.param_groups[0]["lr"], **self.evaluate_epoch(), **(extra or {})}
        row["seconds"] = time.perf_counter() - started
        self.history.append(row)
        self.epochs_run = epoch + 1
        val = row["val_loss"]
        validated = bool(self.val_names)
        if validated and not math.isfinite(val):
            raise Diverged(f"non-finite validation loss {val}")
        improved = validated and val < self.best_val
        keep_all = self.config.selection == "last" or not validated
        if improved or keep_all:
            self.selected_epoch, self.selected_val = epoch, val
            self.selected_state = clone_state(self.model)
        ema_val = row["ema_val_loss"]
        own = self.config.ema_selection == "own"
        if (own and (keep_all or ema_val < self.best_ema_val)) or \
                (not own and (improved or keep_all)):
            self.best_ema_val = min(self.best_ema_val, ema_val) if own else ema_val
            self.ema_selected_epoch = epoch
            self.selected_ema_state = clone_state(self.ema.state_dict())
        if improved:
            self.best_val, self.bad_epochs = val, 0
        else:
            self.bad_epochs += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val)
        elif self.scheduler is not None:
            self.scheduler.step()
        if self._bar is not None:
            self._bar.set_postfix(val=f"{val:.4f}",
                                  best=f"{self.best_val:.4f}@{self.selected_epoch}")
            self._bar.update(1)
        if validated and self.bad_epochs >= self.config.patience:
            self.stopped_early = True
            return True
        return False

    def mark_diverged(self, epoch: int, good_state: dict[str, torch.Tensor] | None) -> None:
        """Record a divergence and put a finite state back into the live model."""
        self.diverged, self.diverged_epoch = True, epoch
        state = good_state if good_state is not None and _finite_state(good_state) \
            else self.selected_state
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
        raw = copy.deepcopy(self.model)
        raw.load_state_dict(self.selected_state)
        raw.eval()
        ema = copy.deepcopy(self.model)
        ema.load_state_dict(self.selected_ema_state)
        ema.eval()
        for p in ema.parameters():
            p.requires_grad_(False)
        last = copy.deepcopy(self.model).eval()
        last_ema = copy.deepcopy(self.model)
        last_ema.load_state_dict(self.ema.state_dict())
        last_ema.eval()
        return dict(model=raw, ema_model=ema, history=self.history_frame(),
                    last_model=last, last_ema_model=last_ema,
                    ema_selected_epoch=self.ema_selected_epoch,
                    selected_epoch=self.selected_epoch, selected_val_loss=self.selected_val,
                    epochs_run=self.epochs_run, stopped_early=self.stopped_early,
                    diverged=self.diverged, diverged_epoch=self.diverged_epoch,
                    config=asdict(self.config), sets=self.masks, resumed=self.resumed)


def train(model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
          config: TrainConfig | None = None) -> TrainResult:
    """Train ``model`` on the ``"train"`` rows with early stopping on the Rsplt sets.

    Every set in ``sets`` is evaluated after every epoch (``history``); the state with
    the lowest mean random-split loss is kept, together with the EMA at that epoch.
    A non-finite loss stops the run (``result.diverged``) and the last finite state is
    returned; no optimiser step is ever taken on a NaN loss.

    Args:
        model: An untrained (or pre-trained) network, e.g. ``build_model("cpu", 145)``.
        X: Standardised features ``(n, d)``, float32.
        y: Targets ``(n,)``.
        sets: Boolean masks (dict or DataFrame) with ``"train"`` and ``Rsplt1..5``.
        config: The recipe; defaults to ``TrainConfig()``.

    Returns:
        A :class:`TrainResult`.
    """
    config = TrainConfig() if config is None else config
    return TrainingEngine(model, X, y, sets, config).fit()
