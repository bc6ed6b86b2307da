"""The OOD benchmark: every method on every shift of the matbench composition tasks.

One table per task (:func:`calkit.reporting.baselines_chapter.versus_baseline_table`: each
method against the plain IR-net, paired by seed, Holm across the task's table), stacked into a
leaderboard; the best method of each task-shift pair, and which methods tie with it (their
paired interval against the best includes zero); how often each method is best or tied; the
ensemble's spread as an OOD flag per task; and the shifts' distances to the training rows, so a
reader sees which shifts are really out of distribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit import stats
from calkit.diagnostics import own_rows_table
from calkit.matbench import TARGETED_N, TARGETED_SET, TASKS, MatbenchTask
from calkit.methods import method_label
from calkit.reporting.baselines_chapter import (
    REFERENCE,
    baseline_records,
    ood_flag_table,
    risk_curves,
    table_sets,
    versus_baseline_table,
    versus_baseline_verdicts,
)
from calkit.reporting.comparisons import pair
from calkit.reporting.formatting import format_change
from calkit.reporting.records import (
    VALIDATION,
    RunKey,
    metrics_frame,
    records_of_methods,
    seed_summary,
    select_records,
    summary_stats,
)

FOREST = "rf"


def task_records(records: list[dict], task: MatbenchTask, seeds: Iterable[int]) -> list[dict]:
    """One task's records: clean protocol, the chapter's methods without overrides, ``seeds``."""
    return baseline_records(records, seeds, dataset=task.dataset)


def task_table(records: list[dict], task: MatbenchTask) -> pd.DataFrame:
    """Every method against the IR-net on every shift of one task (Holm within the task).

    Rows ``(set, method)``; the columns of :func:`versus_baseline_table` plus ``tied_best``:
    the method has the lowest mean loss of the set, or its paired interval against that method
    includes zero.
    """
    table = versus_baseline_table(records, sets=table_sets(records, task.dataset))
    if not len(table):
        return table
    frame = metrics_frame(records)
    table["tied_best"] = False
    for set_name, group in table.groupby(level="set", sort=False):
        best = group["mean"].idxmin()[1]
        for method in group.index.get_level_values("method"):
            if method == best:
                table.loc[(set_name, method), "tied_best"] = True
                continue
            found = pair(frame, RunKey(best), RunKey(method), set_name, "loss")
            table.loc[(set_name, method), "tied_best"] = bool(
                found["n_pairs"] >= 2 and found["rel_low"] <= 0)
    return table


def leaderboard(records: list[dict], seeds: Iterable[int],
                tasks: Sequence[MatbenchTask] = TASKS) -> pd.DataFrame:
    """Every task's table stacked: rows ``(task, set, method)``.

    Tasks that compare nothing (no records, or the IR-net's alone, as while a task's grid has
    run only its baselines) are skipped, so no table, count or figure reads them.
    """
    seeds = list(seeds)
    parts = {}
    for task in tasks:
        table = task_table(task_records(records, task, seeds), task)
        if len(table) and table.index.get_level_values("method").nunique() > 1:
            parts[task.name] = table
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, names=["task"])


def best_per_shift(board: pd.DataFrame) -> pd.DataFrame:
    """The summary table: per task and shift, the best method and its change against the IR-net.

    Columns: ``best`` (lowest mean loss), ``resolved best`` (its interval against the runner-up
    excludes zero), ``tied`` (other methods whose interval against it includes zero), ``rel``
    with ``rel_low``/``rel_high`` (the best method against the IR-net; 0 when the IR-net is
    best) and ``side`` (the one verdict rule, Holm within the task).
    """
    if not len(board):
        return pd.DataFrame()
    verdicts = pd.concat({task: versus_baseline_verdicts(board.loc[task])
                          for task in board.index.get_level_values("task").unique()},
                         names=["task"])
    rows = []
    for (task, set_name), group in board.groupby(level=["task", "set"], sort=False):
        best = group["mean"].idxmin()[2]
        key = (task, set_name, best)
        row = {"task": task, "set": set_name, "best": best,
               "resolved best": bool(board.loc[key, "best"]),
               "tied": ", ".join(m for m in group.index.get_level_values("method")
                                 if m != best and board.loc[(task, set_name, m), "tied_best"]),
               "rel": 0.0, "rel_low": np.nan, "rel_high": np.nan, "side": 0}
        if best != REFERENCE and key in verdicts.index:
            found = verdicts.loc[key]
            row.update(rel=found["rel"], rel_low=found["rel_low"], rel_high=found["rel_high"],
                       side=int(found["side"]))
        rows.append(row)
    return pd.DataFrame(rows).set_index(["task", "set"])


def short_set_label(name: str) -> str:
    """A set's label short enough for the leaderboard's rows (``"W compounds"``, ``"cluster"``)."""
    if name == VALIDATION:
        return "validation"
    if name.startswith("infoY_") and name.endswith(("_lower", "_upper")):
        return f"prior, {'low' if name.endswith('_lower') else 'high'} tail"
    kind = col.shift_kind(name)
    if kind == "element":
        return f"{name[len(col.ELEMENT_PREFIX):]} compounds"
    return kind


def display_best(summary: pd.DataFrame, ties: bool = False) -> pd.DataFrame:
    """:func:`best_per_shift` for a page: the best method and its change against the IR-net.

    "(tied)" marks a best method whose interval against the runner-up includes zero. The change
    is ``-12 % [-20 %, -4 %]``; ``Holm`` is the one verdict rule after Holm within the task
    (``lower``, ``higher``, or ``-``: not resolved). ``ties`` lists, instead, the methods tied
    with the best (a second, folded table).
    """
    if not len(summary):
        return summary
    out = pd.DataFrame(index=summary.index)
    out["best method"] = [method_label(m) + ("" if r else " (tied)")
                          for m, r in zip(summary["best"], summary["resolved best"],
                                          strict=True)]
    if ties:
        out["tied with it"] = [", ".join(method_label(m) for m in t.split(", ")) if t else "-"
                               for t in summary["tied"]]
    else:
        out["vs IR-net [95 %]"] = [
            "is the IR-net" if m == REFERENCE else format_change(r, lo, hi)
            for m, r, lo, hi in zip(summary["best"], summary["rel"], summary["rel_low"],
                                    summary["rel_high"], strict=True)]
        out["Holm"] = ["" if m == REFERENCE else _SIDE_WORDS[int(side)]
                       for m, side in zip(summary["best"], summary["side"], strict=True)]
    return out.rename(index=short_set_label, level="set")


_SIDE_WORDS = {-1: "lower", 0: "-", 1: "higher"}
"""The one verdict rule's side, as the leaderboard's narrow ``Holm`` column shows it."""


def rank_counts(board: pd.DataFrame, ood_only: bool = True) -> pd.DataFrame:
    """How often each method is best, or tied for best, over the task-shift pairs.

    Columns ``best`` (lowest mean loss), ``best or tied`` and ``pairs`` (task-shift pairs the
    method was scored on); validation rows are left out when ``ood_only``.
    """
    if not len(board):
        return pd.DataFrame()
    rows = board if not ood_only else board[
        board.index.get_level_values("set") != VALIDATION]
    lowest = rows.groupby(level=["task", "set"], sort=False)["mean"].idxmin().map(
        lambda key: key[-1]).value_counts()
    grouped = rows.groupby(level="method", sort=False)
    out = pd.DataFrame({"best": lowest.reindex(list(grouped.groups)).fillna(0).astype(int),
                        "best or tied": grouped["tied_best"].sum().astype(int),
                        "pairs": grouped.size()})
    return out.sort_values(["best or tied", "best"], ascending=False)


def relative_change_grid(board: pd.DataFrame) -> pd.DataFrame:
    """Methods' relative change against the IR-net, rows ``(task, set)``, a column per method."""
    if not len(board):
        return pd.DataFrame()
    compared = board.dropna(subset=["rel"])
    return compared["rel"].unstack("method")


def task_flag_auroc(records: list[dict], seeds: Iterable[int],
                    tasks: Sequence[MatbenchTask] = TASKS, method: str = "ensemble"
                    ) -> pd.DataFrame:
    """The ensemble's spread as an OOD flag, per task and shift: AUROC mean and std over seeds.

    Rows ``(task, set)``; the AUROC of telling the set's rows from the validation rows by the
    spread of the ensemble's members (0.5 is chance).
    """
    seeds = list(seeds)
    parts = {}
    for task in tasks:
        flags = ood_flag_table(task_records(records, task, seeds), methods=(method,))
        if len(flags):
            table = flags.loc[method]
            parts[task.name] = table[table.index != "val"][["seeds", "auroc mean", "auroc std"]]
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, names=["task"])


def task_risk_curves(records: list[dict], seeds: Iterable[int],
                     tasks: Sequence[MatbenchTask] = TASKS, method: str = "ensemble"
                     ) -> dict[str, pd.DataFrame]:
    """The ensemble's mean risk-coverage curve per task (tasks with records only).

    Each value is :func:`calkit.reporting.baselines_chapter.risk_curves` of the task's records:
    rows = share of rows kept (most confident first), columns = the task's sets and ``val``, the
    mean absolute error in the model's units (the target standardised on the training rows,
    so the tasks share one scale).
    """
    seeds = list(seeds)
    curves = {task.name: risk_curves(task_records(records, task, seeds), method)
              for task in tasks}
    return {name: table for name, table in curves.items() if len(table)}


def benchmark_coverage(records: list[dict], grids: dict[str, list], anchor: pd.DataFrame,
                       tasks: Sequence[MatbenchTask] = TASKS) -> pd.DataFrame:
    """What the chapter stands on, per task: runs recorded of each grid, and anchor folds.

    Args:
        records: Current records.
        grids: Column name -> the run configs of a grid (:func:`calkit.sweep.load_grid`).
        anchor: :func:`calkit.anchor.load_anchor`.
        tasks: The tasks shown.

    Returns:
        Rows = tasks; a ``"recorded / planned"`` column per grid (``"-"`` where the grid plans
        nothing for the task), the number of matbench folds with anchor scores, and the hours
        (``run h``, ``anchor h``) of wall time the recorded runs and anchor fits took (each on
        one core; on a loaded machine wall time exceeds CPU time).
    """
    wall = {rec["run_id"]: float(rec.get("wall_seconds") or 0.0) for rec in records}
    rows = []
    for task in tasks:
        row: dict[str, object] = {"task": task.name}
        hours = 0.0
        for name, configs in grids.items():
            planned = [c for c in configs if c.dataset == task.dataset]
            done = [c for c in planned if c.run_id in wall]
            hours += sum(wall[c.run_id] for c in done) / 3600
            row[name] = f"{len(done)} / {len(planned)}" if planned else "-"
        mine = anchor[anchor["task"] == task.name] if len(anchor) else anchor
        row["anchor folds"] = int(mine["fold"].nunique()) if len(mine) else 0
        row["run h"] = round(hours, 2)
        row["anchor h"] = round(float(mine["seconds"].sum()) / 3600, 2) if len(mine) else 0.0
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


def benchmark_answer(board: pd.DataFrame, flags: pd.DataFrame | None = None,
                     targeted: pd.DataFrame | None = None) -> list[str]:
    """The chapter's answer, written from the leaderboard (empty before any record).

    How often the random forest is best or tied with the best method; where CAL, the deep
    ensemble and Balanced MSE are resolved against the IR-net; given :func:`task_flag_auroc`,
    how well the ensemble's spread flags each task's shifts; and given
    :func:`targeted_versus_finetune`, where targeted CAL is resolved against fine-tuning and
    whether it learned its rows.
    """
    if not len(board):
        return []
    ood = board[board.index.get_level_values("set") != VALIDATION]
    lines = []
    if FOREST in ood.index.get_level_values("method"):
        # Over the pairs the forest ran on, not every pair of the board.
        forest = ood.xs(FOREST, level="method")
        n_tasks = forest.index.get_level_values("task").nunique()
        lines.append(f"On {int(forest['tied_best'].sum())} of {len(forest)} task-shift pairs "
                     f"({n_tasks} task{'s' if n_tasks != 1 else ''}) the random "
                     "forest is the best method or tied with it (its paired interval against "
                     "the best includes zero).")
    judged = pd.concat({task: versus_baseline_verdicts(ood.loc[task])
                        for task in ood.index.get_level_values("task").unique()},
                       names=["task"])
    for method, what in (("cal", "CAL"), ("ensemble", "The deep ensemble"),
                         ("balanced", "Balanced MSE")):
        if method not in judged.index.get_level_values("method"):
            continue
        rows = judged.xs(method, level="method")
        lower = [f"{t} {col.set_label(s)}" for (t, s), side in rows["side"].items() if side < 0]
        higher = [f"{t} {col.set_label(s)}" for (t, s), side in rows["side"].items() if side > 0]
        lines.append(f"{what} has a resolved lower loss than the IR-net on {len(lower)} of "
                     f"{len(rows)} pairs" + (f" ({'; '.join(lower)})" if lower else "")
                     + f" and a resolved higher loss on {len(higher)}"
                     + (f" ({'; '.join(higher)})" if higher else "") + ".")
    if flags is not None and len(flags):
        by_task = flags["auroc mean"].groupby(level="task", sort=False)
        spans = "; ".join(f"{task} {lo:.2f}-{hi:.2f}" for task, lo, hi in
                          zip(by_task.min().index, by_task.min(), by_task.max(), strict=True))
        lines.append("The deep ensemble's spread tells a shift's rows from validation rows with "
                     f"an AUROC (0.5 is chance) of {spans}, by task.")
    if targeted is not None and len(targeted):
        lines.append(_targeted_answer(targeted))
    return lines


def _targeted_answer(targeted: pd.DataFrame) -> str:
    """One sentence on :func:`targeted_versus_finetune`: resolved sides and the own-row check."""
    side = targeted["side"]
    lower = [str(t) for t in side.index[side < 0]]
    higher = [str(t) for t in side.index[side > 0]]
    runs = int(targeted["own_row_runs"].sum())
    return (f"Targeted CAL against fine-tuning on each task's high tail (N = {TARGETED_N} rows; "
            f"{len(targeted)} tasks, Holm across them): resolved lower on {len(lower)}"
            + (f" ({', '.join(lower)})" if lower else "")
            + f", resolved higher on {len(higher)}" + (f" ({', '.join(higher)})" if higher else "")
            + f"; it failed to learn its rows in {int(targeted['not_learned'].sum())} of {runs} "
            f"runs and chose not to target in {int(targeted['warmup_chosen'].sum())}.")


def targeted_versus_finetune(records: list[dict], seeds: Iterable[int],
                             tasks: Sequence[MatbenchTask] = TASKS,
                             target_set: str = TARGETED_SET, n_target: int = TARGETED_N
                             ) -> pd.DataFrame:
    """Targeted CAL (recipe chosen on held-out rows) against fine-tuning, task by task.

    Both methods get the same N rows of the task's target set and choose on the same held-out
    fifth of them; each is scored on the rest of the set. Rows: tasks with records of both; the
    mean losses, the paired relative change of targeted CAL against fine-tuning with its 95 %
    interval, and Holm's correction across the tasks (one family), judged by the one rule; and
    whether targeted CAL learned the rows it was handed (:func:`_own_row_summary`).
    """
    seeds = list(seeds)
    methods = ("targeted_select", "finetune")
    rows = []
    for task in tasks:
        kept = records_of_methods(select_records(records, dataset=task.dataset), methods, seeds)
        if not kept:
            continue
        name = col.resolve_set_name(target_set, target=task.target,
                                    available=[*_task_sets(task)])
        frame, summary = metrics_frame(kept), seed_summary(kept, "ema", "loss")
        select, finetune = RunKey(methods[0], name, n_target), RunKey(methods[1], name, n_target)
        found = pair(frame, finetune, select, name, "loss")
        if not found["n_pairs"]:
            continue
        rows.append({"task": task.name, "set": name,
                     "fine-tuning": summary_stats(summary, finetune, name)[0],
                     "targeted CAL": summary_stats(summary, select, name)[0], **found,
                     **_own_row_summary([r for r in kept
                                         if r["request"]["method"] == methods[0]])})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index("task")
    table["p_holm"] = stats.holm(table["p_value"].to_numpy())
    table["side"] = stats.resolved_side(table["rel_low"], table["rel_high"], table["p_holm"])
    return table


def display_targeted(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`targeted_versus_finetune` narrow enough for the page's content column.

    Columns: both methods' mean losses, targeted CAL's change against fine-tuning with its 95 %
    interval and the Holm-adjusted p; the own-row check is :func:`display_own_rows`'s.
    """
    if table.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "fine-tuning": table["fine-tuning"].map("{:.4f}".format),
        "targeted": table["targeted CAL"].map("{:.4f}".format),
        "change [95 %]": [format_change(r, lo, hi) for r, lo, hi
                          in zip(table["rel"], table["rel_low"], table["rel_high"], strict=True)],
        "Holm p": table["p_holm"].map("{:.3f}".format)}, index=table.index)


def display_own_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Targeted CAL's own-row check per task from :func:`targeted_versus_finetune`, for a page.

    Columns: the median own-row ratio (below 1: it learned its rows), the runs that ended at or
    above their warm-up best (``k of n``), and the runs that chose a warm-up epoch.
    """
    if table.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "own-row ratio": table["own_row_ratio"].map("{:.3g}".format),
        "not learned": [f"{n} of {k}" for n, k in
                        zip(table["not_learned"], table["own_row_runs"], strict=True)],
        "chose the warm-up": table["warmup_chosen"].astype(int)}, index=table.index)


def _own_row_summary(records: list[dict]) -> dict[str, float | int]:
    """The targeted runs' own-row check (:func:`calkit.diagnostics.own_rows_table`) in one row.

    ``own_row_ratio`` is the median over the ``own_row_runs`` runs of the loss on the N rows
    at the end over its warm-up best (below 1: learned); ``not_learned`` counts runs that
    targeted and ended at or above it; ``warmup_chosen`` counts runs whose held-out fifth chose
    a warm-up epoch, so they never targeted. ``records`` are one task's runs of one kind.
    """
    table = own_rows_table(records)
    if table.empty:
        return {"own_row_ratio": np.nan, "own_row_runs": 0, "not_learned": 0, "warmup_chosen": 0}
    row = table.iloc[0]
    return {"own_row_ratio": float(row["ratio"]), "own_row_runs": int(row["seeds"]),
            "not_learned": int(row["not_learned"]), "warmup_chosen": int(row["warmup_chosen"])}


def _task_sets(task: MatbenchTask) -> tuple[str, ...]:
    from calkit.data import DATASETS
    from calkit.dataplan import ood_set_names

    return ood_set_names(DATASETS[task.dataset], task.target)


def shift_distances(tasks: Sequence[MatbenchTask] = TASKS, profile: str = "cpu",
                    progress: bool = False) -> pd.DataFrame:
    """Each task's sets: size, share of the rows and distance to the training rows.

    The distance is :func:`calkit.splits.distance_to_training` on the model's standardised
    features: the mean distance of a set's rows to their 5 nearest training rows, divided by the
    same for training rows among themselves. A ratio near 1 means the shift is not out of
    distribution in feature space, whatever its name says.

    Rows ``(task, set)``; columns ``n``, ``share`` and ``distance ratio``.
    """
    from calkit.pipeline import prepare_data
    from calkit.splits import distance_to_training

    parts = {}
    for task in tasks:
        bundle = prepare_data(task.dataset, profile, progress=progress)
        ood = [s for s in bundle.sets.columns if col.is_ood_set(s)]
        table = distance_to_training(bundle.X, bundle.sets[[*ood, col.TRAIN]])
        parts[task.name] = pd.DataFrame({
            "n": table["n"], "share": table["n"] / len(bundle.frame),
            "distance ratio": table["ratio_to_train"]})
    return pd.concat(parts, names=["task"]) if parts else pd.DataFrame()
