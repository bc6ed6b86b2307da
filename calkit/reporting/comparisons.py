"""Comparisons between two kinds of run, generated from the method registry.

A :class:`Comparison` names a reference run kind ``a`` and a subject run kind ``b`` (each a
:class:`~calkit.reporting.records.RunKey`), the set they are judged on and the paper's relative
change of ``b`` against ``a`` (NaN where the paper makes no claim). Nothing here types a method
name: the paper's comparisons come from :attr:`calkit.methods.Method.paper_rows` and
:data:`calkit.methods.PAPER_TABLES`, the controls' from the questions the controls declare
(:func:`calkit.methods.control_questions`). :func:`pair` judges one comparison on a long
frame: paired by seed, 95 % t interval (:mod:`calkit.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit import stats
from calkit.methods import (
    PAPER_TABLES,
    ControlQuestion,
    control_questions,
    method_label,
    methods_of_kind,
    paper_table_subjects,
    successor,
)
from calkit.methods.controls import FULL_BUDGET_TARGETED as _FULL_BUDGET
from calkit.methods.controls import LITERAL_TARGETED as _LITERAL
from calkit.methods.registry import ControlFamily
from calkit.reporting.paper import paper_change
from calkit.reporting.records import VALIDATION, RunKey, as_records, ood_sets_of, targeted_pairs

ComparisonFamily = Literal["base", "targeted", "ablation", "controls", "budget", "select", "refit",
                           "dataset"]
"""Where a comparison comes from: one of the paper's tables, the controls, the early-stopping
budget study, the controls of the redone verdict (targeted CAL with its recipe chosen on held-out
rows), or the paper's comparisons on another data set."""

CLAIM_SETS = (col.COVARIATE, col.PRIOR, col.RELATION, col.HIGH_GAP, VALIDATION)
"""Sets on which the base table's claims are judged."""
ABLATION_CLAIM_SETS = (col.COVARIATE, col.PRIOR, col.RELATION)
"""Sets on which the ablations' claims are judged."""
CONTROL_SETS = (col.COVARIATE, col.PRIOR, col.RELATION, VALIDATION)
"""Sets on which the untargeted controls are judged."""

ABLATIONS: tuple[str, ...] = paper_table_subjects("ablation")
"""The paper's ablations (the registry's ``ablation`` rows besides CAL)."""
BASELINES: tuple[str, ...] = methods_of_kind("baseline")
"""The OOD baselines of the "what helps" chapter, each compared with the plain IR-net."""
LITERAL_TARGETED = _LITERAL.key
"""Targeted CAL in the authors' literal loop: supervised steps on the high-loss rows only."""
FULL_BUDGET_TARGETED = _FULL_BUDGET.key
"""Targeted CAL with a patience equal to the cpu budget: early stopping never ends it."""


@dataclass(frozen=True)
class Comparison:
    """One paired comparison: ``b``'s loss relative to ``a``'s on one set.

    Attributes:
        label: The claim or question, e.g. ``"CAL vs IR-net on prior (rare elements)"``.
        a: The reference run kind.
        b: The subject run kind (its relative change ``b / a - 1`` is reported).
        set_name: The set both are judged on.
        paper_change: The paper's relative change of ``b`` against ``a`` (NaN: no claim).
        family: :data:`ComparisonFamily`.
    """

    label: str
    a: RunKey
    b: RunKey
    set_name: str
    paper_change: float = float("nan")
    family: ComparisonFamily = "controls"

    @property
    def headline(self) -> bool:
        """Whether it is a headline claim: base CAL vs the IR-net, targeted vs fine-tuning."""
        return self.family in ("base", "targeted")


def _versus(subject: str, table: str) -> str:
    """How a claim names ``subject`` against the reference of one of the paper's tables."""
    reference = PAPER_TABLES[table]
    name = reference.reference_label or method_label(reference.reference)
    return f"{method_label(subject)} vs {name}"


def paper_comparisons(records: list[dict]) -> list[Comparison]:
    """The paper's comparative claims that the records can answer.

    One per method of each of the paper's tables against the table's reference (the
    registry's :attr:`~calkit.methods.Method.paper_rows`): the base table on
    :data:`CLAIM_SETS`, the targeted table on each ``(target, N)`` the records ran, the
    ablations on :data:`ABLATION_CLAIM_SETS`. Comparisons the paper makes no claim about (no
    reported value, e.g. another data set's targets) are left out.
    """
    out = []
    base = RunKey(PAPER_TABLES["base"].reference)
    for set_name in CLAIM_SETS:
        for subject in paper_table_subjects("base"):
            out.append(Comparison(f"{_versus(subject, 'base')} on {col.set_label(set_name)}",
                                  base, RunKey(subject), set_name,
                                  paper_change(base.method, subject, set_name), "base"))
    out += _targeted_comparisons(records, "targeted", with_paper=True)
    cal = RunKey(PAPER_TABLES["ablation"].reference)
    for subject in paper_table_subjects("ablation"):
        for set_name in ABLATION_CLAIM_SETS:
            out.append(Comparison(f"{_versus(subject, 'ablation')} on {col.set_label(set_name)}",
                                  cal, RunKey(subject), set_name,
                                  paper_change(cal.method, subject, set_name), "ablation"))
    return [c for c in out if np.isfinite(c.paper_change)]


def _questions(records: list[dict], family: ControlFamily) -> list[Comparison]:
    """The declared control questions of one family, on their sets and targets."""
    out = []
    for set_name in CONTROL_SETS:
        for q in control_questions(family, targeted=False):
            out.append(_asked(q, f"on {col.set_label(set_name)}", set_name, "", 0, family))
    for target, n in targeted_pairs(records):
        for q in control_questions(family, targeted=True):
            out.append(_asked(q, f"on {col.set_label(target)}, N={n}", target, target, n,
                              family))
    return out


def _asked(question: ControlQuestion, where: str, set_name: str, target: str, n: int,
           family: ControlFamily) -> Comparison:
    return Comparison(f"{question.question} {where}", RunKey(question.reference.key, target, n),
                      RunKey(question.subject.key, target, n), set_name, family=family)


def control_comparisons(records: list[dict]) -> list[Comparison]:
    """What the controls ask (the paper has no claim), from the controls' declared questions.

    Untargeted questions on :data:`CONTROL_SETS`, then targeted ones per ``(target, N)``.
    """
    return _questions(records, "controls")


def budget_comparisons(records: list[dict]) -> list[Comparison]:
    """Does early stopping cut targeted CAL short? (``grids/targeted_budget.yaml``)."""
    return _questions(records, "budget")


def select_comparisons(records: list[dict]) -> list[Comparison]:
    """The redone verdict's controls (``grids/verdict_select.yaml``).

    Does targeted CAL with its chosen recipe beat its own no-attack run, and the IR-net trained
    with the N rows mixed in?
    """
    return _questions(records, "select")


def refit_comparisons(records: list[dict]) -> list[Comparison]:
    """The refit-horizon probe (``grids/refit_horizon_probe.yaml``).

    Does refitting targeted CAL's chosen recipe on the search's schedule change its loss, and its
    change against fine-tuning, on the seeds whose stored refit was shortest?
    """
    return _questions(records, "refit")


def dataset_comparisons(records: list[dict]) -> list[Comparison]:
    """The paper's headline comparisons on any data set (no paper values).

    The base table's methods against its reference on every OOD set and the validation
    splits, the targeted table's on every target.
    """
    base = RunKey(PAPER_TABLES["base"].reference)
    out = [Comparison(f"{_versus(subject, 'base')} on {col.set_label(name)}", base,
                      RunKey(subject), name, family="dataset")
           for name in [*ood_sets_of(records), VALIDATION]
           for subject in paper_table_subjects("base")]
    return out + _targeted_comparisons(records, "dataset", with_paper=False)


def claim_subject(records: list[dict], subject: str, target: str, n: int) -> str:
    """The method whose runs answer ``subject``'s claim on ``(target, n)``.

    The method that supersedes ``subject`` in the registry (:attr:`Method.supersedes`) once its
    runs on that target and N (without overrides) cover at least as many seeds as
    ``subject``'s, so that the switch never answers a claim on fewer seeds; else ``subject``.
    One rule for every claim, decided here.
    """
    newer = successor(subject)
    if not newer:
        return subject
    seeds = _plain_seeds(records, newer, target, n)
    return newer if seeds and seeds >= _plain_seeds(records, subject, target, n) else subject


def _plain_seeds(records: list[dict], method: str, target: str, n: int) -> int:
    """Seeds of ``method``'s runs on ``(target, N)`` without overrides."""
    return len({r.seed for r in as_records(records) if r.method == method
                and r.target_set == target and r.n_target == n and not r.has_overrides})


def claim_sources(records: list[dict]) -> pd.DataFrame:
    """Which runs answer each targeted claim now, and how far the runs that supersede them are.

    One row per ``(subject, target set, N)`` of the paper's targeted table whose subject has a
    successor in the registry: ``subject``, ``successor``, ``target_set``, ``n_target``, the
    seeds of each (``subject_seeds``, ``successor_seeds``, without overrides) and ``reads``,
    the method :func:`claim_subject` answers the claim with.
    """
    rows = []
    for target, n in targeted_pairs(records):
        for subject in paper_table_subjects("targeted"):
            newer = successor(subject)
            if not newer:
                continue
            rows.append({"subject": subject, "successor": newer, "target_set": target,
                         "n_target": n,
                         "subject_seeds": _plain_seeds(records, subject, target, n),
                         "successor_seeds": _plain_seeds(records, newer, target, n),
                         "reads": claim_subject(records, subject, target, n)})
    return pd.DataFrame(rows, columns=["subject", "successor", "target_set", "n_target",
                                       "subject_seeds", "successor_seeds", "reads"])


def claim_sources_summary(sources: pd.DataFrame) -> str:
    """One clause on :func:`claim_sources`: the claims that moved and how far the others are.

    E.g. "1 of 4 targeted claims read the redone runs (relation (piezo), N=128, with 10 seeds);
    the other 3 read the earlier runs until the redone ones cover as many seeds (...)".
    """
    if sources.empty:
        return ""
    moved = sources[sources["reads"] == sources["successor"]]
    waiting = sources[sources["reads"] != sources["successor"]]

    def where(row) -> str:
        return f"{col.set_label(row.target_set)}, N={row.n_target}"

    text = f"{len(moved)} of {len(sources)} targeted claims read the redone runs"
    if len(moved):
        text += " (" + "; ".join(f"{where(r)}, with {r.successor_seeds} seeds"
                                 for r in moved.itertuples()) + ")"
    if len(waiting):
        progress = "; ".join(f"{where(r)}: {r.successor_seeds} of {r.subject_seeds} seeds"
                             for r in waiting.itertuples())
        others = "the other one reads" if len(waiting) == 1 else f"the other {len(waiting)} read"
        text += (f"; {others} the earlier runs until the redone ones cover as many seeds "
                 f"({progress})")
    return text


def _targeted_comparisons(records: list[dict], family: ComparisonFamily,
                          with_paper: bool) -> list[Comparison]:
    """The targeted table's methods against its reference on every target and N of the records.

    With ``with_paper`` (the paper's claims), each claim reads :func:`claim_subject`'s runs and
    keeps the paper's value for the method it names.
    """
    reference = PAPER_TABLES["targeted"].reference
    out = []
    for target, n in targeted_pairs(records):
        for subject in paper_table_subjects("targeted"):
            runs = claim_subject(records, subject, target, n) if with_paper else subject
            out.append(Comparison(f"{_versus(runs, 'targeted')} on {col.set_label(target)}, N={n}",
                                  RunKey(reference, target, n), RunKey(runs, target, n), target,
                                  paper_change(reference, subject, target, target, n)
                                  if with_paper else np.nan, family))
    return out


def keyed_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A long metrics frame with a ``key`` column (:attr:`RunKey.frame_key`) per row."""
    return frame.assign(key=frame["method"] + "@" + frame["target_set"] + ":"
                        + frame["n_target"].astype(str))


def pair(frame: pd.DataFrame, a: RunKey, b: RunKey, set_name: str,
         metric: str = "loss") -> dict[str, float]:
    """Paired comparison of run kinds ``a`` and ``b`` on one set of a long metrics frame.

    Returns:
        ``n_pairs``, the relative change ``rel`` with ``rel_low``/``rel_high``, the difference
        ``diff`` with its interval, and ``p_value`` (of the log ratios); NaN and 0 pairs when
        either run kind is missing.
    """
    keyed = keyed_frame(frame)
    ka, kb = a.frame_key, b.frame_key
    sub = keyed[(keyed["set"] == set_name) & keyed["key"].isin([ka, kb])]
    empty = {"n_pairs": 0, "rel": np.nan, "rel_low": np.nan, "rel_high": np.nan,
             "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "p_value": np.nan}
    if sub["key"].nunique() < 2:
        return empty
    row = stats.summarise_pairs(sub, [(ka, kb, set_name)], by="key", value=metric).iloc[0]
    return {"n_pairs": int(row["n"]), "rel": row["rel"], "rel_low": row["rel_low"],
            "rel_high": row["rel_high"], "diff": row["diff"], "diff_low": row["diff_low"],
            "diff_high": row["diff_high"], "p_value": row["p_value_rel"]}
