"""The two configuration records a training run is built from, each field declared once.

* :class:`TrainConfig`, the **recipe**: optimiser, schedule, budget, EMA, model selection. A
  profile (:mod:`calkit.profiles`) owns one recipe; the plain baseline and CAL share it, and a
  method that departs from it says so in its registry entry (:mod:`calkit.methods`).
* :class:`SALConfig`, the **adversarial settings** of CAL: warm-up, partial sampling, the SAL
  attack and the cost-weight update. A CAL run is the recipe plus these (:class:`CALConfig`).

Why the default recipe is Adam 1e-3 with a cosine decay to 1 %: the paper's constant 1e-4
leaves the paper-size net far from converged after 40 epochs on the 22 k training rows, so a
1e-4 baseline would be a straw man; a constant 1e-3 converges faster but ends noisy (and made
CAL's adversarial phase diverge in half of the trials); the cosine decay removes the late noise
while keeping the fast start. Candidates are compared on the mean random-split loss only, never
on an OOD set.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

# Every choice field is typed with one of these, and its valid values are read from the type:
# declared once, checked statically (mypy) and at run time (``_check_choices``).
Loss = Literal["smooth_l1", "mae"]
Schedule = Literal["cosine", "plateau", "none"]
HORIZON_SCHEDULES: frozenset[str] = frozenset({"cosine"})
"""Schedules whose rate at an epoch depends on the run's epoch budget (the cosine decays over
``epochs``): a run shortened to fewer epochs follows another trajectory under them."""
Selection = Literal["val", "last"]
EmaEvery = Literal["epoch", "step"]
EmaSelection = Literal["own", "raw"]
GradLayers = Literal["all", "first", "last"]
WUpdate = Literal["batch", "epoch"]
WReset = Literal["epoch_end", "every_update"]
ThetaOptimizer = Literal["fresh", "persistent"]
ThetaLrSchedule = Literal["supervised", "constant"]
TargetSteps = Literal["authors", "per_batch"]
AttackCost = Literal["mean", "row_sum"]

LOSSES: tuple[Loss, ...] = get_args(Loss)
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)
SELECTIONS: tuple[Selection, ...] = get_args(Selection)
GRAD_LAYERS: tuple[GradLayers, ...] = get_args(GradLayers)
W_UPDATES: tuple[WUpdate, ...] = get_args(WUpdate)

RUNTIME_FIELDS = ("device", "progress")
"""Recipe fields that do not change a run's numbers (left out of the run identity)."""

TRAIN_FIELDS_ADDED_LATER = ("schedule_epochs",)
"""Recipe fields added after records existed. Each enters a run's identity only when set (its
``None`` default is the behaviour before it existed), so stored records keep their run ids."""


@dataclass
class TrainConfig:
    """The training recipe (shared by plain training, CAL and fine-tuning).

    Attributes:
        lr: Adam learning rate of the supervised step (module docstring: why 1e-3).
        batch_size: Mini-batch size.
        epochs: Maximum number of epochs.
        loss: ``"smooth_l1"`` (Huber, beta 1; the paper's) or ``"mae"``.
        weight_decay: Adam (L2) weight decay.
        schedule: ``"cosine"`` (to ``lr * min_lr_factor`` over ``epochs``), ``"plateau"``
            (multiply by ``plateau_factor`` after ``plateau_patience`` epochs without a new
            best validation loss) or ``"none"``.
        min_lr_factor: Final LR of the cosine schedule, relative to ``lr``.
        schedule_epochs: Epochs the cosine spans; ``None``: ``epochs``. A run that sets it to
            more than ``epochs`` stops part-way down the decay (the refit of a search that
            keeps the search's schedule).
        plateau_factor: LR factor of the plateau schedule.
        plateau_patience: Epochs without improvement before the plateau schedule cuts.
        patience: Early stopping: epochs without a new best validation loss.
        ema_decay: Decay of the exponential moving average of the weights (per update).
        ema_start_epoch: First epoch the EMA is updated; before it the EMA equals the model.
            ``None``: no EMA (the "EMA model" is the model itself).
        ema_every: ``"epoch"`` (the authors: one update at the end of each epoch) or
            ``"step"`` (wave 1: after every supervised step).
        ema_warmup: The warm-up of the authors' EMA library (torch_ema): after ``n`` updates
            the decay is ``min(ema_decay, (1 + n) / (10 + n))``.
        ema_selection: ``"own"``: the EMA model is taken at the epoch of its own lowest
            validation loss (or the last epoch with ``selection="last"``); ``"raw"`` (wave 1):
            at the raw model's selected epoch.
        dropout: If set, overrides the model's dropout probability.
        research_eval_mode_quirk: Reproduce the research code's bug of training in eval
            mode after epoch 0 (dropout off, BatchNorm frozen). Off by default.
        fused_adam: Use PyTorch's fused Adam kernel (faster; equal to the loop kernel up to
            float rounding, so it is part of a run's identity).
        seed: Seeds shuffling, dropout and every draw of the method.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:i]"``.
        progress: Show a tqdm progress bar over epochs.
        eval_batch_size: Rows per forward pass when evaluating.
        history_sets: Sets evaluated every epoch; ``None`` = every set given.
        selection: ``"val"`` keeps the state with the lowest validation loss (the paper's
            rule); ``"last"`` keeps the final state. Early stopping uses the validation loss
            either way.
    """

    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 100
    loss: Loss = "smooth_l1"
    weight_decay: float = 0.0
    schedule: Schedule = "cosine"
    min_lr_factor: float = 0.01
    schedule_epochs: int | None = None
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    patience: int = 20
    ema_decay: float = 0.999
    ema_start_epoch: int | None = 20
    ema_every: EmaEvery = "epoch"
    ema_warmup: bool = True
    ema_selection: EmaSelection = "own"
    dropout: float | None = None
    research_eval_mode_quirk: bool = False
    fused_adam: bool = True
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    eval_batch_size: int = 8192
    history_sets: tuple[str, ...] | None = None
    selection: Selection = "val"

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the bad field and its valid values; return self."""
        _check_choices(self)
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}.")
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            raise ValueError(f"schedule_epochs must be None or >= epochs ({self.epochs}), got "
                             f"{self.schedule_epochs}: a cosine cannot end before the run.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that determine the numbers (no device, no progress bar)."""
        out = asdict(self)
        for name in RUNTIME_FIELDS:
            out.pop(name)
        for name in TRAIN_FIELDS_ADDED_LATER:
            if out[name] is None:
                out.pop(name)
        if out["history_sets"] is not None:
            out["history_sets"] = list(out["history_sets"])
        return out


@dataclass
class SALConfig:
    """The adversarial part of CAL (defaults: the paper's final research configuration).

    Attributes:
        pre_adv_epochs: Plain warm-up epochs on all training rows.
        epochs_between_regens: Adversarial epochs between re-sorts by per-sample loss.
        partial_fraction: Fraction of training rows (highest loss first) used by an
            adversarial epoch (paper text: 20 %).
        partial_batches: If set, use this many batches instead (research config: 21).
        adversarial_on_all: Ablation "AA": adversarial epochs use every training row.
        supervised_on_all: Reading of the research code's epoch loop. ``False``: an
            adversarial epoch runs its supervised steps on the partial (high-loss) rows
            only. ``True``: the supervised steps still cover every training row, and the
            SAL steps run on the partial rows, paired with the first supervised batches.
        sal: If False, ablation "PS": partial sampling without SAL. The high-loss rows are
            revisited unperturbed (supervised steps on them only, or, with
            ``supervised_on_all``, ``theta_epochs`` clean steps per partial batch).
        attack_epochs: Adam-ascent steps per attack.
        attack_lr: Adam learning rate of the attack (sets the perturbation size).
        theta_epochs: Attack + theta-step iterations per SAL step.
        theta_lr: Adam learning rate of the theta step on adversarial samples.
        r_theta_splits: Number of random pseudo-environments in ``R(theta)``.
        alpha: Weight of ``max_e L_e - min_e L_e``; ``alpha_t = alpha / sqrt(epoch + 1)``.
        w_init: Initial cost weight of every feature.
        deltaall: Largest change of a weight in one update.
        xa_grad_reduce: Scale of ``delta_w`` before normalisation.
        w_eps: ``eps`` of the normalised step.
        negative_weight_reset: Value a negative weight is reset to before being frozen
            (CAL: 1; original SAL: 0).
        w_update: ``"batch"`` (the authors: one ``w`` step per SAL step) or ``"epoch"`` (one
            step per epoch on the summed hypergradient).
        w_reset: ``"epoch_end"`` (the authors: negative weights are reset and frozen at the
            end of each epoch, ``gamma`` is recomputed then, and within an epoch the attack
            may see negative costs) or ``"every_update"`` (wave 1: right after each step).
        learn_w: Learn the cost weights (False: the fixed-``w`` control, no hypergradient).
        theta_optimizer: ``"fresh"`` (the authors: a new Adam for every SAL step) or
            ``"persistent"`` (wave 1: one Adam for the whole run).
        theta_lr_schedule: ``"supervised"``: the theta rate follows the supervised schedule
            (``theta_lr`` times the supervised rate's current fraction of its start), keeping
            the authors' ratio of the two rates under a decaying schedule; ``"constant"``
            (wave 1): ``theta_lr`` throughout, so late in a cosine run the unannealed theta
            steps dominate the updates.
        target_steps: Targeted mode. ``"authors"``: a SAL step after each of as many
            supervised steps as base CAL takes (the partial rows' batches), each on all N
            target rows, as the authors' loop passes them; ``"per_batch"`` (wave 1): one SAL
            step per target batch of ``batch_size`` rows (1 per epoch for N <= 256).
        grad_layers: ``"all"``, ``"first"`` (PG 1st) or ``"last"`` (PG Last): the parameters
            the hypergradient VJP runs through.
        attack_eval_mode: Run the attack with the network in eval mode.
        attack_beta2: The attack Adam's second-moment decay (torch's default 0.999; the
            authors' hand-written Adam uses 0.9).
        attack_cost: How the transport cost ``w (x_A - x)^2`` is reduced: ``"mean"`` over rows
            and features (the SAL formula as the paper writes it) or ``"row_sum"``: summed over
            the features and averaged over the rows (the authors' code, ``mean(d^2 @ w)``),
            a penalty ``n_features`` times larger.
    """

    pre_adv_epochs: int = 5
    epochs_between_regens: int = 5
    partial_fraction: float = 0.2
    partial_batches: int | None = None
    adversarial_on_all: bool = False
    supervised_on_all: bool = False
    sal: bool = True
    attack_epochs: int = 10
    attack_lr: float = 3e-4
    theta_epochs: int = 3
    theta_lr: float = 3e-4
    r_theta_splits: int = 5
    alpha: float = 0.5
    w_init: float = 100.0
    deltaall: float = 20.0
    xa_grad_reduce: float = 0.01
    w_eps: float = 1e-12
    negative_weight_reset: float = 1.0
    w_update: WUpdate = "batch"
    w_reset: WReset = "epoch_end"
    learn_w: bool = True
    theta_optimizer: ThetaOptimizer = "fresh"
    theta_lr_schedule: ThetaLrSchedule = "supervised"
    target_steps: TargetSteps = "authors"
    grad_layers: GradLayers = "all"
    attack_eval_mode: bool = True
    attack_beta2: float = 0.999
    attack_cost: AttackCost = "mean"

    def validate(self) -> SALConfig:
        """Raise ``ValueError`` naming the bad field and its valid values; return self."""
        _check_choices(self)
        if not 0.0 < self.partial_fraction <= 1.0:
            raise ValueError(f"partial_fraction must be in (0, 1], got {self.partial_fraction}.")
        if self.r_theta_splits < 1 or self.theta_epochs < 1 or self.attack_epochs < 0:
            raise ValueError("r_theta_splits and theta_epochs must be >= 1, attack_epochs >= 0.")
        if self.epochs_between_regens < 1:
            raise ValueError("epochs_between_regens must be >= 1.")
        if not 0.0 <= self.attack_beta2 < 1.0:
            raise ValueError(f"attack_beta2 must be in [0, 1), got {self.attack_beta2}.")
        return self

    def identity(self) -> dict[str, Any]:
        """Every field, except a field of :data:`SAL_FIELDS_ADDED_LATER` left at its default."""
        out = asdict(self)
        for name in SAL_FIELDS_ADDED_LATER:
            if out[name] == _SAL_DEFAULTS[name]:
                out.pop(name)
        return out


SAL_FIELDS_ADDED_LATER = ("attack_beta2", "attack_cost")
"""SAL settings added after records existed. Each enters a run's identity only when it is set
away from its default (which is the behaviour before it existed), so stored records keep their
run ids and a run that sets it gets a new one."""

_SAL_DEFAULTS = asdict(SALConfig())


SAL_PRESETS: dict[str, SALConfig] = {
    # Final research configuration: 10 attack steps, 3 theta steps at 3e-4.
    "paper": SALConfig(),
    # The alternative research configuration: 10 attack / 10 theta steps at 5e-5.
    "paper_alt": SALConfig(attack_lr=5e-5, theta_epochs=10, theta_lr=5e-5, pre_adv_epochs=10,
                           epochs_between_regens=10),
    # Two attack steps at 1e-2 move rows by a visible ~0.01-0.02 standardised units. The
    # supervised steps cover every training row (supervised_on_all): with supervised steps on
    # the 20 % high-loss rows only, the random-split loss rose from 0.08 to 0.4-10 within 20
    # adversarial epochs in trials on mp2019, and model selection then kept a warm-up epoch.
    "cpu": SALConfig(pre_adv_epochs=10, supervised_on_all=True, attack_epochs=2, attack_lr=1e-2),
}


@dataclass
class FineTuneConfig:
    """Protocol of traditional fine-tuning on the N target rows.

    The batch size, loss and seed come from the recipe.

    Attributes:
        lrs: Candidate Adam learning rates.
        max_epochs: Largest number of epochs tried.
        patience: Stop a candidate after this many epochs without a better held-out loss.
        holdout_fraction: Part of the N rows held out to choose ``lr`` and epochs.
    """

    lrs: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4)
    max_epochs: int = 200
    patience: int = 20
    holdout_fraction: float = 0.2

    def validate(self) -> FineTuneConfig:
        """Raise ``ValueError`` for an empty grid or a held-out share outside (0, 1)."""
        if not self.lrs or min(self.lrs) <= 0:
            raise ValueError(f"lrs must be a non-empty tuple of positive rates, got {self.lrs}.")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}.")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError("max_epochs and patience must be >= 1.")
        return self

    def identity(self) -> dict[str, Any]:
        """Every field (all of them change the numbers)."""
        out = asdict(self)
        out["lrs"] = list(out["lrs"])
        return out


@dataclass
class CALConfig:
    """A CAL run's settings: the training recipe plus the SAL settings.

    Attributes:
        train: The recipe (shared with the plain baseline).
        sal: The adversarial settings.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    sal: SALConfig = field(default_factory=SALConfig)

    def validate(self) -> CALConfig:
        """Validate both parts; return self."""
        self.train.validate()
        self.sal.validate()
        return self


def sal_preset(name: str, **overrides: Any) -> SALConfig:
    """A copy of a named SAL preset (``paper``, ``paper_alt``, ``cpu``) with field overrides."""
    _choice("SAL preset", name, tuple(SAL_PRESETS))
    return with_fields(SAL_PRESETS[name], overrides)


def with_fields(config: Any, overrides: dict[str, Any]) -> Any:
    """``dataclasses.replace`` that names unknown fields and lists the valid ones."""
    valid = {f.name for f in fields(config)}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ValueError(f"unknown {type(config).__name__} field(s) {bad}; "
                         f"valid: {', '.join(sorted(valid))}.")
    return replace(config, **overrides)


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``field -> value`` overrides into recipe fields and SAL fields.

    Raises:
        ValueError: For a name that is a field of neither, listing both sets of fields.
    """
    train_names = {f.name for f in fields(TrainConfig)}
    sal_names = {f.name for f in fields(SALConfig)}
    bad = sorted(set(overrides) - train_names - sal_names)
    if bad:
        raise ValueError(
            f"unknown config field(s) {bad}. Recipe (TrainConfig) fields: "
            f"{', '.join(sorted(train_names))}; SAL (SALConfig) fields: "
            f"{', '.join(sorted(sal_names))}.")
    return ({k: v for k, v in overrides.items() if k in train_names},
            {k: v for k, v in overrides.items() if k in sal_names})


def _choice(what: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}.")


def choices_of(config_type: type) -> dict[str, tuple[str, ...]]:
    """The choice fields of a config dataclass and their valid values, read from the types."""
    hints = typing.get_type_hints(config_type)
    return {f.name: get_args(hints[f.name]) for f in fields(config_type)
            if typing.get_origin(hints[f.name]) is Literal}


def _check_choices(config: Any) -> None:
    """Raise ``ValueError`` for a choice field whose value its ``Literal`` type does not allow."""
    for name, valid in choices_of(type(config)).items():
        _choice(name, getattr(config, name), valid)
