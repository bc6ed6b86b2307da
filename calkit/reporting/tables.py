"""The paper's tables from the records: numeric frames, formatted only when shown.

Which methods fill each table is the registry's (:attr:`calkit.methods.Method.paper_rows`,
:data:`calkit.methods.PAPER_TABLES`): a method declared with ``paper_rows=("base",)`` gets
its columns in :func:`base_table` without a change here. Comparisons are paired by seed with
95 % t intervals; lower is better (-10 % means the second method's loss is 10 % lower).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.diagnostics import unlearned_runs
from calkit.methods import PAPER_TABLES, method_label, paper_table_methods, paper_table_subjects
from calkit.reporting.comparisons import pair
from calkit.reporting.formatting import format_change
from calkit.reporting.paper import paper_base_means, paper_value
from calkit.reporting.records import (
    VALIDATION,
    Metric,
    Record,
    RunKey,
    Which,
    metrics_frame,
    ood_sets_of,
    run_label,
    seed_summary,
    summary_stats,
    targeted_pairs,
)

BASE_SETS = (col.TRAIN, col.COVARIATE, col.PRIOR, col.RELATION, VALIDATION, col.HIGH_GAP)
ABLATION_SETS = (col.TRAIN, VALIDATION, col.COVARIATE, col.PRIOR, col.RELATION)
TARGETED_METHODS: tuple[str, ...] = paper_table_subjects("targeted") + (
    PAPER_TABLES["targeted"].reference,)
"""The two ways of using N target rows that the paper compares (targeted CAL, fine-tuning)."""


def _mean_std_n(row: dict, name: str, stats_: tuple[float, float, int]) -> None:
    mean, std, n = stats_
    row.update({f"{name} mean": mean, f"{name} std": std, f"{name} n": n})


def base_table(records: list[dict], which: Which = "ema", metric: Metric = "loss"
               ) -> pd.DataFrame:
    """The paper's base table: its methods (the registry's) against its reference, per set.

    Columns: ours (mean, std, n per method and per stored variant of a compared method),
    the paper's values, and each compared method's paired relative change against the
    reference (the IR-net) with its 95 % interval.
    """
    summary = seed_summary(records, which, metric)
    frame = metrics_frame(records, which)
    reference = PAPER_TABLES["base"].reference
    subjects = paper_table_subjects("base")
    variants = sorted(m for m in set(summary["method"])
                      if any(m.startswith(f"{s}[") for s in subjects))
    rows = []
    for set_name in BASE_SETS:
        row: dict = {"set": set_name}
        for method in (*paper_table_methods("base"), *variants):
            _mean_std_n(row, method, summary_stats(summary, RunKey(method), set_name))
        for method in paper_table_methods("base"):
            row[f"{method} paper"] = paper_value(method, set_name) if metric == "loss" \
                else np.nan
        for subject in subjects:
            name = f"{method_label(subject)} vs {method_label(reference)}"
            found = pair(frame, RunKey(reference), RunKey(subject), set_name, metric) \
                if len(frame) else {}
            row.update({f"{name} {k}": v for k, v in found.items()})
            row[f"{name} paper"] = row[f"{subject} paper"] / row[f"{reference} paper"] - 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("set")


def targeted_table(records: list[dict], which: Which = "ema", metric: Metric = "loss"
                   ) -> pd.DataFrame:
    """The paper's targeted table: targeted CAL against fine-tuning.

    Both are judged on the target set minus its N rows. Beside them: the un-tuned IR-net,
    the paper's values (where its N matches or is unstated) and the paired relative change
    with its 95 % interval.
    """
    summary = seed_summary(records, which, metric)
    frame = metrics_frame(records, which)
    reference = PAPER_TABLES["targeted"].reference
    untuned = PAPER_TABLES["base"].reference
    rows = []
    for target, n in targeted_pairs(records):
        row: dict = {"target": target, "N": n}
        _mean_std_n(row, untuned, summary_stats(summary, RunKey(untuned), target))
        for method in (reference, *paper_table_subjects("targeted")):
            _mean_std_n(row, method, summary_stats(summary, RunKey(method, target, n), target))
        for method in (reference, *paper_table_subjects("targeted")):
            row[f"{method} paper"] = paper_value(method, target, target, n) \
                if metric == "loss" else np.nan
        for subject in paper_table_subjects("targeted"):
            name = f"{subject} vs {method_label(reference)}"
            found = pair(frame, RunKey(reference, target, n), RunKey(subject, target, n),
                         target, metric)
            row.update({f"{name} {k}": v for k, v in found.items()})
            row[f"{name} paper"] = row[f"{subject} paper"] / row[f"{reference} paper"] - 1
        rows.append(row)
    return pd.DataFrame(rows).set_index(["target", "N"]) if rows else pd.DataFrame()


def ablation_table(records: list[dict], which: Which = "ema", metric: Metric = "loss"
                   ) -> pd.DataFrame:
    """Ablation rows, one per (method, set): ours (mean, std, n), the paper's value.

    The methods are the registry's ``ablation`` rows. ``in_warmup`` counts the seeds whose
    reported model (EMA or raw, per ``which``) was selected in the warm-up: it is the plain
    warm-up network rather than a result of the method.
    """
    summary = seed_summary(records, which, metric)
    key = "selected_in_warmup" if which.startswith("raw") else "ema_selected_in_warmup"
    rows = []
    for method in paper_table_methods("ablation"):
        picked = sum(bool(rec.get(key)) for rec in map(Record, records)
                     if rec.key == method and not which.endswith("_last"))
        for set_name in ABLATION_SETS:
            mean, std, n = summary_stats(summary, RunKey(method), set_name)
            paper = paper_value(method, set_name) if metric == "loss" else np.nan
            rows.append({"method": method, "set": set_name, "mean": mean, "std": std, "n": n,
                         "paper": paper, "in_warmup": picked})
    return pd.DataFrame(rows).set_index(["method", "set"])


def set_means(
    summary: pd.DataFrame, methods: list[str], sets: tuple[str, ...] = BASE_SETS,
    target: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Wide mean and std tables (rows = set labels, columns = method labels) for bar charts."""
    pick = summary[summary["method"].isin(methods) & (summary["target_set"] == target)
                   & summary["set"].isin(sets)]
    order = [s for s in sets if s in set(pick["set"])]
    means = pick.pivot(index="set", columns="method", values="mean").reindex(order)
    stds = pick.pivot(index="set", columns="method", values="std").reindex(order)
    columns = [m for m in methods if m in means.columns]
    means, stds = means[columns], stds[columns]
    for table in (means, stds):
        table.index = [col.set_label(i) for i in table.index]
        table.columns = [method_label(m) for m in table.columns]
    return means, stds


def base_bars(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The base table's methods for a bar chart: ours and the paper's means, and our stds.

    Returns:
        ``(means, stds)``: rows = set labels; ``means`` has one column per method and one
        ``<method> (paper)`` column per reported method. Empty when no record has a mean.
    """
    means, stds = set_means(seed_summary(records), list(paper_table_methods("base")))
    return (means.join(paper_base_means()) if len(means) else means), stds


def ablation_means(records: list[dict]) -> pd.DataFrame:
    """Mean loss per ablation set relative to the IR-net, for the radar figure.

    Mean loss per ablation set (rows) of the IR-net and every ablation method (columns), each
    divided by the IR-net's, for the radar figure; empty without IR-net records or with fewer
    than two other methods.
    """
    reference = PAPER_TABLES["base"].reference
    methods = [reference, *paper_table_methods("ablation")]
    means, _ = set_means(seed_summary(records), methods, ABLATION_SETS)
    label = method_label(reference)
    if label not in means or len(means.columns) <= 2:
        return pd.DataFrame()
    return means.div(means[label], axis=0)


def targeting_cost(summary: pd.DataFrame, sets: tuple[str, ...] = BASE_SETS) -> pd.DataFrame:
    """Mean loss on every set for the baseline and each targeted / fine-tuned run."""
    pick = summary[summary["method"].isin([PAPER_TABLES["base"].reference, *TARGETED_METHODS])
                   & summary["set"].isin(sets)].copy()
    if pick.empty:
        return pd.DataFrame()
    pick["run"] = [run_label(m, t, int(n)) for m, t, n
                   in zip(pick["method"], pick["target_set"], pick["n_target"], strict=True)]
    table = pick.pivot_table(index="run", columns="set", values="mean")
    table = table[[s for s in sets if s in table.columns]]
    table.columns = [col.set_label(c) for c in table.columns]
    return table


def targeting_cost_change(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """What targeting one set costs on the others, relative to the IR-net, for both methods.

    For every targeted CAL and fine-tuning run kind and every set (the validation splits and
    each OOD set), the paired relative change of its loss against the IR-net of the same seed,
    with its 95 % interval (no multiplicity correction: a description, not a test).

    Returns:
        A frame indexed by run label with one formatted ``"+x % [lo, hi]"`` cell per set and,
        for targeted CAL, how many seeds learned their own rows (a run kind that did not says
        nothing about targeting). The N rows are left out of the targeted runs' evaluation sets
        (where sets overlap), not of the IR-net's.
    """
    frame = metrics_frame(records, which)
    if frame.empty:
        return pd.DataFrame()
    sets = [*ood_sets_of(records), VALIDATION]
    reference = RunKey(PAPER_TABLES["base"].reference)
    rows: dict[str, dict[str, str]] = {}
    for method in TARGETED_METHODS:
        for target, n in targeted_pairs(records):
            label = run_label(method, target, n)
            for set_name in sets:
                found = pair(frame, reference, RunKey(method, target, n), set_name, "loss")
                if found["n_pairs"]:
                    rows.setdefault(label, {})[col.set_label(set_name)] = format_change(
                        found["rel"], found["rel_low"], found["rel_high"])
            failed, checked = unlearned_runs(records, method, target, n)
            if label in rows and checked:
                rows[label]["learned its rows"] = f"{checked - failed} of {checked} seeds"
    return pd.DataFrame.from_dict(rows, orient="index").fillna("-")


def ema_versus_raw(records: list[dict]) -> pd.DataFrame:
    """How far the reported EMA model is from the raw model, per method / target / N.

    Rows ``(method, target, N)``; columns: seeds, and the mean over seeds of the EMA model's
    loss divided by the raw model's, on the validation splits and on the run's own set (its
    target set, or the prior set for untargeted runs). A ratio far above 1 means the
    averaged weights predict much worse than any one of the states they average.
    """
    ema, raw = metrics_frame(records, "ema"), metrics_frame(records, "raw")
    if ema.empty:
        return pd.DataFrame()
    keys = ["run_id", "method", "seed", "target_set", "n_target", "set"]
    both = ema[keys + ["loss"]].merge(raw[keys + ["loss"]], on=keys, suffixes=("_ema", "_raw"))
    both["ratio"] = both["loss_ema"] / both["loss_raw"]
    own = np.where(both["target_set"] != "", both["target_set"], col.PRIOR)
    wanted = {VALIDATION: both["set"] == VALIDATION, "own set": both["set"] == own}
    group = ["method", "target_set", "n_target"]
    table = pd.concat({name: both[mask].groupby(group)["ratio"].mean()
                       for name, mask in wanted.items()}, axis=1)
    table.insert(0, "seeds", both[both["set"] == VALIDATION].groupby(group)["seed"].nunique())
    table.columns = ["seeds", "EMA / raw, validation", "EMA / raw, own set"]
    table.index = table.index.set_names(["method", "target", "N"])
    return table


def ema_gap(records: list[dict], limit: float = 1.5) -> tuple[pd.DataFrame, str]:
    """:func:`ema_versus_raw` for a page, with a sentence on the large gaps.

    :func:`ema_versus_raw` with labels for a page, and a sentence naming the run kinds whose EMA
    loss is over ``limit`` times the raw model's (validation or own set).
    """
    gap = ema_versus_raw(records)
    if not len(gap):
        return gap, ""
    gap = gap.rename(index=method_label, level=0).rename(
        index=lambda s: col.set_label(s) if s else "-", level=1)
    far = gap[(gap.iloc[:, 1:] > limit).any(axis=1)]
    listed = "; ".join(f"{m} ({t}, N={n}): {r.iloc[1]:.1f}x on validation, {r.iloc[2]:.1f}x "
                       "on its own set" for (m, t, n), r in far.iterrows())
    return gap, f"EMA loss over {limit}x the raw model's: " + (listed or "none")


def warmup_selection(records: list[dict]) -> pd.DataFrame:
    """Per method key: how many seeds' raw and EMA models were selected in the warm-up.

    Such a model is the plain warm-up network, not a result of the method.
    """
    rows = [{"method": rec.key, "target": rec.target_set, "N": rec.n_target,
             "raw": bool(rec.get("selected_in_warmup")),
             "ema": bool(rec.get("ema_selected_in_warmup"))}
            for rec in map(Record, records) if "selected_in_warmup" in rec]
    if not rows:
        return pd.DataFrame(columns=["seeds", "raw in warm-up", "EMA in warm-up"])
    frame = pd.DataFrame(rows)
    return frame.groupby(["method", "target", "N"]).agg(
        seeds=("raw", "size"), **{"raw in warm-up": ("raw", "sum"),
                                  "EMA in warm-up": ("ema", "sum")})


def dataset_table(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """Every method's MAE on every OOD set of one data set, and the paired comparisons.

    Rows: ``(method, target, N)``; columns per set: MAE mean and std over seeds (in the
    target's units). Use with :func:`~calkit.reporting.claims.dataset_claims` for the paired
    intervals.
    """
    summary = seed_summary(records, which, "mae")
    if summary.empty:
        return pd.DataFrame()
    sets = [*ood_sets_of(records), VALIDATION]
    summary = summary[summary["set"].isin(sets)]
    table = summary.pivot_table(index=["method", "target_set", "n_target"], columns="set",
                                values=["mean", "std"])
    table = table.reindex(columns=[(stat, name) for name in sets for stat in ("mean", "std")
                                   if (stat, name) in table.columns])
    table.columns = [f"{col.set_label(name)} {stat}" for stat, name in table.columns]
    seeds = summary.groupby(["method", "target_set", "n_target"])["n"].max()
    table.insert(0, "seeds", seeds.reindex(table.index).astype(int))
    table = table.rename(index=method_label, level=0)
    return table.rename(index=lambda name: col.set_label(name) if name else "-", level=1)
