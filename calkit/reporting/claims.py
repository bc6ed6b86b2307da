"""Claims and questions judged on the records: one row per comparison, with a verdict.

Every table here pairs the runs of a list of :class:`~calkit.reporting.comparisons.Comparison`
by seed and judges each with the one verdict rule of :mod:`calkit.stats` (:func:`stats.verdicts`
against the paper's sign, :func:`stats.directional_verdicts` where the paper has no claim),
Holm-corrected within the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from calkit import stats
from calkit.diagnostics import unlearned_runs
from calkit.methods import control_questions, method_label
from calkit.methods.registry import ControlFamily
from calkit.methods.targeted_select import REFIT_PROBE_VS_FINETUNE, REFIT_STORED_VS_FINETUNE
from calkit.reporting.comparisons import (
    Comparison,
    budget_comparisons,
    control_comparisons,
    dataset_comparisons,
    keyed_frame,
    pair,
    paper_comparisons,
    refit_comparisons,
    select_comparisons,
)
from calkit.reporting.formatting import format_change
from calkit.reporting.records import RunKey, Which, metrics_frame

ClaimFamily = Literal["all", "headline"]
CLAIM_FAMILIES: tuple[ClaimFamily, ...] = ("all", "headline")
"""Holm families of the claims table: ``all`` (every claim the records answer, ablations
included) or ``headline`` (base CAL against the IR-net and targeted CAL against fine-tuning)."""


def withdrawal(records: list[dict], *runs: RunKey) -> str:
    """Why a comparison of ``runs`` says nothing about the method, or "".

    A comparison is withdrawn when a targeted run in it did not learn its own N rows (its
    loss on them ended at or above its warm-up best: :mod:`calkit.diagnostics`): then it
    measures a recipe under which targeting did not happen, not the method.
    """
    for run in runs:
        failed, checked = unlearned_runs(records, run.method, run.target, run.n)
        if failed:
            return (f"{method_label(run.method)} did not learn its {run.n:,} target rows in "
                    f"{failed} of {checked} seeds (own-row loss ended above its warm-up best)")
    return ""


def comparison_rows(records: list[dict], comparisons: Sequence[Comparison],
                    which: Which = "ema") -> list[dict]:
    """Each comparison that has pairs, paired by seed on the loss (not yet judged).

    Returns:
        Dicts with ``claim``, ``paper_change``, ``n``, ``estimate``, ``low``, ``high``,
        ``p_value`` and ``withdrawn`` (:func:`withdrawal`'s reason, or "").
    """
    frame = metrics_frame(records, which)
    rows: list[dict] = []
    if frame.empty:
        return rows
    for c in comparisons:
        found = pair(frame, c.a, c.b, c.set_name, "loss")
        if found["n_pairs"]:
            rows.append({"claim": c.label, "paper_change": c.paper_change,
                         "n": found["n_pairs"], "estimate": found["rel"],
                         "low": found["rel_low"], "high": found["rel_high"],
                         "p_value": found["p_value"], "withdrawn": withdrawal(records, c.a, c.b)})
    return rows


def claims_table(records: list[dict], which: Which = "ema",
                 family: ClaimFamily = "all") -> pd.DataFrame:
    """Each comparative claim of the paper with ours and a verdict, Holm over one family.

    Columns: the paper's relative change, ours (paired by seed, 95 % t interval), the
    Holm-adjusted p-value across the family, a verdict (``holds``, ``reversed``, ``not
    resolved`` or ``withdrawn``; see :func:`calkit.stats.verdicts`) and ``family``.

    Args:
        records: The run records.
        which: ``ema``, ``raw``, ``ema_last`` or ``raw_last``.
        family: :data:`CLAIM_FAMILIES`: ``headline`` keeps the paper's headline claims (base
            CAL vs the IR-net, targeted CAL vs fine-tuning) only, so their Holm correction
            does not run over the ablations.
    """
    if family not in CLAIM_FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(CLAIM_FAMILIES)}.")
    comparisons = paper_comparisons(records)
    if family == "headline":
        comparisons = [c for c in comparisons if c.headline]
    rows = comparison_rows(records, comparisons, which)
    if not rows:
        return pd.DataFrame()
    table = stats.verdicts(pd.DataFrame(rows)).set_index("claim")
    table["family"] = f"{family} ({len(table)} claims)"
    return table


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many rows of a judged table have each verdict.

    How many rows of a judged table have each verdict of :data:`calkit.stats.VERDICTS`
    (``withdrawn`` included); zeros for an empty table.
    """
    counts = table["verdict"].value_counts() if len(table) else pd.Series(dtype=int)
    return {verdict: int(counts.get(verdict, 0))
            for verdict in (*stats.VERDICTS, stats.WITHDRAWN)}


def directional(rows: list[dict]) -> pd.DataFrame:
    """Comparisons without a paper value, judged by direction.

    Holm across the table, then ``lower``/``higher`` where the interval excludes zero and the
    adjusted p is below 0.05, else ``not resolved`` (:func:`calkit.stats.directional_verdicts`).
    """
    if not rows:
        return pd.DataFrame()
    table = stats.directional_verdicts(pd.DataFrame(rows).drop(columns="paper_change"))
    return table.set_index("claim")


def controls_table(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """The controls' paired comparisons (:func:`control_comparisons`).

    Columns: the relative change of the second run's loss, its 95 % t interval, the
    Holm-adjusted p across this table, and ``lower``/``higher``/``not resolved``.
    """
    return directional(comparison_rows(records, control_comparisons(records), which))


def budget_table(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """:func:`budget_comparisons` paired by seed, Holm-corrected as a family of their own."""
    return directional(comparison_rows(records, budget_comparisons(records), which))


def select_controls_table(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """:func:`select_comparisons` paired by seed, Holm-corrected as a family of their own."""
    return directional(comparison_rows(records, select_comparisons(records), which))


def refit_probe_table(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """:func:`refit_comparisons` paired by seed, Holm-corrected as a family of their own."""
    return directional(comparison_rows(records, refit_comparisons(records), which))


def refit_probe_conclusion(table: pd.DataFrame, same: int, paired: int) -> str:
    """The refit-horizon probe's declared reading rule, applied (results chapter).

    If the probe's change against fine-tuning has the sign of the stored runs' on the same seeds
    and its 95 % interval excludes zero, the refit's schedule does not explain that verdict;
    otherwise it may, and the verdict waits for a rerun with the search's schedule. A probe
    whose search chose otherwise than its stored twin (``same < paired``) compares more than the
    refit, and the rule is not applied.

    Args:
        table: :func:`refit_probe_table`.
        same: Probe runs whose choice matched their twin's
            (:func:`calkit.diagnostics.same_choices`).
        paired: Probe runs with a stored twin.
    """
    def row(question: str) -> pd.Series | None:
        hits = table[table.index.str.startswith(f"{question} on ")] if len(table) else table
        return hits.iloc[0] if len(hits) else None

    stored = row(REFIT_STORED_VS_FINETUNE.question)
    probe = row(REFIT_PROBE_VS_FINETUNE.question)
    if stored is None or probe is None or paired == 0:
        return "no probe runs yet"
    if same < paired:
        return (f"the probe's search chose otherwise than the stored run in {paired - same} of "
                f"{paired} seeds, so the pairs compare more than the refit: the rule is not "
                "applied")
    where = str(stored.name).split(" on ", 1)[1]
    kept = (stats.interval_side(probe["low"], probe["high"])
            == np.sign(stored["estimate"]) != 0)
    checked = f"the probe's search chose as the stored run in {same} of {paired} seeds"
    return (f"by the declared rule the refit's schedule does not explain the verdict on {where} "
            f"({checked})" if kept
            else f"by the declared rule the refit's schedule may explain the verdict on {where}, "
            f"which waits for a rerun with the search's schedule ({checked})")


_READING_ORDER = ("lower", "higher", "not resolved", stats.WITHDRAWN)


def control_readings(table: pd.DataFrame, family: ControlFamily) -> list[str]:
    """What a family's control table answers, one sentence per declared question.

    Each sentence groups the question's rows by verdict (lower, higher, not resolved,
    withdrawn) and gives every row's change of the subject's loss with its 95 % interval and
    seeds; the last names the Holm family, so a quoted verdict carries it. Questions with no
    row in ``table`` are left out.

    Args:
        table: The family's directional table (e.g. :func:`select_controls_table`), indexed
            by ``"<question> on <where>"``.
        family: The family whose declared questions (:func:`calkit.methods.control_questions`)
            the table answers.
    """
    out = []
    for question in control_questions(family):
        prefix = f"{question.question} on "
        rows = table[table.index.str.startswith(prefix)] if len(table) else table
        if not len(rows):
            continue
        clauses = []
        for verdict in _READING_ORDER:
            hits = rows[rows["verdict"] == verdict]
            if len(hits):
                places = " and ".join(
                    f"{r.Index[len(prefix):]} ({format_change(r.estimate, r.low, r.high)}, "
                    f"{int(r.n)} seeds)" for r in hits.itertuples())
                clauses.append(f"{verdict} on {places}")
        out.append(f"{question.question}: {'; '.join(clauses)}.")
    if out:
        out.append(f"Holm over the {len(table)} comparisons of the {family} family.")
    return out


def dataset_claims(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """Paired comparisons of :func:`dataset_comparisons`.

    Relative change of the declared loss, 95 % t interval, Holm across the table,
    ``lower``/``higher``/``not resolved``.
    """
    return directional(comparison_rows(records, dataset_comparisons(records), which))


def paired_points(records: list[dict], comparisons: Sequence[Comparison],
                  which: Which = "ema") -> pd.DataFrame:
    """Per-seed relative changes ``b / a - 1`` of each comparison (for dot plots)."""
    frame = metrics_frame(records, which)
    out = []
    if frame.empty:
        return pd.DataFrame(columns=["claim", "seed", "change"])
    keyed = keyed_frame(frame)
    for c in comparisons:
        sub = keyed[keyed["set"] == c.set_name]
        left = sub[sub["key"] == c.a.frame_key].set_index("seed")["loss"]
        right = sub[sub["key"] == c.b.frame_key].set_index("seed")["loss"]
        both = left.index.intersection(right.index)
        out += [{"claim": c.label, "seed": int(s), "change": right[s] / left[s] - 1}
                for s in both]
    return pd.DataFrame(out, columns=["claim", "seed", "change"])


def claims_points(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """:func:`paired_points` of every claim of the paper the records answer."""
    return paired_points(records, paper_comparisons(records), which)


def controls_points(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """:func:`paired_points` of every control question the records answer."""
    return paired_points(records, control_comparisons(records), which)
