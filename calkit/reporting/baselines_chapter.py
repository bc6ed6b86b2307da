"""The "what helps out of distribution" chapter: the OOD baselines against the plain IR-net.

The baselines are the registry's methods of kind ``baseline``
(:func:`calkit.methods.methods_of_kind`); every one is compared with the IR-net on every set,
paired by seed, and its spread (where it has one) is checked as an OOD flag.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit import stats
from calkit.methods import PAPER_TABLES, method_label, paper_table_subjects
from calkit.reporting.comparisons import BASELINES, pair
from calkit.reporting.formatting import change_cells, format_change
from calkit.reporting.records import (
    VALIDATION,
    RunKey,
    Which,
    as_records,
    metrics_frame,
    ood_sets_of,
    records_of_methods,
    seed_summary,
    select_records,
    summary_stats,
)

OOD_TABLE_SETS = (col.COVARIATE, col.PRIOR, col.EXTREME, col.RELATION, col.HIGH_GAP,
                  col.GAP_PRIOR, VALIDATION)
SPREAD_METHODS = ("ensemble", "rf")
"""Baselines whose predictions come with a spread (an ensemble's, a forest's trees')."""
REFERENCE = PAPER_TABLES["base"].reference
"""The plain IR-net, which every method of the chapter is compared with."""


def chapter_methods() -> tuple[str, ...]:
    """The chapter's methods: the IR-net, base CAL and every registered baseline."""
    return (REFERENCE, *paper_table_subjects("base"), *BASELINES)


def baseline_records(records: list[dict], seeds: Iterable[int], dataset: str = "mp2019"
                     ) -> list[dict]:
    """The chapter's records of one data set.

    The chapter's records: clean protocol, one data set, its methods without overrides, the
    grid's declared seeds.
    """
    return records_of_methods(select_records(records, protocol="clean", dataset=dataset),
                              chapter_methods(), seeds)


def seeds_per_method(records: list[dict]) -> pd.Series:
    """How many seeds each of the chapter's methods has (0 for one without records)."""
    typed = as_records(records)
    return pd.Series({m: len({rec.seed for rec in typed if rec.method == m})
                      for m in chapter_methods()}, name="seeds")


def table_sets(records: list[dict], dataset: str = "mp2019") -> tuple[str, ...]:
    """The sets of the chapter's table.

    The sets of the chapter's table: :data:`OOD_TABLE_SETS` on mp2019, else every OOD set the
    records evaluated and the validation splits.
    """
    return OOD_TABLE_SETS if dataset == "mp2019" else (*ood_sets_of(records), VALIDATION)


def versus_baseline_table(records: list[dict],
                          methods: tuple[str, ...] = (*paper_table_subjects("base"), *BASELINES),
                          sets: tuple[str, ...] = OOD_TABLE_SETS,
                          which: Which = "ema") -> pd.DataFrame:
    """Every method against the plain IR-net on every set, paired by seed.

    Rows ``(set, method)`` (the IR-net included, with no comparison); columns: mean and std
    of the loss over seeds, seeds, and the paired relative change against the IR-net with
    its 95 % t interval and a Holm-adjusted p across the whole table. ``best`` marks, per
    set, the lowest mean when its paired interval against the runner-up excludes zero.
    """
    summary = seed_summary(records, which, "loss")
    frame = metrics_frame(records, which)
    rows = []
    for set_name in sets:
        for method in (REFERENCE, *methods):
            mean, std, n = summary_stats(summary, RunKey(method), set_name)
            if not n:
                continue
            row = {"set": set_name, "method": method, "mean": mean, "std": std, "n": n}
            if method != REFERENCE:
                row.update(pair(frame, RunKey(REFERENCE), RunKey(method), set_name, "loss"))
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    has_p = table["p_value"].notna() if "p_value" in table else pd.Series(False, table.index)
    table["p_holm"] = np.nan
    if has_p.any():
        table.loc[has_p, "p_holm"] = stats.holm(table.loc[has_p, "p_value"].to_numpy())
    table["best"] = False
    for set_name, group in table.groupby("set", sort=False):
        if len(group) < 2:
            continue
        ranked = group.sort_values("mean")
        first, second = ranked.iloc[0]["method"], ranked.iloc[1]["method"]
        found = pair(frame, RunKey(first), RunKey(second), set_name, "loss")
        if found["n_pairs"] >= 2 and found["rel_low"] > 0:
            table.loc[ranked.index[0], "best"] = True
    return table.set_index(["set", "method"])


def versus_baseline_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """The compared rows of a versus-baseline table, judged.

    The compared rows of :func:`versus_baseline_table` with a ``side`` column from the one
    verdict rule (:func:`calkit.stats.resolved_side`: -1 resolved lower, 1 resolved higher, 0
    not resolved) and a ``resolved`` flag.
    """
    if not len(table):
        return pd.DataFrame(columns=["rel", "side", "resolved"])
    compared = table.dropna(subset=["rel"])
    side = stats.resolved_side(compared["rel_low"], compared["rel_high"], compared["p_holm"])
    return compared.assign(side=side, resolved=side != 0)


def verdict_summary(table: pd.DataFrame) -> dict[str, int]:
    """How many comparisons with the IR-net are resolved, and to which side.

    Counts of :func:`versus_baseline_verdicts`: ``total`` comparisons, resolved ``lower`` and
    ``higher``, and ``resolved`` (either side).
    """
    judged = versus_baseline_verdicts(table)
    lower, higher = int((judged["side"] < 0).sum()), int((judged["side"] > 0).sum())
    return {"total": len(judged), "lower": lower, "higher": higher, "resolved": lower + higher}


def verdict_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The judged comparisons with the IR-net, for a page.

    :func:`versus_baseline_verdicts` for a page: the change, its interval, seeds, Holm p and
    ``resolved``/``not resolved``, set labels.
    """
    judged = versus_baseline_verdicts(table)
    shown = judged.assign(verdict=judged["resolved"].map({True: "resolved",
                                                         False: "not resolved"}))
    return change_cells(shown, "rel", "rel_low", "rel_high").rename(index=col.set_label, level=0)


def display_versus_baseline(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Methods as rows, sets as columns, for a page.

    Each cell: ``mean`` and the paired change against the IR-net; the best method of a set
    in bold where it is resolved against the runner-up.
    """
    if table.empty:
        return table
    cells: dict[tuple[str, str], str] = {}
    for (set_name, method), row in table.iterrows():
        text = f"{row['mean']:.{digits}f}"
        if method != REFERENCE and np.isfinite(row.get("rel", np.nan)):
            text += f" ({format_change(row['rel'], row['rel_low'], row['rel_high'])})"
        cells[(method_label(method), col.set_label(set_name))] = \
            f"**{text}**" if row["best"] else text
    out = pd.Series(cells).unstack()
    order = [method_label(m) for m in dict.fromkeys(table.index.get_level_values("method"))]
    sets = [col.set_label(s) for s in dict.fromkeys(table.index.get_level_values("set"))]
    return out.reindex(index=order, columns=sets).fillna("-")


def ood_flag_table(records: list[dict], methods: tuple[str, ...] = SPREAD_METHODS
                   ) -> pd.DataFrame:
    """How well each model's spread flags OOD rows and ranks its own errors.

    Rows ``(method, set)``; columns: AUROC of telling the set's rows from validation rows by
    the spread (0.5 is chance), and the mean absolute error of the most and least confident
    halves of the set, each as mean and std over seeds.
    """
    rows = []
    for rec in as_records(records):
        if rec.method not in methods or rec.has_overrides or "risk_coverage" not in rec:
            continue
        for set_name, curve in rec.get("risk_coverage").items():
            rows.append({"method": rec.method, "set": set_name, "seed": rec.seed,
                         "auroc": rec.get("spread_auroc").get(set_name, np.nan),
                         "confident half MAE": curve["confident_half"],
                         "uncertain half MAE": curve["uncertain_half"]})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["method", "set"], sort=False)
    table = grouped[["auroc", "confident half MAE", "uncertain half MAE"]].agg(["mean", "std"])
    table.columns = [f"{a} {b}" for a, b in table.columns]
    table.insert(0, "seeds", grouped["seed"].nunique())
    return table


def flags_for_page(flags: pd.DataFrame) -> pd.DataFrame:
    """:func:`ood_flag_table` with set labels (``val``: validation rows)."""
    if not len(flags):
        return flags
    return flags.rename(index=lambda s: col.set_label(s) if s != "val" else "validation rows",
                        level=1)


def baseline_findings(table: pd.DataFrame, flags: pd.DataFrame) -> list[str]:
    """The "what came out" of the baselines chapter, as sentences written from the tables.

    Args:
        table: :func:`versus_baseline_table`.
        flags: :func:`ood_flag_table`.

    Returns:
        One sentence each: the methods resolved lower and higher than the IR-net (the one
        rule of :func:`calkit.stats.resolved_side`: Holm-adjusted p below 0.05 and an
        interval that excludes zero), each method's AUROC range, and the sets where the spread
        ranks the errors the wrong way round (the confident half has the larger mean error).
    """
    lines: list[str] = []
    if len(table):
        compared = versus_baseline_verdicts(table)
        for word, side in (("lower", -1), ("higher", 1)):
            hits = compared[compared["side"] == side]
            by_method = {method_label(m): [col.set_label(s) for s, _ in group.index]
                         for m, group in hits.groupby(level="method", sort=False)}
            listed = "; ".join(f"{m} on {', '.join(sets)}" for m, sets in by_method.items())
            lines.append(f"Resolved {word} loss than the IR-net: {listed or 'none'} "
                         f"({len(hits)} of {len(compared)} comparisons).")
    if len(flags):
        for method, group in flags.groupby(level="method", sort=False):
            auroc = group["auroc mean"].dropna()
            if len(auroc):
                lines.append(f"{method_label(method)} spread flags OOD rows with AUROC "
                             f"{auroc.min():.2f} to {auroc.max():.2f} across the sets "
                             "(0.5 is chance).")
            wrong = group[group["confident half MAE mean"] > group["uncertain half MAE mean"]]
            if len(wrong):
                sets = ", ".join(col.set_label(s) for _, s in wrong.index)
                lines.append(f"{method_label(method)}: on {sets} the most confident half has the "
                             "larger error, so its spread ranks those errors the wrong way round.")
    return lines


def risk_curves(records: list[dict], method: str = "ensemble") -> pd.DataFrame:
    """Mean risk-coverage curve over seeds per set: rows = coverage, columns = sets."""
    curves: dict[str, list[list[float]]] = {}
    for rec in as_records(records):
        if rec.method == method and "risk_coverage" in rec:
            for set_name, curve in rec.get("risk_coverage").items():
                curves.setdefault(set_name, []).append(curve["risk"])
    if not curves:
        return pd.DataFrame()
    points = len(next(iter(curves.values()))[0])
    coverage = np.arange(1, points + 1) / points
    return pd.DataFrame({name: np.mean(values, axis=0) for name, values in curves.items()},
                        index=pd.Index(coverage, name="coverage"))


def spread_curves(records: list[dict], methods: tuple[str, ...] = SPREAD_METHODS
                  ) -> dict[str, pd.DataFrame]:
    """:func:`risk_curves` of each method with a spread that has records."""
    curves = {m: risk_curves(records, m) for m in methods}
    return {m: c for m, c in curves.items() if len(c)}

