"""The headline claims under other set constructions, target draws and profiles.

:func:`draws_table` re-judges the headline claims under each set-construction seed and each
target draw (``grids/variance.yaml``); :func:`profiles_table` and :func:`profiles_errors`
set profiles (model size and recipe) side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit import stats
from calkit.reporting.claims import comparison_rows, paired_points
from calkit.reporting.comparisons import Comparison, paper_comparisons
from calkit.reporting.formatting import format_change
from calkit.reporting.records import (
    Metric,
    Protocol,
    Record,
    Which,
    records_of_seeds,
    run_label,
    seed_summary,
    select_records,
)
from calkit.reporting.tables import BASE_SETS

DRAW_SEEDS = (0, 1, 2)
"""Training seeds that every set construction and target draw of ``grids/variance.yaml`` runs."""

DrawGroup = tuple[str, list[dict], list[Comparison]]
"""``(draw label, its records, its comparisons)``."""


def _reseeded(records: list[dict], offset: int) -> list[dict]:
    """Copies of records whose seeds are shifted, so that pairs of another draw stay apart."""
    return [{**r, "request": {**r["request"], "seed": Record(r).seed + offset}}
            for r in records]


def _pooled(label: str, draws: list[DrawGroup]) -> DrawGroup:
    """One group of every draw's records, each (draw, seed) a pair of its own."""
    runs = [c.label for _, _, comparisons in draws for c in comparisons]
    shared = [c for c in draws[0][2] if runs.count(c.label) == len(draws)] if draws else []
    records = [r for k, (_, group, _) in enumerate(draws) for r in _reseeded(group, 1000 * k)]
    return label, records, shared


def _draw_groups(records: list[dict], dataset: str = "mp2019",
                 protocol: Protocol = "clean") -> list[DrawGroup]:
    """The headline comparisons under each set construction and each target draw.

    Returns ``(draw label, its records on DRAW_SEEDS, its comparisons)``: the base table's
    claims per set-construction seed, and the targeted table's per target-draw seed, on the
    targets that more than one draw ran (the others cannot show a draw's effect). Where there
    are several draws of a kind, a last group pools them: each (draw, training seed) is one
    pair, so its interval holds both sources of variance.
    """
    mine = records_of_seeds(records, DRAW_SEEDS)
    typed = [Record(r) for r in mine]
    set_groups, target_groups = [], []
    for sets_seed in sorted({rec.sets_seed for rec in typed}):
        group = select_records(mine, protocol, sets_seed=sets_seed, dataset=dataset)
        comparisons = [c for c in paper_comparisons(group) if c.family == "base"]
        set_groups.append((f"sets seed {sets_seed}", group, comparisons))
    for target_seed in sorted({rec.target_seed for rec in typed}):
        group = select_records(mine, protocol, target_seed=target_seed, dataset=dataset)
        comparisons = [c for c in paper_comparisons(group) if c.family == "targeted"]
        target_groups.append((f"target draw {target_seed}", group, comparisons))
    runs = [c.label for _, _, comparisons in target_groups for c in comparisons]
    target_groups = [(label, group, [c for c in comparisons if runs.count(c.label) > 1])
                     for label, group, comparisons in target_groups]
    out: list[DrawGroup] = []
    for kind, groups in (("set seeds", set_groups), ("target draws", target_groups)):
        groups = [g for g in groups if g[2]]
        out += groups + ([_pooled(f"{len(groups)} {kind} pooled", groups)]
                         if len(groups) > 1 else [])
    return [(label, group, comparisons) for label, group, comparisons in out if comparisons]


def draws_table(records: list[dict], dataset: str = "mp2019", protocol: Protocol = "clean",
                which: Which = "ema") -> pd.DataFrame:
    """The headline claims re-judged under other set constructions and target draws.

    One row per (claim, draw), labelled ``claim [draw]``, paired over the training seeds
    ``DRAW_SEEDS`` only, so every draw has the same seeds; verdicts as in
    :func:`~calkit.reporting.claims.claims_table` with Holm across this table. A claim whose
    verdict changes from draw to draw depends on which rows the sets or targets happen to hold.
    """
    rows = []
    for label, group, comparisons in _draw_groups(records, dataset, protocol):
        for row in comparison_rows(group, comparisons, which):
            rows.append({**row, "claim": f"{row['claim']} [{label}]", "draw": label})
    return stats.verdicts(pd.DataFrame(rows)).set_index("claim") if rows else pd.DataFrame()


def draws_points(records: list[dict], dataset: str = "mp2019", protocol: Protocol = "clean",
                 which: Which = "ema") -> pd.DataFrame:
    """Per-seed relative changes of :func:`draws_table`'s rows (for :func:`plots.paired_dots`)."""
    frames = []
    for label, group, comparisons in _draw_groups(records, dataset, protocol):
        points = paired_points(group, comparisons, which)
        frames.append(points.assign(claim=points["claim"] + f" [{label}]"))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["claim", "seed", "change"]))


DRAW_KINDS = (("set", "set constructions"), ("target", "target draws"))
"""The two sources of variance of :func:`draws_table`: a word of the draw label, and a title."""


def draws_figures(draws: pd.DataFrame, points: pd.DataFrame
                  ) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """One figure's data per source of variance.

    One figure's data per source of variance (targeted CAL's changes are an order of magnitude
    larger than base CAL's): ``(title, its points, its rows of draws)``.
    """
    for kind, title in DRAW_KINDS:
        part = draws[draws["draw"].str.contains(kind)] if len(draws) else draws
        if len(part):
            yield title, points[points["claim"].isin(part.index)], part


def profiles_table(groups: dict[str, list[dict]], seeds: tuple[int, ...] | None = None,
                   which: Which = "ema") -> pd.DataFrame:
    """The paper's claims judged under each profile (model size and recipe), side by side.

    Args:
        groups: Profile name -> its records (one data set and protocol, e.g. from
            :func:`select_records`).
        seeds: Training seeds to pair over in every profile (the seeds they share), or all.
        which: ``"ema"`` or ``"raw"``.

    Returns:
        One row per claim that every profile answers; per profile its change with the 95 %
        interval and its verdict, Holm across these claims within the profile, so each profile
        is judged on the same family. Empty when a profile has no such claim.
    """
    rows = {}
    for name, records in groups.items():
        mine = records_of_seeds(records, seeds)
        rows[name] = comparison_rows(mine, paper_comparisons(mine), which)
    shared = [row["claim"] for row in next(iter(rows.values()), [])
              if all(any(r["claim"] == row["claim"] for r in other) for other in rows.values())]
    if not shared:
        return pd.DataFrame()
    columns: dict[str, Any] = {}
    for name, found in rows.items():
        table = stats.verdicts(pd.DataFrame([r for r in found if r["claim"] in shared]))
        table = table.set_index("claim").loc[shared]
        columns.setdefault("paper", table["paper_change"].map(lambda v: f"{v:+.1%}"))
        columns[f"{name}: ours"] = [format_change(e, lo, hi) for e, lo, hi
                                    in zip(table["estimate"], table["low"], table["high"],
                                           strict=True)]
        columns[f"{name}: seeds"] = table["n"]
        columns[f"{name}: verdict"] = table["verdict"]
    return pd.DataFrame(columns, index=pd.Index(shared, name="claim"))


def profile_agreement(sizes: pd.DataFrame, profile: str, other: str) -> dict[str, int]:
    """How two profiles of :func:`profiles_table` agree.

    How :func:`profiles_table`'s two profiles agree: ``claims`` judged under both,
    ``same_verdict`` (claims with the same verdict) and ``seeds_max`` (most seeds of ``other``);
    zeros for an empty table.
    """
    if not len(sizes):
        return {"claims": 0, "same_verdict": 0, "seeds_max": 0}
    same = sizes[f"{profile}: verdict"] == sizes[f"{other}: verdict"]
    return {"claims": len(sizes), "same_verdict": int(sum(same)),
            "seeds_max": int(sizes[f"{other}: seeds"].max())}


def profiles_errors(groups: dict[str, list[dict]], seeds: tuple[int, ...] | None = None,
                    metric: Metric = "mae", which: Which = "ema",
                    sets: tuple[str, ...] = BASE_SETS) -> pd.DataFrame:
    """One error per run kind and set under each profile, side by side: is the bigger model better?

    Not paired: the profiles train different networks, so a seed shares nothing between them
    but the data; the table gives mean, std and count over seeds, and each later profile's mean
    divided by the first profile's.

    Args:
        groups: Profile name -> its records (one data set and protocol); the first is the
            reference of the ratios.
        seeds: Training seeds to keep in every profile, or all.
        metric: A metric of the records (``"mae"``, ``"loss"``, ``"rmse"``, ``"r2"``).
        which: ``"ema"`` or ``"raw"``.
        sets: Sets shown for untargeted runs; a targeted or fine-tuned run shows its target
            set only, the number it was run for.

    Returns:
        Rows ``(run, set)`` for the run kinds every profile has; columns ``<profile> mean``,
        ``<profile> std``, ``<profile> n`` and ``<profile> / <first>``. Empty when no run kind
        is shared.
    """
    summaries = {}
    for name, records in groups.items():
        summary = seed_summary(records_of_seeds(records, seeds), which, metric)
        wanted = np.where(summary["target_set"] == "", summary["set"].isin(sets),
                          summary["set"] == summary["target_set"])
        summaries[name] = summary[wanted].set_index(["method", "target_set", "n_target", "set"])
    shared = None
    for summary in summaries.values():
        shared = summary.index if shared is None else shared.intersection(summary.index, sort=False)
    if shared is None or not len(shared):
        return pd.DataFrame()
    order = {name: i for i, name in enumerate(sets)}
    shared = sorted(shared, key=lambda k: (k[1], k[2], k[0], order.get(k[3], len(order))))
    first = next(iter(summaries))
    columns = {}
    for name, summary in summaries.items():
        part = summary.loc[shared]
        columns[f"{name} mean"] = part["mean"].to_numpy()
        columns[f"{name} std"] = part["std"].to_numpy()
        columns[f"{name} n"] = part["n"].to_numpy()
        if name != first:
            columns[f"{name} / {first}"] = (part["mean"].to_numpy()
                                            / summaries[first].loc[shared]["mean"].to_numpy())
    index = pd.MultiIndex.from_tuples(
        [(run_label(m, t, n), col.set_label(s)) for m, t, n, s in shared],
        names=["run", "set"])
    return pd.DataFrame(columns, index=index)


def profiles_error_bars(errors: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`profiles_errors` for a bar chart.

    :func:`profiles_errors` for a bar chart: ``(means, stds)``, rows ``"run: set"``, one column
    per profile.
    """
    profiles = [name[:-len(" mean")] for name in errors.columns if name.endswith(" mean")]
    labels = [f"{run}: {set_name}" for run, set_name in errors.index]
    means = pd.DataFrame({p: errors[f"{p} mean"].to_numpy() for p in profiles}, index=labels)
    stds = pd.DataFrame({p: errors[f"{p} std"].to_numpy() for p in profiles}, index=labels)
    return means, stds
