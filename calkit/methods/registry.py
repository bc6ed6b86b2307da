"""The method registry: every training method is declared here once.

A :class:`Method` says what a method is called, how it departs from its profile's recipe
and SAL settings, how it runs, whether it starts from a trained baseline and which rows of
the paper's tables it answers. The run config check, the run identity, the sweep's ordering,
the notebooks' parameter check and the reporting all read this registry; adding a method is
one :func:`register` call next to its run function.

The reporting's comparisons come from here too: the paper's tables (:data:`PAPER_TABLES`,
each method's :attr:`Method.paper_rows`), the baselines (:func:`methods_of_kind`) and the
questions the controls ask (:func:`declare_control`, with config-override runs named by a
:class:`Variant` rather than a string), so :mod:`calkit.reporting` types no method name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from torch import nn

if TYPE_CHECKING:
    from calkit.engine import Snapshot

FAMILIES = ("plain", "cal", "finetune")
KINDS = ("method", "control", "baseline")
MethodKind = Literal["method", "control", "baseline"]
"""What a method is for: ``method`` (the paper's methods and their variants of ours),
``control`` (a run that isolates one part of CAL) or ``baseline`` (an OOD method of the
literature, compared with the plain IR-net in the "what helps" chapter)."""
PaperTableName = Literal["base", "targeted", "ablation"]


@dataclass
class MethodInputs:
    """What a method's run function receives from the runner.

    Attributes:
        X: Standardised features ``(n, d)``.
        y: Targets ``(n,)``.
        masks: Boolean set flags (with ``train`` and the validation splits).
        model: A freshly initialised network (seeded), or ``None`` for methods that start
            from the baseline.
        train: The resolved recipe.
        sal: The resolved SAL settings (CAL family), else ``None``.
        finetune: The resolved fine-tuning protocol (fine-tune family), else ``None``.
        target_set: Canonical target set name, if the method targets one.
        n_target: Number of target rows.
        target_seed: Seed of the draw of the target rows (the same rows for every method).
        baseline: Returns the baseline's ``(raw, ema)`` models (fine-tune family).
        settings: The method's own settings (:attr:`Method.settings`), e.g. a baseline's
            hyperparameters; empty for methods that have none.
        snapshot: Where a method that trains one network in one fit (the IR-net, the CAL
            family, IR-net + N rows) keeps its state after every epoch, so that an interrupted
            run resumes there; ``None``: nowhere. Methods of several fits (ensembles, searches)
            leave it unused: one file cannot hold several fits.
    """

    X: np.ndarray
    y: np.ndarray
    masks: dict[str, np.ndarray]
    model: nn.Module | None
    train: Any
    sal: Any = None
    finetune: Any = None
    target_set: str | None = None
    n_target: int = 0
    target_seed: int = 3141
    baseline: Callable[[], tuple[nn.Module, nn.Module]] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    snapshot: Snapshot | None = None

    @property
    def fresh_model(self) -> nn.Module:
        """The freshly initialised network; an error for methods that start from the baseline."""
        if self.model is None:
            raise ValueError("this method trains a fresh network, but the runner gave none "
                             "(its registry entry says needs_baseline=True).")
        return self.model

    @property
    def target(self) -> str:
        """The canonical target set name; an error for methods without a target."""
        if self.target_set is None:
            raise ValueError("this method needs a target set (RunConfig.target_set).")
        return self.target_set

    def baseline_models(self) -> tuple[nn.Module, nn.Module]:
        """The baseline's ``(raw, ema)`` models; an error where the runner gave no baseline."""
        if self.baseline is None:
            raise ValueError("this method starts from the baseline, but the runner gave none "
                             "(its registry entry says needs_baseline=False).")
        return self.baseline()


@dataclass
class MethodOutput:
    """What a method's run function returns to the runner.

    Attributes:
        model: The raw model at the selected epoch.
        ema_model: The EMA model at the selected epoch (the paper's reported model).
        history: Per-epoch history (empty for methods without epochs of their own).
        eval_masks: The sets to evaluate (targeted methods remove their N rows).
        run_info: Selection and stopping facts (``selected_epoch``, ``epochs_run``, ...).
        extra: Method-specific record fields (cost weights, target rows, fine-tune choice).
        last_model: The raw model after the last epoch (``None``: same as ``model``).
        last_ema_model: The EMA after the last epoch (``None``: same as ``ema_model``).
    """

    model: nn.Module
    ema_model: nn.Module
    history: pd.DataFrame
    eval_masks: Mapping[str, np.ndarray]
    run_info: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    last_model: nn.Module | None = None
    last_ema_model: nn.Module | None = None


@dataclass(frozen=True)
class Method:
    """One registered training method.

    Attributes:
        name: Registry key, used in run configs, grids, record ids and notebooks.
        label: Short label for tables and figures.
        family: ``plain``, ``cal`` or ``finetune``: which run function and config parts apply.
        run: ``MethodInputs -> MethodOutput``.
        description: One line for the book's method table.
        recipe_changes: Deliberate departures from the profile's recipe (field -> value).
        sal_changes: Departures from the profile's SAL settings (CAL family).
        why: Why those departures exist (shown with the config in the book).
        model_preset: A model preset that replaces the profile's (``None`` keeps it).
        needs_target: Whether the run needs ``target_set`` and ``n_target``.
        needs_baseline: Whether the run starts from the trained baseline of the same seed.
        saves_checkpoint: Whether the run stores its weights (methods that others start from).
        paper_rows: Tables of the paper the method has rows in (``base``, ``targeted``,
            ``ablation``).
        settings: The method's own settings beyond the recipe (e.g. a baseline's
            hyperparameters), passed to its run function as :attr:`MethodInputs.settings` and
            part of the run identity (as ``method_settings``) when non-empty.
        kind: :data:`MethodKind`: ``method``, ``control`` or ``baseline``.
        supersedes: A method with paper rows whose claims this method's runs answer instead,
            on each target and N where they cover at least as many seeds
            (:func:`calkit.reporting.comparisons.claim_subject`); "" for none.
    """

    name: str
    label: str
    family: str
    run: Callable[[MethodInputs], MethodOutput]
    description: str
    recipe_changes: Mapping[str, Any] = field(default_factory=dict)
    sal_changes: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""
    model_preset: str | None = None
    needs_target: bool = False
    needs_baseline: bool = False
    saves_checkpoint: bool = False
    paper_rows: tuple[PaperTableName, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    kind: MethodKind = "method"
    supersedes: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: unknown family {self.family!r}; "
                             f"valid: {', '.join(FAMILIES)}.")
        if self.kind not in KINDS:
            raise ValueError(f"method {self.name!r}: unknown kind {self.kind!r}; "
                             f"valid: {', '.join(KINDS)}.")
        unknown = [t for t in self.paper_rows if t not in PAPER_TABLES]
        if unknown:
            raise ValueError(f"method {self.name!r}: unknown paper table(s) {unknown}; "
                             f"valid: {', '.join(PAPER_TABLES)}.")
        if self.sal_changes and self.family != "cal":
            raise ValueError(f"method {self.name!r}: only CAL-family methods have SAL settings.")


_REGISTRY: dict[str, Method] = {}
REGISTRY: Mapping[str, Method] = MappingProxyType(_REGISTRY)
"""Read-only view of every registered method, in registration order."""


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a name may be registered once)."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered.")
    _REGISTRY[method.name] = method
    return method


def method_names() -> tuple[str, ...]:
    """Names of every registered method, in registration order."""
    return tuple(_REGISTRY)


def get_method(name: str) -> Method:
    """The registered method called ``name``.

    Raises:
        ValueError: For an unknown name, listing the valid ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}. Valid methods: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def method_label(key: str) -> str:
    """Readable label of a method key such as ``cal[supervised_on_all=False]``."""
    base, _, variant = key.partition("[")
    label = _REGISTRY[base].label if base in _REGISTRY else base
    if variant:
        variant = variant.rstrip("]")
        label += ", " + VARIANT_LABELS.get(variant, variant)
    return label


VARIANT_LABELS = {"supervised_on_all=False": "literal loop"}
"""Short names of config-override variants that the grids run."""


def methods_of_kind(kind: MethodKind) -> tuple[str, ...]:
    """Names of the registered methods of one :data:`MethodKind`, in registration order."""
    return tuple(name for name, method in _REGISTRY.items() if method.kind == kind)


@dataclass(frozen=True)
class PaperTable:
    """One comparative table of the paper: its methods are judged against ``reference``.

    Attributes:
        name: The table (the value methods list in :attr:`Method.paper_rows`).
        reference: The method every other method of the table is compared with.
        reference_label: How a claim names the reference ("" for its method label).
        targeted: Whether the table's runs target a set (judged on that set).
    """

    name: PaperTableName
    reference: str
    reference_label: str = ""
    targeted: bool = False


PAPER_TABLES: Mapping[str, PaperTable] = MappingProxyType({
    "base": PaperTable("base", "baseline"),
    "targeted": PaperTable("targeted", "finetune", "fine-tuning", targeted=True),
    "ablation": PaperTable("ablation", "cal"),
})
"""The paper's comparative tables; which methods have rows in them is :attr:`Method.paper_rows`."""


def paper_table_methods(table: PaperTableName) -> tuple[str, ...]:
    """The registered methods with rows in one of the paper's tables, in registration order."""
    return tuple(name for name, method in _REGISTRY.items() if table in method.paper_rows)


def successor(name: str) -> str:
    """The registered method that supersedes ``name`` (:attr:`Method.supersedes`), or ""."""
    found = [m.name for m in _REGISTRY.values() if m.supersedes == name]
    if len(found) > 1:
        raise ValueError(f"methods {found} all supersede {name!r}; at most one may.")
    return found[0] if found else ""


def paper_table_subjects(table: PaperTableName) -> tuple[str, ...]:
    """The methods a paper table compares with its reference (all of its methods but that one)."""
    reference = PAPER_TABLES[table].reference
    return tuple(name for name in paper_table_methods(table) if name != reference)


@dataclass(frozen=True)
class Variant:
    """A registered method run with config overrides, as a grid's ``overrides`` declare it.

    Attributes:
        method: The registered method.
        overrides: ``(field, value)`` pairs, sorted by field as the run request stores them.
    """

    method: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """The method key of the records, e.g. ``targeted[patience=60]``.

        The method key of the records (``targeted[patience=60]``; the name alone without
        overrides), as :func:`calkit.diagnostics.method_key` writes it.
        """
        if not self.overrides:
            return self.method
        return self.method + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.overrides)) + "]"


ControlFamily = Literal["controls", "budget", "select", "refit"]


@dataclass(frozen=True)
class ControlQuestion:
    """What a control asks: is ``subject``'s loss lower or higher than ``reference``'s?

    Attributes:
        question: The comparison in words, e.g. ``"targeted CAL vs no attack"``.
        reference: The run compared against (a method or a :class:`Variant`).
        subject: The run whose relative change is reported.
        targeted: Whether both runs target a set (asked per target set and N, on the
            target set) or not (asked on the untargeted sets).
        family: The table the question belongs to (each is Holm-corrected on its own).
    """

    question: str
    reference: Variant
    subject: Variant
    targeted: bool
    family: ControlFamily = "controls"


_CONTROLS: list[ControlQuestion] = []


def declare_control(question: ControlQuestion) -> ControlQuestion:
    """Add a control's question to the registry (next to the control's method)."""
    if any(q.question == question.question and q.family == question.family for q in _CONTROLS):
        raise ValueError(f"control question {question.question!r} is already declared.")
    _CONTROLS.append(question)
    return question


def control_questions(family: ControlFamily = "controls",
                      targeted: bool | None = None) -> tuple[ControlQuestion, ...]:
    """The declared control questions of one family, in declaration order.

    Args:
        family: ``controls`` or ``budget``.
        targeted: Only targeted (``True``) or untargeted (``False``) questions; ``None``: both.
    """
    return tuple(q for q in _CONTROLS if q.family == family
                 and (targeted is None or q.targeted == targeted))
