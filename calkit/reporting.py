"""Result tables from run records: numeric frames, formatted only when shown.

Every table here is a plain numeric ``DataFrame`` (means, standard deviations, counts,
paired differences with intervals), so it can be sorted, plotted and tested; :func:`display`
turns one into strings for a page. The paper's reported values are one tidy table
(:func:`paper_values`). Comparisons between two methods are paired by seed (the seeds share
initialisation and warm-up) with 95 % t intervals (:mod:`calkit.stats`); the sign convention
is "lower is better: a relative change of -10 % means the second method's loss is 10 % lower".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit import stats
from calkit.diagnostics import method_key, unlearned_runs
from calkit.methods import method_label
from calkit.runs import RunConfig

VALIDATION = "validation"
"""Pseudo-set name: the mean of the five random splits (the paper's "validation")."""

BASE_SETS = (col.TRAIN, col.COVARIATE, col.PRIOR, col.RELATION, VALIDATION, col.HIGH_GAP)
ABLATION_SETS = (col.TRAIN, VALIDATION, col.COVARIATE, col.PRIOR, col.RELATION)
DEFAULT_SETS_SEED = RunConfig.__dataclass_fields__["sets_seed"].default
DEFAULT_TARGET_SEED = RunConfig.__dataclass_fields__["target_seed"].default
ABLATIONS = ("pg_first", "pg_last", "aa", "ps", "irnet3")
BASELINES = ("rf", "ensemble", "cmixup", "balanced", "cvar")
"""The OOD baselines of the "what helps" chapter, each compared with the plain IR-net."""
OOD_TABLE_SETS = (col.COVARIATE, col.PRIOR, col.EXTREME, col.RELATION, col.HIGH_GAP,
                  col.GAP_PRIOR, VALIDATION)


@cache
def _paper_values() -> pd.DataFrame:
    with resources.files("calkit").joinpath("resources/paper_values.csv").open() as handle:
        frame = pd.read_csv(handle, keep_default_na=False, na_values={"n_target": [""]})
    frame["n_target"] = frame["n_target"].astype("Int64")
    return frame


def paper_values() -> pd.DataFrame:
    """The paper's reported numbers, one row each (smooth-L1 loss of the EMA model).

    Columns: ``table`` (``base``, ``targeted``, ``ablation``), ``set``, ``method``,
    ``target_set`` (empty for untargeted rows), ``n_target`` (``<NA>`` where the paper does
    not state N), ``metric`` and ``value``.
    """
    return _paper_values().copy()


def paper_value(method: str, set_name: str, target_set: str = "",
                n_target: int | None = None) -> float:
    """One reported value (NaN if the paper has none); an unstated N matches any N."""
    pv = _paper_values()
    hit = pv[(pv["method"] == method) & (pv["set"] == set_name) & (pv["target_set"] == target_set)]
    if target_set:
        hit = hit[hit["n_target"].isna() | (hit["n_target"] == n_target)]
    return float(hit["value"].iloc[0]) if len(hit) else float("nan")


# ------------------------------------------------------------------ records -> long frame
def metrics_frame(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """Long table: one row per (run, set) with the method key, seed, target and metrics.

    ``which`` is ``"ema"`` (the paper's reported model) or ``"raw"`` (the raw model at the
    selected epoch). A ``validation`` row per run holds the mean over its validation splits.
    """
    rows = []
    for rec in records:
        req = rec["request"]
        for set_name, values in rec["metrics"][which].items():
            rows.append({"run_id": rec["run_id"], "method": method_key(req), "seed": req["seed"],
                         "target_set": req.get("target_set") or "",
                         "n_target": int(req.get("n_target") or 0), "set": set_name, **values})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    rsplt = frame[frame["set"].isin(col.RANDOM_SPLITS + col.CLEAN_SPLITS)]  # a run has one family
    if len(rsplt):
        keys = ["run_id", "method", "seed", "target_set", "n_target"]
        mean = rsplt.groupby(keys).mean(numeric_only=True).reset_index()
        mean["set"] = VALIDATION
        frame = pd.concat([frame, mean[frame.columns]], ignore_index=True)
    return frame


def seed_summary(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Mean, std and count over seeds of one metric, per method / target / set."""
    frame = metrics_frame(records, which)
    columns = ["method", "target_set", "n_target", "set", "mean", "std", "n"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.groupby(["method", "target_set", "n_target", "set"])[metric]
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()
    return out[columns]


def _stats(summary: pd.DataFrame, method: str, set_name: str, target: str = "",
           n_target: int = 0) -> tuple[float, float, int]:
    hit = summary[(summary["method"] == method) & (summary["set"] == set_name)
                  & (summary["target_set"] == target) & (summary["n_target"] == n_target)]
    if not len(hit):
        return np.nan, np.nan, 0
    row = hit.iloc[0]
    return float(row["mean"]), float(row["std"]), int(row["n"])


def _pair(frame: pd.DataFrame, a: tuple, b: tuple, set_name: str,
          metric: str) -> dict[str, float]:
    """Paired comparison of runs ``a`` and ``b`` (each ``(method, target, N)``) on one set."""
    keyed = frame.assign(key=frame["method"] + "@" + frame["target_set"] + ":"
                         + frame["n_target"].astype(str))
    ka, kb = (f"{m}@{t}:{n}" for m, t, n in (a, b))
    sub = keyed[(keyed["set"] == set_name) & keyed["key"].isin([ka, kb])]
    empty = {"n_pairs": 0, "rel": np.nan, "rel_low": np.nan, "rel_high": np.nan,
             "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "p_value": np.nan}
    if sub["key"].nunique() < 2:
        return empty
    row = stats.summarise_pairs(sub, [(ka, kb, set_name)], by="key", value=metric).iloc[0]
    return {"n_pairs": int(row["n"]), "rel": row["rel"], "rel_low": row["rel_low"],
            "rel_high": row["rel_high"], "diff": row["diff"], "diff_low": row["diff_low"],
            "diff_high": row["diff_high"], "p_value": row["p_value_rel"]}


# ------------------------------------------------------------------ the paper's tables
def base_table(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Base CAL against the plain IR-net, per set.

    Columns: ours (mean, std, n per method), the paper's values, and CAL's paired relative
    change against the IR-net with its 95 % interval.
    """
    summary = seed_summary(records, which, metric)
    frame = metrics_frame(records, which)
    variants = sorted(m for m in set(summary["method"]) if m.startswith("cal["))
    rows = []
    for set_name in BASE_SETS:
        row: dict = {"set": set_name}
        for method in ("baseline", "cal", *variants):
            mean, std, n = _stats(summary, method, set_name)
            row.update({f"{method} mean": mean, f"{method} std": std, f"{method} n": n})
        for method in ("baseline", "cal"):
            row[f"{method} paper"] = paper_value(method, set_name) if metric == "loss" \
                else np.nan
        pair = _pair(frame, ("baseline", "", 0), ("cal", "", 0), set_name, metric) \
            if len(frame) else {}
        row.update({f"CAL vs IR-net {k}": v for k, v in pair.items()})
        row["CAL vs IR-net paper"] = row["cal paper"] / row["baseline paper"] - 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("set")


def targeted_pairs(records: list[dict]) -> list[tuple[str, int]]:
    """The ``(target set, N)`` combinations with targeted or fine-tune records."""
    found = {(r["request"]["target_set"], int(r["request"]["n_target"])) for r in records
             if r["request"]["method"] in ("targeted", "finetune")
             and not r["request"].get("overrides")}
    return sorted(found)


def targeted_table(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Targeted CAL against fine-tuning on the target set minus its N rows.

    Beside them: the un-tuned IR-net, the paper's values (where its N matches or is unstated)
    and the paired relative change with its 95 % interval.
    """
    summary = seed_summary(records, which, metric)
    frame = metrics_frame(records, which)
    rows = []
    for target, n in targeted_pairs(records):
        row: dict = {"target": target, "N": n}
        for method, tgt, nn in (("baseline", "", 0), ("finetune", target, n),
                                ("targeted", target, n)):
            mean, std, count = _stats(summary, method, target, tgt, nn)
            row.update({f"{method} mean": mean, f"{method} std": std, f"{method} n": count})
        for method in ("finetune", "targeted"):
            row[f"{method} paper"] = paper_value(method, target, target, n) \
                if metric == "loss" else np.nan
        pair = _pair(frame, ("finetune", target, n), ("targeted", target, n), target, metric)
        row.update({f"targeted vs fine-tune {k}": v for k, v in pair.items()})
        row["targeted vs fine-tune paper"] = row["targeted paper"] / row["finetune paper"] - 1
        rows.append(row)
    return pd.DataFrame(rows).set_index(["target", "N"]) if rows else pd.DataFrame()


def ablation_table(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Ablation rows, one per (method, set): ours (mean, std, n), the paper's value.

    ``in_warmup`` counts the seeds whose reported model (EMA or raw, per ``which``) was selected
    in the warm-up: it is the plain warm-up network rather than a result of the method.
    """
    summary = seed_summary(records, which, metric)
    key = "selected_in_warmup" if which.startswith("raw") else "ema_selected_in_warmup"
    rows = []
    for method in ("cal", *ABLATIONS):
        picked = sum(bool(r.get(key)) for r in records if method_key(r["request"]) == method
                     and not which.endswith("_last"))
        for set_name in ABLATION_SETS:
            mean, std, n = _stats(summary, method, set_name)
            paper = paper_value(method, set_name) if metric == "loss" else np.nan
            rows.append({"method": method, "set": set_name, "mean": mean, "std": std, "n": n,
                         "paper": paper, "in_warmup": picked})
    return pd.DataFrame(rows).set_index(["method", "set"])


def select_records(records: list[dict], protocol: str = "clean",
                   sets_seed: int = DEFAULT_SETS_SEED, target_seed: int = DEFAULT_TARGET_SEED,
                   dataset: str = "mp2019") -> list[dict]:
    """The records of one data set, protocol, set-construction seed and target draw.

    Tables pool seeds of the same method; records of other data sets, protocols or set and
    target draws are other experiments and are never pooled with them.
    """
    return [r for r in records
            if r["request"].get("dataset", "mp2019") == dataset
            and r["request"].get("target") is None
            and r["request"].get("protocol", "paper") == protocol
            and r["request"].get("sets_seed", DEFAULT_SETS_SEED) == sets_seed
            and r["request"].get("target_seed", DEFAULT_TARGET_SEED) == target_seed]


def paper_comparisons(records: list[dict]) -> list[tuple[str, tuple, tuple, str, float]]:
    """The paper's comparative claims that the records can answer.

    Each is ``(claim, a, b, set, paper's relative change of b against a)`` with runs given as
    ``(method, target set, N)``; comparisons the paper makes no claim about (another data set's
    targets) are left out.
    """
    out = []
    for set_name in (col.COVARIATE, col.PRIOR, col.RELATION, col.HIGH_GAP, VALIDATION):
        paper = paper_value("cal", set_name) / paper_value("baseline", set_name) - 1
        out.append((f"CAL vs IR-net on {col.set_label(set_name)}",
                    ("baseline", "", 0), ("cal", "", 0), set_name, paper))
    for target, n in targeted_pairs(records):
        paper = paper_value("targeted", target, target, n) / \
            paper_value("finetune", target, target, n) - 1
        out.append((f"targeted CAL vs fine-tuning on {col.set_label(target)}, "
                    f"N={n}", ("finetune", target, n), ("targeted", target, n), target, paper))
    for method in ABLATIONS:
        for set_name in (col.COVARIATE, col.PRIOR, col.RELATION):
            paper = paper_value(method, set_name) / paper_value("cal", set_name) - 1
            out.append((f"{method_label(method)} vs CAL on "
                        f"{col.set_label(set_name)}", ("cal", "", 0),
                        (method, "", 0), set_name, paper))
    return [c for c in out if np.isfinite(c[4])]


LITERAL_TARGETED = "targeted[supervised_on_all=False]"
"""Targeted CAL in the authors' literal loop: supervised steps on the high-loss rows only."""


def control_comparisons(records: list[dict]) -> list[tuple[str, tuple, tuple, str, float]]:
    """What the controls ask, as ``(question, a, b, set, nan)`` (the paper has no claim)."""
    out = []
    for set_name in (col.COVARIATE, col.PRIOR, col.RELATION, VALIDATION):
        label = col.set_label(set_name)
        out.append((f"learned w vs fixed w (CAL vs CAL, fixed w) on {label}",
                    ("cal_fixed_w", "", 0), ("cal", "", 0), set_name, np.nan))
        out.append((f"w step per SAL step vs per epoch (CAL) on {label}",
                    ("cal[w_reset=every_update,w_update=epoch]", "", 0), ("cal", "", 0),
                    set_name, np.nan))
    for target, n in targeted_pairs(records):
        label = f"{col.set_label(target)}, N={n}"
        t = ("targeted", target, n)
        out += [
            (f"targeted CAL vs no attack on {label}", ("targeted_noattack", target, n), t,
             target, np.nan),
            (f"targeted CAL vs IR-net + N rows on {label}", ("plain_target", target, n), t,
             target, np.nan),
            (f"fine-tune (held-out rule) vs oracle fine-tune on {label}",
             ("finetune_oracle", target, n), ("finetune", target, n), target, np.nan),
            (f"targeted CAL vs oracle fine-tune on {label}", ("finetune_oracle", target, n), t,
             target, np.nan),
            (f"literal loop vs targeted CAL on {label}", t, (LITERAL_TARGETED, target, n), target,
             np.nan),
            (f"literal loop vs fine-tuning on {label}", ("finetune", target, n),
             (LITERAL_TARGETED, target, n), target, np.nan)]
    return out


FULL_BUDGET_TARGETED = "targeted[patience=60]"
"""Targeted CAL with a patience equal to the cpu budget: early stopping never ends it."""


def budget_comparisons(records: list[dict]) -> list[tuple[str, tuple, tuple, str, float]]:
    """Does early stopping cut targeted CAL short? (``grids/targeted_budget.yaml``)."""
    out = []
    for target, n in targeted_pairs(records):
        label = f"{col.set_label(target)}, N={n}"
        full = (FULL_BUDGET_TARGETED, target, n)
        out += [(f"no early stopping vs targeted CAL on {label}", ("targeted", target, n), full,
                 target, np.nan),
                (f"targeted CAL, no early stopping, vs fine-tuning on {label}",
                 ("finetune", target, n), full, target, np.nan)]
    return out


def budget_table(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """:func:`budget_comparisons` paired by seed, Holm-corrected as a family of their own."""
    return _directional(_comparison_rows(records, budget_comparisons(records), which))


def _budget_pairs(records: list[dict], target: str, n_target: int) -> dict[int, tuple[dict, dict]]:
    """``seed -> (targeted CAL record, the same run without early stopping)`` on one target.

    The twin is the record whose request, rebuilt as a :class:`~calkit.runs.RunConfig`, is the
    full-budget run's without its overrides, so a record of another protocol, data set or
    target draw is never paired.
    """
    def identity(request: dict) -> RunConfig:
        return replace(RunConfig.from_request(request), overrides=())

    plain = {identity(r["request"]): r for r in records
             if method_key(r["request"]) == "targeted"}
    pairs = {}
    for full in records:
        req = full["request"]
        if (method_key(req) == FULL_BUDGET_TARGETED and req.get("target_set") == target
                and int(req.get("n_target") or 0) == n_target and identity(req) in plain):
            pairs[int(req["seed"])] = (plain[identity(req)], full)
    return dict(sorted(pairs.items()))


BUDGET_HISTORY = {"val_loss": "validation, raw model", "ema_val_loss": "validation, EMA model"}
"""History columns :func:`budget_histories` follows besides the target set's raw-model loss."""


def budget_histories(records: list[dict], target: str, n_target: int) -> pd.DataFrame:
    """Per epoch: the losses that decide early stopping, and the target set's, for the budget study.

    Only the raw model's loss on the evaluated target set (the target set minus its N rows) is
    kept per epoch; the EMA model's is measured once, at the end.

    Returns:
        Long frame ``seed, epoch, measure, loss, adversarial`` (epochs counted from 1) from
        each run without early stopping whose twin (the same targeted CAL run with the
        profile's patience) is stored; ``adversarial`` is false in the warm-up.
    """
    columns = {f"{target}/loss": f"{col.set_label(target)} (minus the N rows), raw model",
               **BUDGET_HISTORY}
    rows = []
    for seed, (_, full) in _budget_pairs(records, target, n_target).items():
        history = full.get("history") or {}
        phase = history.get("phase") or []
        for key, measure in columns.items():
            for epoch, loss in enumerate(history.get(key) or []):
                rows.append({"seed": seed, "epoch": epoch + 1, "measure": measure, "loss": loss,
                             "adversarial": epoch < len(phase) and phase[epoch] != 0.0})
    return pd.DataFrame(rows, columns=["seed", "epoch", "measure", "loss", "adversarial"])


def budget_twins(records: list[dict], target: str, n_target: int) -> pd.DataFrame:
    """Per seed: where the stored targeted CAL run (the twin) ended, and what the full run did.

    The two runs differ only in their patience, so up to the twin's last epoch their
    histories should be equal; ``largest difference up to the twin's end`` checks it over
    every per-epoch loss both histories hold (0 means bit-for-bit the same run). A twin that
    early stopping did not end is the full run itself.

    Returns:
        One row per seed: the twin's epochs and whether early stopping ended it, that largest
        difference, the full run's best validation epoch (from 1) and whether it is a warm-up
        epoch, the EMA model's validation loss at its adversarial peak, at the twin's end and at
        the full run's end, each divided by its warm-up best, and the raw model's target-set
        loss: lowest in the warm-up, lowest in the adversarial epochs, at the twin's end and at
        the full run's end.
    """
    rows = []
    for seed, (stopped, full) in _budget_pairs(records, target, n_target).items():
        short, long = stopped.get("history") or {}, full.get("history") or {}
        n = len(short.get("val_loss") or [])
        shared = [k for k in short if k.endswith("loss") and k in long and k != "train_batch_loss"]
        gap = max((float(np.nanmax(np.abs(np.asarray(short[k][:n], dtype=float)
                                           - np.asarray(long[k][:n], dtype=float))))
                   for k in shared if len(long[k]) >= n and n), default=np.nan)
        ema = np.asarray(long["ema_val_loss"], dtype=float)
        warm = np.asarray(long["phase"], dtype=float) == 0.0
        curve = np.asarray(long[f"{target}/loss"], dtype=float)
        best, best_in_warmup = _best_validation_epoch(long)
        rows.append({
            "seed": seed, "twin: epochs run": n,
            "twin stopped early": bool(stopped.get("stopped_early")),
            "largest difference up to the twin's end": gap,
            "full run: best validation epoch": best + 1, "in warm-up": bool(best_in_warmup),
            "EMA val / warm-up best: peak": np.nanmax(ema[~warm]) / np.nanmin(ema[warm]),
            "EMA val / warm-up best: at the twin's end": ema[n - 1] / np.nanmin(ema[warm]),
            "EMA val / warm-up best: at the end": ema[-1] / np.nanmin(ema[warm]),
            "target (raw): lowest in warm-up": np.nanmin(curve[warm]),
            "target (raw): lowest adversarial": np.nanmin(curve[~warm]),
            "target (raw): at the twin's end": curve[n - 1],
            "target (raw): at the end": curve[-1]})
    return pd.DataFrame(rows).set_index("seed") if rows else pd.DataFrame()


def _comparison_rows(records: list[dict], comparisons: list, which: str) -> list[dict]:
    frame = metrics_frame(records, which)
    rows = []
    if frame.empty:
        return rows
    for claim, a, b, set_name, paper_change in comparisons:
        pair = _pair(frame, a, b, set_name, "loss")
        if pair["n_pairs"]:
            rows.append({"claim": claim, "paper_change": paper_change, "n": pair["n_pairs"],
                         "estimate": pair["rel"], "low": pair["rel_low"],
                         "high": pair["rel_high"], "p_value": pair["p_value"],
                         "withdrawn": withdrawal(records, a, b)})
    return rows


def withdrawal(records: list[dict], *runs: tuple) -> str:
    """Why a comparison of ``runs`` says nothing about the method, or "".

    A comparison is withdrawn when a targeted run in it did not learn its own N rows (its
    loss on them ended at or above its warm-up best: :mod:`calkit.diagnostics`): then it
    measures a recipe under which targeting did not happen, not the method.
    """
    for key, target, n in runs:
        failed, checked = unlearned_runs(records, key, target, n)
        if failed:
            return (f"{method_label(key)} did not learn its {n} target rows in {failed} of "
                    f"{checked} seeds (own-row loss ended above its warm-up best)")
    return ""


CLAIM_FAMILIES = ("all", "headline")
"""Holm families of the claims table: ``all`` (every claim the records answer, ablations
included) or ``headline`` (base CAL against the IR-net and targeted CAL against fine-tuning)."""


def claims_table(records: list[dict], which: str = "ema", family: str = "all") -> pd.DataFrame:
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
        comparisons = [c for c in comparisons if c[1][0] in ("baseline", "finetune")]
    rows = _comparison_rows(records, comparisons, which)
    if not rows:
        return pd.DataFrame()
    table = stats.verdicts(pd.DataFrame(rows)).set_index("claim")
    table["family"] = f"{family} ({len(table)} claims)"
    return table


def controls_table(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """The controls' paired comparisons.

    Columns: the relative change of the second run's loss, its 95 % t interval, the
    Holm-adjusted p across this table, and ``lower``/``higher``/``not resolved``.
    """
    return _directional(_comparison_rows(records, control_comparisons(records), which))


def _directional(rows: list[dict]) -> pd.DataFrame:
    """Comparisons without a paper value, judged by direction.

    Holm across the table, then ``lower``/``higher`` where the interval excludes zero and the
    adjusted p is below 0.05, else ``not resolved``.
    """
    if not rows:
        return pd.DataFrame()
    table = stats.directional_verdicts(pd.DataFrame(rows).drop(columns="paper_change"))
    return table.set_index("claim")


def ood_sets_of(records: list[dict]) -> list[str]:
    """The OOD sets evaluated in a group of records, in the order of their first record."""
    skip = {col.TRAIN, *col.RANDOM_SPLITS, *col.CLEAN_SPLITS}
    names: list[str] = []
    for rec in records:
        for name in rec["metrics"]["ema"]:
            if name not in skip and not name.endswith("_target") and name not in names:
                names.append(name)
    return names


def dataset_comparisons(records: list[dict]) -> list[tuple[str, tuple, tuple, str, float]]:
    """The paper's comparisons on any data set (no paper values).

    CAL vs IR-net on every OOD set and the validation splits, targeted CAL vs fine-tuning on
    every target.
    """
    out = [(f"CAL vs IR-net on {col.set_label(name)}", ("baseline", "", 0), ("cal", "", 0),
            name, np.nan) for name in [*ood_sets_of(records), VALIDATION]]
    for target, n in targeted_pairs(records):
        out.append((f"targeted CAL vs fine-tuning on {col.set_label(target)}, N={n}",
                     ("finetune", target, n), ("targeted", target, n), target, np.nan))
    return out


def dataset_table(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """Every method's MAE on every OOD set of one data set, and the paired comparisons.

    Rows: ``(method, target, N)``; columns per set: MAE mean and std over seeds (in the
    target's units). Use with :func:`dataset_claims` for the paired intervals.
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


def dataset_claims(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """Paired comparisons of :func:`dataset_comparisons`.

    Relative change of the declared loss, 95 % t interval, Holm across the table,
    ``lower``/``higher``/``not resolved``.
    """
    return _directional(_comparison_rows(records, dataset_comparisons(records), which))


def paired_points(records: list[dict], comparisons: list, which: str = "ema") -> pd.DataFrame:
    """Per-seed relative changes ``b / a - 1`` of each comparison (for dot plots)."""
    frame = metrics_frame(records, which)
    out = []
    if frame.empty:
        return pd.DataFrame(columns=["claim", "seed", "change"])
    keyed = frame.assign(key=frame["method"] + "@" + frame["target_set"] + ":"
                         + frame["n_target"].astype(str))
    for claim, a, b, set_name, _ in comparisons:
        ka, kb = (f"{m}@{t}:{n}" for m, t, n in (a, b))
        sub = keyed[keyed["set"] == set_name]
        left = sub[sub["key"] == ka].set_index("seed")["loss"]
        right = sub[sub["key"] == kb].set_index("seed")["loss"]
        both = left.index.intersection(right.index)
        out += [{"claim": claim, "seed": int(s), "change": right[s] / left[s] - 1} for s in both]
    return pd.DataFrame(out, columns=["claim", "seed", "change"])


DRAW_SEEDS = (0, 1, 2)
"""Training seeds that every set construction and target draw of ``grids/variance.yaml`` runs."""


def _reseeded(records: list[dict], offset: int) -> list[dict]:
    """Copies of records whose seeds are shifted, so that pairs of another draw stay apart."""
    return [{**r, "request": {**r["request"], "seed": r["request"]["seed"] + offset}}
            for r in records]


def _pooled(label: str, draws: list[tuple[str, list[dict], list]]) -> tuple[str, list, list]:
    """One group of every draw's records, each (draw, seed) a pair of its own."""
    runs = [c[0] for _, _, comparisons in draws for c in comparisons]
    shared = [c for c in draws[0][2] if runs.count(c[0]) == len(draws)] if draws else []
    records = [r for k, (_, group, _) in enumerate(draws) for r in _reseeded(group, 1000 * k)]
    return label, records, shared


def _draw_groups(records: list[dict], dataset: str = "mp2019",
                 protocol: str = "clean") -> list[tuple[str, list[dict], list]]:
    """The headline comparisons under each set construction and each target draw.

    Returns ``(draw label, its records on DRAW_SEEDS, its comparisons)``: CAL vs IR-net per
    set-construction seed, and targeted CAL vs fine-tuning per target-draw seed, on the
    targets that more than one draw ran (the others cannot show a draw's effect). Where there
    are several draws of a kind, a last group pools them: each (draw, training seed) is one
    pair, so its interval holds both sources of variance.
    """
    seeds = set(DRAW_SEEDS)
    mine = [r for r in records if r["request"]["seed"] in seeds]
    sets_seeds = sorted({r["request"].get("sets_seed", DEFAULT_SETS_SEED) for r in mine})
    target_seeds = sorted({r["request"].get("target_seed", DEFAULT_TARGET_SEED) for r in mine})
    set_groups, target_groups = [], []
    for sets_seed in sets_seeds:
        group = select_records(mine, protocol, sets_seed=sets_seed, dataset=dataset)
        comparisons = [c for c in paper_comparisons(group) if c[1][0] == "baseline"]
        set_groups.append((f"sets seed {sets_seed}", group, comparisons))
    for target_seed in target_seeds:
        group = select_records(mine, protocol, target_seed=target_seed, dataset=dataset)
        comparisons = [c for c in paper_comparisons(group) if c[1][0] == "finetune"]
        target_groups.append((f"target draw {target_seed}", group, comparisons))
    runs = [c[0] for _, _, comparisons in target_groups for c in comparisons]
    target_groups = [(label, group, [c for c in comparisons if runs.count(c[0]) > 1])
                     for label, group, comparisons in target_groups]
    out = []
    for kind, groups in (("set seeds", set_groups), ("target draws", target_groups)):
        groups = [g for g in groups if g[2]]
        out += groups + ([_pooled(f"{len(groups)} {kind} pooled", groups)]
                         if len(groups) > 1 else [])
    return [(label, group, comparisons) for label, group, comparisons in out if comparisons]


def draws_table(records: list[dict], dataset: str = "mp2019", protocol: str = "clean",
                which: str = "ema") -> pd.DataFrame:
    """The headline claims re-judged under other set constructions and target draws.

    One row per (claim, draw), labelled ``claim [draw]``, paired over the training seeds
    ``DRAW_SEEDS`` only, so every draw has the same seeds; verdicts as in
    :func:`claims_table` with Holm across this table. A claim whose verdict changes from draw
    to draw depends on which rows the sets or targets happen to hold.
    """
    rows = []
    for label, group, comparisons in _draw_groups(records, dataset, protocol):
        for row in _comparison_rows(group, comparisons, which):
            rows.append({**row, "claim": f"{row['claim']} [{label}]", "draw": label})
    return stats.verdicts(pd.DataFrame(rows)).set_index("claim") if rows else pd.DataFrame()


def draws_points(records: list[dict], dataset: str = "mp2019", protocol: str = "clean",
                 which: str = "ema") -> pd.DataFrame:
    """Per-seed relative changes of :func:`draws_table`'s rows (for :func:`plots.paired_dots`)."""
    frames = []
    for label, group, comparisons in _draw_groups(records, dataset, protocol):
        points = paired_points(group, comparisons, which)
        frames.append(points.assign(claim=points["claim"] + f" [{label}]"))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["claim", "seed", "change"]))


def profiles_table(groups: dict[str, list[dict]], seeds: tuple[int, ...] | None = None,
                   which: str = "ema") -> pd.DataFrame:
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
        mine = [r for r in records if seeds is None or r["request"]["seed"] in seeds]
        rows[name] = _comparison_rows(mine, paper_comparisons(mine), which)
    shared = [row["claim"] for row in next(iter(rows.values()), [])
              if all(any(r["claim"] == row["claim"] for r in other) for other in rows.values())]
    if not shared:
        return pd.DataFrame()
    columns = {}
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


def run_label(method: str, target: str, n_target: int) -> str:
    """Readable name of a run kind: ``"CAL"``, or ``"fine-tune -> relation (piezo), N=256"``."""
    label = method_label(method)
    return label + (f" -> {col.set_label(target)}, N={n_target}" if target else "")


def profiles_errors(groups: dict[str, list[dict]], seeds: tuple[int, ...] | None = None,
                    metric: str = "mae", which: str = "ema",
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
        mine = [r for r in records if seeds is None or r["request"]["seed"] in seeds]
        summary = seed_summary(mine, which, metric)
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


def warmup_selection(records: list[dict]) -> pd.DataFrame:
    """Per method key: how many seeds' raw and EMA models were selected in the warm-up.

    Such a model is the plain warm-up network, not a result of the method.
    """
    rows = [{"method": method_key(r["request"]), "target": r["request"].get("target_set") or "",
             "N": int(r["request"].get("n_target") or 0),
             "raw": bool(r.get("selected_in_warmup")),
             "ema": bool(r.get("ema_selected_in_warmup"))}
            for r in records if "selected_in_warmup" in r]
    if not rows:
        return pd.DataFrame(columns=["seeds", "raw in warm-up", "EMA in warm-up"])
    frame = pd.DataFrame(rows)
    return frame.groupby(["method", "target", "N"]).agg(
        seeds=("raw", "size"), **{"raw in warm-up": ("raw", "sum"),
                                  "EMA in warm-up": ("ema", "sum")})


# ------------------------------------------------------------------ runs and figures
def run_overview(records: list[dict]) -> pd.DataFrame:
    """One row per run: what it was, where model selection landed, and what it cost.

    ``wall s`` is the last process's wall time; ``run s`` adds the epochs that processes
    before a resume (``resumes``) computed, so it is the run's cost.
    """
    rows = []
    for rec in records:
        req = rec["request"]
        rows.append({
            "run_id": rec["run_id"], "method": method_key(req), "seed": req["seed"],
            "target": req.get("target_set") or "", "N": int(req.get("n_target") or 0),
            "selected epoch": rec.get("selected_epoch"), "epochs run": rec.get("epochs_run"),
            "protocol": req.get("protocol", "paper"),
            "EMA epoch": rec.get("ema_selected_epoch"),
            "selected in warm-up": rec.get("selected_in_warmup"),
            "EMA in warm-up": rec.get("ema_selected_in_warmup"), "diverged": rec.get("diverged"),
            "stopped early": rec.get("stopped_early"),
            "w frozen": rec.get("w_frozen"), "wall s": rec.get("wall_seconds"),
            "run s": _run_seconds(rec), "resumes": len(rec.get("resumed", [])),
            "matmul GFLOP/s": rec.get("hardware", {}).get("matmul_gflops", np.nan),
            "commit": (rec.get("git_commit") or "")[:8]})
    return pd.DataFrame(rows)


def _best_validation_epoch(history: dict) -> tuple[int, bool] | None:
    """Index of a CAL-family run's best validation loss, and whether it is a warm-up epoch."""
    val, phase = history.get("val_loss"), history.get("phase")
    if not val or not phase:
        return None
    best = int(np.nanargmin(np.asarray(val, dtype=float)))
    return best, phase[best] == 0.0


def _best_in_warmup(record: dict) -> bool | None:
    """Whether a CAL-family run's best validation loss came from a warm-up epoch."""
    found = _best_validation_epoch(record.get("history") or {})
    return None if found is None else found[1]


def early_stopping_table(records: list[dict]) -> pd.DataFrame:
    """Per kind of run: how many runs early stopping ended, and after how many epochs.

    ``of which best in warm-up`` counts the ended runs whose best validation loss came from a
    CAL warm-up epoch, so no adversarial epoch ever beat it. Fine-tunes are left out (they
    stop on their held-out target rows, by their own rule).
    """
    overview = run_overview(records)
    if not len(overview):
        return pd.DataFrame()
    overview["best in warm-up"] = [_best_in_warmup(rec) for rec in records]
    overview = overview[~overview["method"].str.startswith("finetune")]
    rows = []
    for (method, target, n_target), group in overview.groupby(["method", "target", "N"]):
        base, _, overrides = method.partition("[")
        label = run_label(base, target, n_target) + (f" [{overrides}" if overrides else "")
        stopped = group[group["stopped early"].eq(True)]  # None: a record without the flag
        epochs = stopped["epochs run"]
        rows.append({
            "run": label, "runs": len(group), "stopped early": len(stopped),
            "epochs run when stopped": (f"{int(epochs.min())}-{int(epochs.max())}"
                                        if len(epochs) else "-"),
            "of which best in warm-up": int(stopped["best in warm-up"].eq(True).sum())})
    return pd.DataFrame(rows).set_index("run")


def machine_summary(record: dict) -> str:
    """Where a record ran, with the yardstick its times should be read against.

    Machines that run calkit differ about 3x in speed, so every quoted time comes with the
    float32 matmul rate the run measured on its own device and thread count (records made
    before that rate was stored say so).
    """
    rate = record.get("hardware", {}).get("matmul_gflops")
    rate_text = ("matmul rate not recorded" if rate is None
                 else f"{rate:.1f} GFLOP/s float32 matmul")
    return _machine(record, rate_text)


def _machine(record: dict, tail: str) -> str:
    hw = record.get("hardware", {})
    where = hw.get("gpu") or hw.get("cpu") or hw.get("platform", "unknown machine")
    threads = hw.get("torch_threads")
    threads_text = "" if threads is None else f", {threads} torch thread{'s' * (threads != 1)}"
    cores = hw.get("cpu_count", "?")
    return f"{hw.get('device', '?')} ({where}{threads_text}, {cores} cores{tail and '; ' + tail})"


def machines_summary(records: Sequence[dict], shown: int = 3) -> str:
    """The machines a group of records ran on, and the matmul rates they measured.

    A group of runs made over several sessions mixes machines and records from before the
    rate was stored; quoting only one record's machine would hide both.
    """
    places = sorted({_machine(r, "") for r in records})
    more = f" and {len(places) - shown} more" if len(places) > shown else ""
    rates = [r["hardware"]["matmul_gflops"] for r in records
             if r.get("hardware", {}).get("matmul_gflops") is not None]
    if not rates:
        rate_text = "matmul rate not recorded"
    else:
        low, high = min(rates), max(rates)
        span = f"{low:.1f}" if high - low < 0.05 else f"{low:.1f}-{high:.1f}"
        rate_text = (f"{span} GFLOP/s float32 matmul, measured by {len(rates)} of "
                     f"{len(records)} runs (older records predate it)" if len(rates) < len(records)
                     else f"{span} GFLOP/s float32 matmul")
    return f"{'; '.join(places[:shown])}{more}; {rate_text}"


def _run_seconds(record: dict) -> float | None:
    """Wall time of the last process plus the epoch seconds before its last resume."""
    wall = record.get("wall_seconds")
    resumed = record.get("resumed") or [{}]
    return None if wall is None else round(wall + resumed[-1].get("seconds_before", 0.0), 1)


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


def targeting_cost(summary: pd.DataFrame, sets: tuple[str, ...] = BASE_SETS) -> pd.DataFrame:
    """Mean loss on every set for the baseline and each targeted / fine-tuned run."""
    pick = summary[summary["method"].isin(["baseline", "targeted", "finetune"])
                   & summary["set"].isin(sets)].copy()
    if pick.empty:
        return pd.DataFrame()
    pick["run"] = [run_label(m, t, int(n)) for m, t, n
                   in zip(pick["method"], pick["target_set"], pick["n_target"], strict=True)]
    table = pick.pivot_table(index="run", columns="set", values="mean")
    table = table[[s for s in sets if s in table.columns]]
    table.columns = [col.set_label(c) for c in table.columns]
    return table


TARGETED_METHODS = ("targeted", "finetune")
"""The two ways of using N target rows that the paper compares."""


def targeting_cost_change(records: list[dict], which: str = "ema") -> pd.DataFrame:
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
    rows = {}
    for method in TARGETED_METHODS:
        for target, n in targeted_pairs(records):
            label = run_label(method, target, n)
            for set_name in sets:
                pair = _pair(frame, ("baseline", "", 0), (method, target, n), set_name, "loss")
                if pair["n_pairs"]:
                    rows.setdefault(label, {})[col.set_label(set_name)] = format_change(
                        pair["rel"], pair["rel_low"], pair["rel_high"])
            failed, checked = unlearned_runs(records, method, target, n)
            if label in rows and checked:
                rows[label]["learned its rows"] = f"{checked - failed} of {checked} seeds"
    return pd.DataFrame.from_dict(rows, orient="index").fillna("-")


def find_record(records: list[dict], method: str, target_set: str | None = None,
                n_target: int = 0, seed: int = 0) -> dict | None:
    """The record of one run without overrides, or ``None``."""
    for rec in records:
        req = rec["request"]
        if (req["method"] == method and not req.get("overrides") and req["seed"] == seed
                and req.get("target_set") == target_set
                and int(req.get("n_target") or 0) == n_target):
            return rec
    return None


def shared_predictions(records: dict[str, dict | None], set_name: str) -> dict:
    """``label -> (y, pred)`` on the rows of ``set_name`` that every given record evaluated.

    Targeted runs remove their N rows from the set; restricting every model to the common
    rows makes the parity panels comparable.
    """
    present = {k: r for k, r in records.items() if r and set_name in r.get("predictions", {})}
    if not present:
        return {}
    common = set.intersection(*(set(r["predictions"][set_name]["id"]) for r in present.values()))
    panels = {}
    for label, rec in present.items():
        preds = rec["predictions"][set_name]
        keep = [i for i, rid in enumerate(preds["id"]) if rid in common]
        panels[label] = (np.asarray(preds["y"])[keep], np.asarray(preds["pred"])[keep])
    return panels


# ------------------------------------------------------------------ what helps OOD
def versus_baseline_table(records: list[dict], methods: tuple[str, ...] = ("cal", *BASELINES),
                          sets: tuple[str, ...] = OOD_TABLE_SETS,
                          which: str = "ema") -> pd.DataFrame:
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
        for method in ("baseline", *methods):
            mean, std, n = _stats(summary, method, set_name)
            if not n:
                continue
            row = {"set": set_name, "method": method, "mean": mean, "std": std, "n": n}
            if method != "baseline":
                row.update(_pair(frame, ("baseline", "", 0), (method, "", 0), set_name, "loss"))
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
        pair = _pair(frame, (first, "", 0), (second, "", 0), set_name, "loss")
        if pair["n_pairs"] >= 2 and pair["rel_low"] > 0:
            table.loc[ranked.index[0], "best"] = True
    return table.set_index(["set", "method"])


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
        if method != "baseline" and np.isfinite(row.get("rel", np.nan)):
            text += f" ({format_change(row['rel'], row['rel_low'], row['rel_high'])})"
        cells[(method_label(method), col.set_label(set_name))] = \
            f"**{text}**" if row["best"] else text
    out = pd.Series(cells).unstack()
    order = [method_label(m) for m in dict.fromkeys(table.index.get_level_values("method"))]
    sets = [col.set_label(s) for s in dict.fromkeys(table.index.get_level_values("set"))]
    return out.reindex(index=order, columns=sets).fillna("-")


def ood_flag_table(records: list[dict], methods: tuple[str, ...] = ("ensemble", "rf")
                   ) -> pd.DataFrame:
    """How well each model's spread flags OOD rows and ranks its own errors.

    Rows ``(method, set)``; columns: AUROC of telling the set's rows from validation rows by
    the spread (0.5 is chance), and the mean absolute error of the most and least confident
    halves of the set, each as mean and std over seeds.
    """
    rows = []
    for rec in records:
        method = rec["request"]["method"]
        if method not in methods or rec["request"].get("overrides") or "risk_coverage" not in rec:
            continue
        for set_name, curve in rec["risk_coverage"].items():
            rows.append({"method": method, "set": set_name, "seed": rec["request"]["seed"],
                         "auroc": rec["spread_auroc"].get(set_name, np.nan),
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


def baseline_findings(table: pd.DataFrame, flags: pd.DataFrame) -> list[str]:
    """The "what came out" of the baselines chapter, as sentences written from the tables.

    Args:
        table: :func:`versus_baseline_table`.
        flags: :func:`ood_flag_table`.

    Returns:
        One sentence each: the methods resolved lower and higher than the IR-net (Holm-adjusted
        p below 0.05 and an interval that excludes zero), each method's AUROC range, and the
        sets where the spread ranks the errors the wrong way round (the confident half has
        the larger mean error).
    """
    lines: list[str] = []
    if len(table):
        compared = table.dropna(subset=["rel"])
        resolved = (compared["p_holm"] < 0.05) & ((compared["rel_high"] < 0)
                                                  | (compared["rel_low"] > 0))
        for word, side in (("lower", compared["rel"] < 0), ("higher", compared["rel"] > 0)):
            hits = compared[resolved & side]
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
    for rec in records:
        if rec["request"]["method"] == method and "risk_coverage" in rec:
            for set_name, curve in rec["risk_coverage"].items():
                curves.setdefault(set_name, []).append(curve["risk"])
    if not curves:
        return pd.DataFrame()
    points = len(next(iter(curves.values()))[0])
    coverage = np.arange(1, points + 1) / points
    return pd.DataFrame({name: np.mean(values, axis=0) for name, values in curves.items()},
                        index=pd.Index(coverage, name="coverage"))


# ------------------------------------------------------------------ display
def _change_formatter(estimate: float):
    """The formatter of a change's row: percent, or the ratio ``b / a`` where it explodes.

    Percent between -50 % and +100 %; beyond, where a percentage explodes on a small
    denominator, the ratio.
    """
    as_ratio = not -0.5 < estimate < 1.0
    return (lambda v: f"{1 + v:.3g}x") if as_ratio else (lambda v: f"{v:+.1%}")


def format_change(estimate: float, low: float = np.nan, high: float = np.nan) -> str:
    """A relative change ``b / a - 1`` with its interval, for a page.

    Percentages between -50 % and +100 %; beyond, the ratio ``b / a`` (``"190x [145x, 248x]"``).
    A missing or infinite interval (one seed) prints the estimate alone.
    """
    one = _change_formatter(estimate)
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{one(estimate)} (no interval)"
    return f"{one(estimate)} [{one(low)}, {one(high)}]"


def change_columns(estimate: pd.Series, low: pd.Series, high: pd.Series) -> pd.DataFrame:
    """A change and its 95 % interval as three columns of page strings (same unit per row)."""
    rows = []
    for e, lo, hi in zip(estimate, low, high, strict=True):
        one = _change_formatter(e)
        finite = np.isfinite(lo) and np.isfinite(hi)
        rows.append({"change": one(e), "95 % low": one(lo) if finite else "-",
                     "95 % high": one(hi) if finite else "-"})
    return pd.DataFrame(rows, index=estimate.index)


def mean_std_cells(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A table for a page: ``<x> mean`` / ``<x> std`` pairs as ``mean ± std`` strings.

    Every such pair becomes one ``<x>`` column; other columns are kept as they are.
    """
    out = pd.DataFrame(index=table.index)
    for name in table.columns:
        if name.endswith(" std") and f"{name[:-4]} mean" in table.columns:
            continue
        if name.endswith(" mean") and f"{name[:-5]} std" in table.columns:
            stem = name[:-5]
            out[stem] = [("-" if not np.isfinite(m) else f"{m:.{digits}f}") if not np.isfinite(s)
                         else f"{m:.{digits}f} ± {s:.{digits}f}"
                         for m, s in zip(table[name], table[f"{stem} std"], strict=True)]
        else:
            out[name] = table[name]
    return out


def change_cells(table: pd.DataFrame, estimate: str = "estimate", low: str = "low",
                 high: str = "high", p_column: str = "p_holm") -> pd.DataFrame:
    """A comparison table for a page.

    Columns: the change and the two ends of its 95 % interval (:func:`change_columns`),
    seeds, Holm p and the verdict (lower is better: -10 % means the second method's loss is
    10 % lower).
    """
    out = change_columns(table[estimate], table[low], table[high])
    for name, label in (("n", "seeds"), ("n_pairs", "seeds")):
        if name in table:
            out[label] = table[name].astype(int)
    out["p (Holm)"] = [f"{p:.3f}" if np.isfinite(p) else "-" for p in table[p_column]]
    if "verdict" in table:
        out["verdict"] = table["verdict"]
    return out


def display(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A table for a page; the numbers themselves stay in ``table``.

    Cells become ``mean ± std``, relative changes become percentages with their interval,
    and sets and methods get their labels.
    """
    out = pd.DataFrame(index=table.index)
    cols = list(table.columns)
    done: set[str] = set()
    for c in cols:
        if c in done:
            continue
        stem = c[: -len(" mean")] if c.endswith(" mean") else None
        if stem and f"{stem} std" in cols:
            n = table.get(f"{stem} n")
            out[f"{method_label(stem)} (ours)"] = [
                "-" if not np.isfinite(m) else f"{m:.{digits}f}" if (k is None or k < 2)
                else f"{m:.{digits}f} ± {s:.{digits}f}"
                for m, s, k in zip(table[c], table[f"{stem} std"],
                                   n if n is not None else [None] * len(table), strict=True)]
            done |= {c, f"{stem} std", f"{stem} n"}
        elif c.endswith(" rel") and f"{c[:-4]} rel_low" in cols:
            stem = c[:-4]
            out[f"{stem} (ours)"] = [
                "-" if not np.isfinite(r) else format_change(r, lo, hi)
                for r, lo, hi in zip(table[c], table[f"{stem} rel_low"], table[f"{stem} rel_high"],
                                     strict=True)]
            done |= {c, f"{stem} rel_low", f"{stem} rel_high"}
        elif c.endswith(" paper") and not c.startswith(("CAL vs", "targeted vs")):
            out[f"{method_label(c[:-6])} (paper)"] = table[c].map(
                lambda v: "-" if not np.isfinite(v) else f"{v:.{digits}f}")
            done.add(c)
        elif c.endswith(" vs IR-net paper") or c.endswith(" vs fine-tune paper"):
            out[c.replace(" paper", " (paper)")] = table[c].map(
                lambda v: "-" if not np.isfinite(v) else f"{v:+.1%}")
            done.add(c)
    if isinstance(out.index, pd.MultiIndex):
        out.index = out.index.set_levels(
            [[col.set_label(v) if isinstance(v, str) else v for v in level]
             for level in out.index.levels])
    else:
        out.index = [col.set_label(i) for i in out.index]
    return out


def display_ablation(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The ablation table for a page: one row per method (ours, then the paper's)."""
    rows = []
    for method in dict.fromkeys(table.index.get_level_values("method")):
        part = table.loc[method]
        ours = {s: "-" if not np.isfinite(r["mean"]) else
                f"{r['mean']:.{digits}f}" + (f" ± {r['std']:.{digits}f}" if r["n"] > 1 else "")
                for s, r in part.iterrows()}
        paper = {s: "-" if not np.isfinite(v) else f"{v:.{digits}f}"
                 for s, v in part["paper"].items()}
        n_seeds = int(part["n"].max())
        warm = int(part["in_warmup"].iloc[0]) if "in_warmup" in part else 0
        note = {"ours": f"{warm} of {n_seeds} seeds: warm-up network" if warm else "",
                "paper": ""}
        for source, cells in (("ours", ours), ("paper", paper)):
            rows.append({"method": method_label(method), "source": source,
                         **{col.set_label(s): v for s, v in cells.items()},
                         "selected in warm-up": note[source]})
    return pd.DataFrame(rows).set_index(["method", "source"])


def display_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table for a page, narrow enough for the content column.

    Columns: the paper's change, ours with its 95 % interval, seeds and the verdict word; the
    Holm p-values and the verdicts' reasons are :func:`claims_detail`'s.
    """
    if table.empty:
        return table
    return pd.DataFrame({
        "paper": table["paper_change"].map(lambda v: f"{v:+.1%}"),
        "ours [95 %]": [format_change(e, lo, hi) for e, lo, hi
                        in zip(table["estimate"], table["low"], table["high"], strict=True)],
        "seeds": table["n"],
        "verdict": table["verdict"],
    }, index=table.index)


def claims_detail(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table's detail: Holm family, adjusted p-value and the verdict's reason."""
    if table.empty:
        return table
    return pd.DataFrame({
        "family": table["family"] if "family" in table else "",
        "p (Holm)": table["p_holm"].map(lambda v: "-" if not np.isfinite(v) else f"{v:.3f}"),
        "why": table["verdict_text"],
    }, index=table.index)
