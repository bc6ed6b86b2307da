"""CAL: SAL + loss-sorted partial sampling + targeting, as an epoch hook on the engine.

Reference: Li, Miklaucic & Hu, arXiv 2408.09297. The SAL maths is in :mod:`calkit.sal`;
this module is the schedule (:class:`CALSchedule`): ``pre_adv_epochs`` plain warm-up epochs
on all training rows; then adversarial epochs on the ``partial_fraction`` highest-loss
training rows (re-sorted every ``epochs_between_regens`` epochs), each batch taking a
supervised step and then a SAL step on the adversarial source (the same batch, or in
targeted mode a batch of the N target rows). EMA, selection, early stopping and the NaN
guard are the engine's (:class:`calkit.engine.TrainingEngine`).

Defaults follow the authors' training code (cal-paper.md section 9); each is a field of
:class:`calkit.config.SALConfig` with the wave-1 reading as the other value:

* ``w_update="batch"``, ``w_reset="epoch_end"``: one ``w`` step per SAL step; negative
  weights are reset to 1 and frozen at the end of the epoch, when ``gamma`` is recomputed
  (so within an epoch the attack may see negative costs). Each step moves the largest weight
  by 20, so from 100 the weights fall to the reset value within a few epochs, after which SAL
  is uniform adversarial training (the notebook shows the trajectory).
* ``theta_optimizer="fresh"``: a new Adam for every SAL step's theta steps, as the authors
  build; ``theta_lr_schedule="supervised"`` scales its rate with the supervised schedule.
* ``target_steps="authors"``: in targeted mode, as many SAL steps per epoch as base CAL
  takes, each on all N target rows.
* The high-loss rows are re-shuffled every adversarial epoch (the research code walks
  them in sorted order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from calkit.columns import resolve_set_name
from calkit.config import CALConfig, SALConfig
from calkit.engine import Snapshot, TrainingEngine, TrainResult
from calkit.methods.registry import Method, MethodInputs, MethodOutput, register
from calkit.sal import SALState, hyper_parameter_index, sal_step
from calkit.splits import select_target
from calkit.utils import SetMasks, as_mask_dict


@dataclass
class CALResult(TrainResult):
    """:class:`~calkit.engine.TrainResult` plus CAL diagnostics.

    Attributes:
        w: Final cost weights (NumPy).
        w_history: ``(epochs_run, d)`` cost weights at the end of every epoch.
        frozen: Final frozen flags.
        target_set: Canonical name of the targeted set, if any.
        target_indices: Rows drawn as the adversarial source (targeted mode).
        selected_in_warmup: Whether model selection picked a warm-up epoch (then the
            adversarial phase did not help by the validation rule).
    """

    w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    w_history: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    frozen: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    target_set: str | None = None
    target_indices: np.ndarray | None = None
    selected_in_warmup: bool = False


def _n_batches(n_rows: int, batch_size: int) -> int:
    """Batches :meth:`TrainingEngine.batches` yields for ``n_rows`` rows."""
    full, rest = divmod(n_rows, batch_size)
    return full + (1 if rest >= 2 or (rest == 1 and full == 0) else 0)


class CALSchedule:
    """The CAL epoch (``engine.fit(schedule)``): warm-up, partial sampling, SAL steps.

    Args:
        engine: The engine the run trains on.
        sal: SAL settings.
        target_rows: Row indices of the adversarial source in targeted mode, else ``None``.
    """

    def __init__(self, engine: TrainingEngine, sal: SALConfig,
                 target_rows: np.ndarray | None = None) -> None:
        self.sal = sal
        self.state = SALState.create(engine.X.shape[1], sal.w_init, engine.device)
        self.params = [p for p in engine.model.parameters() if p.requires_grad]
        self.hyper_index = hyper_parameter_index(engine.model, self.params, sal.grad_layers)
        self.theta_opt = engine.make_adam(sal.theta_lr)  # the persistent optimiser
        self.target_rows = None if target_rows is None else \
            torch.as_tensor(target_rows, device=engine.device)
        self.partial: torch.Tensor | None = None
        self.w_history: list[np.ndarray] = []

    def __call__(self, eng: TrainingEngine, epoch: int) -> tuple[float, dict[str, float]]:
        """One epoch: plain during warm-up, adversarial after; returns loss and diagnostics."""
        sal = self.sal
        extra: dict[str, float] = {"phase": float(epoch >= sal.pre_adv_epochs)}
        if epoch < sal.pre_adv_epochs:
            loss = eng.plain_epoch(epoch)
            extra.update(perturbation=0.0, adv_loss=math.nan, n_sal_steps=0, n_adv_rows=0,
                         n_partial_rows=0)
        else:
            adv_epoch = epoch - sal.pre_adv_epochs
            if self.partial is None or adv_epoch % sal.epochs_between_regens == 0:
                self.partial = self.partial_rows(eng)
            loss, stats = self.adversarial_epoch(eng, epoch)
            extra.update(stats)
        extra.update(self.state.stats())
        self.w_history.append(self.state.w.detach().cpu().numpy().copy())
        return loss, extra

    def state_dict(self) -> dict:
        """The schedule's own state, for the engine's snapshots."""
        state = self.state
        return {"w": state.w, "frozen": state.frozen, "gamma": float(state.gamma),
                "delta": state.delta, "theta_opt": self.theta_opt.state_dict(),
                "partial": self.partial,
                "w_history": [torch.as_tensor(w) for w in self.w_history]}

    def load_state_dict(self, saved: dict) -> None:
        """Put back a :meth:`state_dict`."""
        device = self.state.w.device
        self.state.w, self.state.frozen = saved["w"].to(device), saved["frozen"].to(device)
        self.state.gamma, self.state.delta = saved["gamma"], saved["delta"].to(device)
        self.theta_opt.load_state_dict(saved["theta_opt"])
        self.partial = None if saved["partial"] is None else saved["partial"].to(device)
        self.w_history = [w.numpy() for w in saved["w_history"]]

    def partial_rows(self, eng: TrainingEngine) -> torch.Tensor:
        """Training rows of an adversarial epoch: the highest-loss fraction (or all for AA)."""
        sal = self.sal
        if sal.adversarial_on_all:
            return eng.train_idx
        n = len(eng.train_idx)
        k = sal.partial_batches * eng.config.batch_size if sal.partial_batches else \
            math.ceil(sal.partial_fraction * n)
        losses = eng.per_sample_loss(eng.train_idx)
        order = torch.argsort(losses, descending=True, stable=True)
        return eng.train_idx[order[:min(max(k, 2), n)]]

    def adversarial_epoch(self, eng: TrainingEngine, epoch: int) -> tuple[float, dict[str, float]]:
        """Supervised + SAL steps over the partial rows; returns mean loss and diagnostics."""
        sal, state, partial = self.sal, self.state, self.partial
        if partial is None:
            raise RuntimeError("an adversarial epoch needs the partial rows the warm-up picks.")
        eng.set_train_mode(epoch)
        train_mode = eng.model.training
        eng.start_ema_at(epoch)
        alpha_t = sal.alpha / math.sqrt(epoch + 1)
        n_partial_batches = _n_batches(len(partial), eng.config.batch_size)
        source_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        n_sal_steps: int | None
        if self.target_rows is not None and sal.sal:
            if sal.target_steps == "authors":
                # As many SAL steps as base CAL takes, each on all N target rows.
                source_batches = [(eng.X[self.target_rows], eng.y[self.target_rows])]
                n_sal_steps = n_partial_batches
            else:
                source_batches = list(eng.batches(self.target_rows))
                n_sal_steps = len(source_batches)
        elif sal.supervised_on_all:
            source_batches = list(eng.batches(partial))
            n_sal_steps = len(source_batches)
        else:
            n_sal_steps = None  # a SAL step after every supervised step (on the same batch)
        # Ablation PS when the supervised steps already cover every row: the high-loss rows are
        # revisited with the theta steps, unperturbed, so PS differs from plain training only
        # by partial sampling (without it, PS would be plain training).
        revisit = not sal.sal and sal.supervised_on_all
        supervised_rows = eng.train_idx if sal.supervised_on_all else partial
        total, count, pert, adv, n_sal, n_rows = 0.0, 0, 0.0, 0.0, 0, 0
        for i, (xb, yb) in enumerate(eng.batches(supervised_rows)):
            total += eng.supervised_step(xb, yb) * len(yb)
            count += len(yb)
            if sal.sal and (n_sal_steps is None or i < n_sal_steps):
                xs, ys = (xb, yb) if source_batches is None else \
                    source_batches[i % len(source_batches)]
                p, a = sal_step(eng.model, self.params, self.hyper_index,
                                self._theta_optimizer(eng), state, xs, ys, sal, eng.config.loss,
                                alpha_t, eng.gen, train_mode)
                pert, adv, n_sal, n_rows = pert + p, adv + a, n_sal + 1, n_rows + len(ys)
                if sal.learn_w and sal.w_update == "batch":
                    if sal.w_reset == "every_update":
                        state.apply_update(sal.deltaall, sal.w_eps, sal.negative_weight_reset)
                    else:
                        state.step(sal.deltaall, sal.w_eps)
            elif revisit and source_batches is not None and n_sal_steps is not None \
                    and i < n_sal_steps:
                xs, ys = source_batches[i % len(source_batches)]
                adv += self._revisit_steps(eng, xs, ys)
                n_sal, n_rows = n_sal + 1, n_rows + len(ys)
            eng.ema_step()
        if sal.sal and sal.learn_w:
            if sal.w_update == "epoch":
                state.apply_update(sal.deltaall, sal.w_eps, sal.negative_weight_reset)
            elif sal.w_reset == "epoch_end":
                state.end_epoch(sal.negative_weight_reset)
        return total / max(count, 1), {
            "perturbation": pert / max(n_sal, 1), "adv_loss": adv / n_sal if n_sal else math.nan,
            "n_sal_steps": n_sal, "n_adv_rows": n_rows, "n_partial_rows": int(len(partial))}

    def _theta_optimizer(self, eng: TrainingEngine) -> torch.optim.Optimizer:
        """The theta steps' Adam: fresh per SAL step or the run's, at the scheduled rate."""
        lr = self.sal.theta_lr
        if self.sal.theta_lr_schedule == "supervised":
            lr *= eng.optimizer.param_groups[0]["lr"] / eng.config.lr
        if self.sal.theta_optimizer == "fresh":
            return eng.make_adam(lr)
        for group in self.theta_opt.param_groups:
            group["lr"] = lr
        return self.theta_opt

    def _revisit_steps(self, eng: TrainingEngine, x: torch.Tensor, y: torch.Tensor) -> float:
        """``theta_epochs`` clean theta steps on ``(x, y)`` (ablation PS); returns mean loss."""
        steps = self.sal.theta_epochs
        return sum(eng.optimizer_step(self.theta_opt, x, y, "partial-sampling")
                   for _ in range(steps)) / steps


def fit_cal(model: nn.Module, X: np.ndarray, y: np.ndarray, sets: SetMasks,
            config: CALConfig | None = None, target_set: str | None = None,
            n_target: int = 0, target_seed: int = 3141,
            snapshot: Snapshot | None = None) -> CALResult:
    """Train ``model`` with CAL (or targeted CAL, or an ablation).

    Args:
        model: Network to train in place (e.g. ``build_model("paper", 145)``).
        X: Standardised features ``(n, d)``.
        y: Targets ``(n,)``.
        sets: Boolean masks with ``"train"`` and ``Rsplt1..5``.
        config: Recipe and SAL settings; ``None`` is ``CALConfig()`` (the paper's SAL).
        target_set: Targeted CAL: the OOD set (name or alias) whose ``n_target`` rows,
            drawn with ``target_seed``, are the adversarial source; they are removed from
            every evaluation set (see :func:`select_target`).
        n_target: Number of target rows (required with ``target_set``).
        target_seed: Seed of the draw of the target rows (paper 3141).
        snapshot: Keep the state there after every epoch and resume from it if it exists.

    Returns:
        A :class:`CALResult`. Per-epoch diagnostics in ``history``: ``phase``
        (0 warm-up, 1 adversarial), ``w_min``, ``w_median``, ``w_max``, ``w_frozen``,
        ``gamma``, ``perturbation`` (mean ``|x_A - x|``), ``adv_loss``, ``n_sal_steps``,
        ``n_adv_rows`` (rows through SAL steps) and ``n_partial_rows``.
    """
    config = (config or CALConfig()).validate()
    target_idx, target_name = None, None
    if target_set is not None:
        target_name = resolve_set_name(target_set, list(as_mask_dict(sets, len(X))))
        target_idx, sets = select_target(sets, target_name, n_target, target_seed,
                                         n_rows=len(X))
    eng = TrainingEngine(model, X, y, sets, config.train)
    schedule = CALSchedule(eng, config.sal, target_idx)
    base = eng.fit(schedule, "cal" if target_set is None else f"cal->{target_name}",
                   snapshot=snapshot)
    state = schedule.state
    return CALResult(**vars(base), w=state.w.cpu().numpy(), w_history=np.array(schedule.w_history),
                     frozen=state.frozen.cpu().numpy(), target_set=target_name,
                     target_indices=target_idx,
                     selected_in_warmup=0 <= base.selected_epoch < config.sal.pre_adv_epochs)


def run_cal(inputs: MethodInputs) -> MethodOutput:
    """Registry run function of the CAL family."""
    result = fit_cal(inputs.fresh_model, inputs.X, inputs.y, inputs.masks,
                     CALConfig(inputs.train, inputs.sal), target_set=inputs.target_set,
                     n_target=inputs.n_target, target_seed=inputs.target_seed,
                     snapshot=inputs.snapshot)
    warmup = inputs.sal.pre_adv_epochs
    extra = {"w_final": np.asarray(result.w).round(6).tolist(),
             "w_frozen": int(np.asarray(result.frozen).sum()),
             "selected_in_warmup": bool(result.selected_in_warmup),
             "ema_selected_in_warmup": bool(0 <= result.ema_selected_epoch < warmup)}
    if result.target_set is not None and result.target_indices is not None:
        extra.update(target_set=result.target_set, target_indices=result.target_indices.tolist())
    return MethodOutput(result.model, result.ema_model, result.history, result.sets,
                        result.run_info(), extra, result.last_model, result.last_ema_model)


_PAPER_ABLATION = "paper ablation (meaning inferred from the figure labels)"

register(Method("cal", "CAL", "cal", run_cal,
                "CAL: SAL steps on the high-loss training rows after a plain warm-up",
                paper_rows=("base", "ablation")))
register(Method(
    "targeted", "targeted CAL", "cal", run_cal,
    "targeted CAL: the SAL source is N rows drawn once from one OOD set",
    recipe_changes={"selection": "last"},
    why="Targeting trades in-distribution accuracy for the target set, so the random-split "
        "rule tends to keep a warm-up epoch and discard the targeting; the final state is "
        "kept instead (the N target rows are never evaluated, so nothing is tuned on them).",
    needs_target=True, paper_rows=("targeted",)))
register(Method("pg_first", "PG 1st", "cal", run_cal,
                f"SAL's hypergradient through the first layer only; {_PAPER_ABLATION}",
                sal_changes={"grad_layers": "first"}, paper_rows=("ablation",)))
register(Method("pg_last", "PG Last", "cal", run_cal,
                f"SAL's hypergradient through the last layer only; {_PAPER_ABLATION}",
                sal_changes={"grad_layers": "last"}, paper_rows=("ablation",)))
register(Method("aa", "AA", "cal", run_cal,
                f"adversarial training on all training rows (no partial sampling); "
                f"{_PAPER_ABLATION}",
                sal_changes={"adversarial_on_all": True}, paper_rows=("ablation",)))
register(Method("ps", "PS", "cal", run_cal,
                f"partial sampling without SAL; {_PAPER_ABLATION}",
                sal_changes={"sal": False}, paper_rows=("ablation",)))
register(Method("irnet3", "IRnet-3", "cal", run_cal,
                f"CAL with the small earlier IRnet-3 network; {_PAPER_ABLATION}",
                model_preset="irnet3", paper_rows=("ablation",)))
