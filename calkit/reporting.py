"""Result tables: run records aggregated over seeds, beside the paper's reported numbers.

The paper reports smooth-L1 ("loss", eV/atom) of the EMA model; these tables do the same by
default and can show MAE. A difference is marked "within noise" when it is smaller than two
standard errors of the difference of the seed means (Welch-style, from the seed spread).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.experiments import metrics_frame

VALIDATION = "validation"
"""Pseudo-set name: the mean of the five random splits (the paper's "validation")."""

# Section 6 of the reconstruction notes: smooth-L1 on delta_e, EMA model.
PAPER_BASE = pd.DataFrame(
    {
        "baseline": {
            col.TRAIN: 0.0011,
            col.COVARIATE: 0.0841,
            col.PRIOR: 0.1602,
            col.RELATION: 0.0840,
            VALIDATION: 0.0830,
            col.HIGH_GAP: 0.1400,
        },
        "cal": {
            col.TRAIN: 0.0061,
            col.COVARIATE: 0.0856,
            col.PRIOR: 0.1564,
            col.RELATION: 0.0781,
            VALIDATION: 0.0851,
            col.HIGH_GAP: 0.1388,
        },
    }
)

PAPER_TARGETED = pd.DataFrame(
    [
        {"target_set": col.COVARIATE, "n_target": None, "finetune": 0.0738, "targeted": 0.0647},
        {"target_set": col.PRIOR, "n_target": 1024, "finetune": 0.0154, "targeted": 0.0096},
        {"target_set": col.RELATION, "n_target": 256, "finetune": 0.1176, "targeted": 0.0336},
        {"target_set": col.RELATION, "n_target": 128, "finetune": 0.1042, "targeted": 0.0584},
    ]
)

ABLATION_SETS = (col.TRAIN, VALIDATION, col.COVARIATE, col.PRIOR, col.RELATION)
PAPER_ABLATION = pd.DataFrame(
    {
        "cal": (0.0061, 0.0851, 0.0856, 0.1564, 0.0781),
        "pg_first": (0.0296, 0.1206, 0.1230, 0.3609, 0.1111),
        "pg_last": (0.0071, 0.0880, 0.0907, 0.1919, 0.0826),
        "aa": (0.0487, 0.1299, 0.1226, 0.2548, 0.1027),
        "ps": (0.0204, 0.0903, 0.1030, 0.1729, 0.0839),
        "irnet3": (0.0059, 0.0837, 0.0832, 0.1676, 0.0822),
    },
    index=list(ABLATION_SETS),
).T

METHOD_LABELS = {
    "baseline": "IR-net",
    "cal": "CAL",
    "targeted": "targeted CAL",
    "finetune": "fine-tune",
    "pg_first": "PG 1st",
    "pg_last": "PG Last",
    "aa": "AA",
    "ps": "PS",
    "irnet3": "IRnet-3",
}


VARIANT_LABELS = {"supervised_on_all=False": "literal loop"}
"""Short names of config-override variants that the grids run."""


def method_label(key: str) -> str:
    """Readable label of a method key such as ``cal[supervised_on_all=False]``."""
    base, _, variant = key.partition("[")
    label = METHOD_LABELS.get(base, base)
    if variant:
        variant = variant.rstrip("]")
        label += ", " + VARIANT_LABELS.get(variant, variant)
    return label


def with_validation(frame: pd.DataFrame) -> pd.DataFrame:
    """Add one ``validation`` row per run: the mean of its random-split rows."""
    rsplt = frame[frame["set"].isin(col.RANDOM_SPLITS)]
    if rsplt.empty:
        return frame
    keys = ["run_id", "method", "seed", "target_set", "n_target"]
    mean = rsplt.groupby(keys, dropna=False).mean(numeric_only=True).reset_index()
    mean["set"] = VALIDATION
    return pd.concat([frame, mean[frame.columns]], ignore_index=True)


def seed_summary(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Mean, std and count over seeds of one metric, per method / target / set."""
    frame = with_validation(metrics_frame(records, which))
    if frame.empty:
        return pd.DataFrame(columns=["method", "target_set", "n_target", "set", "mean", "std", "n"])
    frame["target_set"] = frame["target_set"].fillna("")
    grouped = frame.groupby(["method", "target_set", "n_target", "set"])[metric]
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _difference(a_mean, a_std, a_n, b_mean, b_std, b_n) -> tuple[float, bool]:
    """Relative change of b over a and whether it is within two standard errors."""
    se = np.sqrt(a_std**2 / max(a_n, 1) + b_std**2 / max(b_n, 1))
    within = bool(abs(b_mean - a_mean) <= 2 * se) if (a_n > 1 and b_n > 1) else False
    return (b_mean - a_mean) / a_mean, within


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def _cell(hit: pd.DataFrame) -> str:
    """``mean ± std`` of the first summary row, or ``-`` when there is none."""
    return _fmt(*hit.iloc[0][["mean", "std", "n"]]) if len(hit) else "-"


def base_table(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """The paper's "base CAL vs plain IR-net" table with ours beside it."""
    summary = seed_summary(records, which, metric)
    variants = sorted(m for m in set(summary["method"]) if m.startswith("cal["))
    rows = []
    for set_name in PAPER_BASE.index:
        row = {"set": col.SET_LABELS.get(set_name, set_name)}
        stats = {}
        for method in ("baseline", "cal", *variants):
            hit = summary[(summary["method"] == method) & (summary["set"] == set_name)]
            stats[method] = hit.iloc[0] if len(hit) else None
            label = method_label(method)
            row[f"{label} (ours)"] = _cell(hit)
            if metric == "loss" and method in PAPER_BASE.columns:
                row[f"{label} (paper)"] = PAPER_BASE.loc[set_name, method]
        if stats["baseline"] is not None and stats["cal"] is not None:
            a, b = stats["baseline"], stats["cal"]
            change, within = _difference(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
            row["CAL vs IR-net (ours)"] = f"{change:+.1%}" + (" (within noise)" if within else "")
        if metric == "loss":
            paper = PAPER_BASE.loc[set_name]
            row["CAL vs IR-net (paper)"] = (
                f"{(paper['cal'] - paper['baseline']) / paper['baseline']:+.1%}"
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("set")


def targeted_table(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Targeted CAL vs fine-tuning, each evaluated on the target set minus its N rows."""
    summary = seed_summary(records, which, metric)
    present = summary[summary["method"].isin(["targeted", "finetune"])]
    rows = []
    for (target, n_target), _ in present.groupby(["target_set", "n_target"]):
        pick = summary[
            (summary["target_set"] == target)
            & (summary["n_target"] == n_target)
            & (summary["set"] == target)
        ]
        stats = {m: pick[pick["method"] == m] for m in ("finetune", "targeted")}
        base = summary[(summary["method"] == "baseline") & (summary["set"] == target)]
        row = {"target": col.SET_LABELS.get(target, target), "N": int(n_target)}
        row["IR-net, no tuning (ours)"] = _cell(base)
        for m in ("finetune", "targeted"):
            row[f"{METHOD_LABELS[m]} (ours)"] = _cell(stats[m])
        if len(stats["finetune"]) and len(stats["targeted"]):
            a, b = stats["finetune"].iloc[0], stats["targeted"].iloc[0]
            change, within = _difference(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
            row["improvement (ours)"] = f"{-change:+.1%}" + (" (within noise)" if within else "")
        paper = PAPER_TARGETED[
            (PAPER_TARGETED["target_set"] == target)
            & ((PAPER_TARGETED["n_target"] == n_target) | PAPER_TARGETED["n_target"].isna())
        ]
        if metric == "loss" and len(paper):
            p = paper.iloc[0]
            row["fine-tune (paper)"] = p["finetune"]
            row["targeted CAL (paper)"] = p["targeted"]
            row["improvement (paper)"] = f"{(p['finetune'] - p['targeted']) / p['finetune']:+.1%}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["target", "N"]) if rows else pd.DataFrame()


def ablation_table(records: list[dict], which: str = "ema", metric: str = "loss") -> pd.DataFrame:
    """Ablation rows (mean ± std over seeds) with the paper's value under each."""
    summary = seed_summary(records, which, metric)
    rows = []
    for method in PAPER_ABLATION.index:
        ours = {"method": METHOD_LABELS[method], "source": "ours"}
        for set_name in ABLATION_SETS:
            hit = summary[
                (summary["method"] == method)
                & (summary["set"] == set_name)
                & (summary["target_set"] == "")
            ]
            ours[col.SET_LABELS.get(set_name, set_name)] = _cell(hit)
        rows.append(ours)
        if metric == "loss":
            paper = {"method": METHOD_LABELS[method], "source": "paper"}
            for set_name in ABLATION_SETS:
                paper[col.SET_LABELS.get(set_name, set_name)] = (
                    f"{PAPER_ABLATION.loc[method, set_name]:.4f}"
                )
            rows.append(paper)
    return pd.DataFrame(rows).set_index(["method", "source"])


def run_overview(records: list[dict]) -> pd.DataFrame:
    """One row per run: what it was, where model selection landed, and what it cost."""
    rows = []
    for rec in records:
        cfg = rec["config"]
        rows.append(
            {
                "run_id": rec["run_id"],
                "method": cfg["method"],
                "seed": cfg["seed"],
                "target": cfg.get("target_set") or "",
                "N": cfg.get("n_target", 0),
                "best epoch": rec.get("best_epoch"),
                "epochs run": rec.get("epochs_run"),
                "selected in warm-up": rec.get("selected_in_warmup"),
                "diverged": rec.get("diverged"),
                "w frozen": rec.get("w_frozen"),
                "wall s": rec.get("wall_seconds"),
                "commit": (rec.get("git_commit") or "")[:8],
            }
        )
    return pd.DataFrame(rows)


BAR_SETS = (col.TRAIN, VALIDATION, col.COVARIATE, col.PRIOR, col.RELATION, col.HIGH_GAP)


def set_means(
    summary: pd.DataFrame, methods: list[str], sets: tuple[str, ...] = BAR_SETS, target: str = ""
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Wide mean and std tables (rows = set labels, columns = method labels) for bar charts."""
    pick = summary[
        summary["method"].isin(methods)
        & (summary["target_set"] == target)
        & summary["set"].isin(sets)
    ]
    order = [s for s in sets if s in set(pick["set"])]
    means = pick.pivot(index="set", columns="method", values="mean").reindex(order)
    stds = pick.pivot(index="set", columns="method", values="std").reindex(order)
    columns = [m for m in methods if m in means.columns]
    means, stds = means[columns], stds[columns]
    for table in (means, stds):
        table.index = [col.SET_LABELS.get(i, i) for i in table.index]
        table.columns = [method_label(m) for m in table.columns]
    return means, stds


def targeting_cost(summary: pd.DataFrame, sets: tuple[str, ...] = BAR_SETS) -> pd.DataFrame:
    """Mean loss on every set for the baseline and each targeted / fine-tuned run."""
    pick = summary[
        summary["method"].isin(["baseline", "targeted", "finetune"]) & summary["set"].isin(sets)
    ].copy()
    if pick.empty:
        return pd.DataFrame()

    def run_label(row: pd.Series) -> str:
        label = method_label(row["method"])
        if row["target_set"]:
            label += f" -> {col.SET_LABELS.get(row['target_set'], row['target_set'])}"
            label += f", N={int(row['n_target'])}"
        return label

    pick["run"] = pick.apply(run_label, axis=1)
    table = pick.pivot_table(index="run", columns="set", values="mean")
    table = table[[s for s in sets if s in table.columns]]
    table.columns = [col.SET_LABELS.get(c, c) for c in table.columns]
    return table


def find_record(
    records: list[dict],
    method: str,
    target_set: str | None = None,
    n_target: int = 0,
    seed: int = 0,
) -> dict | None:
    """The record of one plain (no overrides) run, or ``None``."""
    for rec in records:
        cfg = rec["config"]
        if (
            cfg["method"] == method
            and not cfg.get("overrides")
            and cfg["seed"] == seed
            and cfg.get("target_set") == target_set
            and cfg.get("n_target", 0) == n_target
        ):
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


def _verdict(paper_change: float, our_change: float, within_noise: bool) -> str:
    if within_noise:
        return "not resolved (within seed noise)"
    return "reproduces" if np.sign(paper_change) == np.sign(our_change) else "does not reproduce"


def claims_table(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """The paper's comparative claims, each with its change, ours, and a verdict.

    A claim "reproduces" when our change has the paper's sign and is outside seed noise,
    "does not reproduce" when it has the opposite sign outside noise, and is "not resolved"
    otherwise. Changes are relative, in smooth-L1 loss (negative = lower loss).
    """
    summary = seed_summary(records, which, "loss")

    def stats(method: str, set_name: str, target: str = "", n_target: int = 0):
        hit = summary[
            (summary["method"] == method)
            & (summary["set"] == set_name)
            & (summary["target_set"] == target)
            & (summary["n_target"] == n_target)
        ]
        return hit.iloc[0] if len(hit) else None

    rows = []
    for set_name in (col.COVARIATE, col.PRIOR, col.RELATION, col.HIGH_GAP, VALIDATION):
        a, b = stats("baseline", set_name), stats("cal", set_name)
        if a is None or b is None:
            continue
        ours, within = _difference(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
        paper = PAPER_BASE.loc[set_name]
        paper_change = (paper["cal"] - paper["baseline"]) / paper["baseline"]
        rows.append(
            {
                "claim": f"CAL vs IR-net on {col.SET_LABELS.get(set_name, set_name)}",
                "paper": f"{paper_change:+.1%}",
                "ours": f"{ours:+.1%}",
                "verdict": _verdict(paper_change, ours, within),
            }
        )
    for _, p in PAPER_TARGETED.iterrows():
        target = p["target_set"]
        n_target = int(p["n_target"]) if pd.notna(p["n_target"]) else 1024
        a = stats("finetune", target, target, n_target)
        b = stats("targeted", target, target, n_target)
        if a is None or b is None:
            continue
        ours, within = _difference(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
        paper_change = (p["targeted"] - p["finetune"]) / p["finetune"]
        rows.append(
            {
                "claim": f"targeted CAL vs fine-tuning on {col.SET_LABELS.get(target, target)}, "
                f"N={n_target}",
                "paper": f"{paper_change:+.1%}",
                "ours": f"{ours:+.1%}",
                "verdict": _verdict(paper_change, ours, within),
            }
        )
    for method in ("pg_first", "pg_last", "aa", "ps", "irnet3"):
        for set_name in (col.COVARIATE, col.PRIOR, col.RELATION):
            a, b = stats("cal", set_name), stats(method, set_name)
            if a is None or b is None:
                continue
            ours, within = _difference(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
            reference = PAPER_ABLATION.loc["cal", set_name]
            paper_change = (PAPER_ABLATION.loc[method, set_name] - reference) / reference
            label = col.SET_LABELS.get(set_name, set_name)
            rows.append(
                {
                    "claim": f"{METHOD_LABELS[method]} vs CAL on {label}",
                    "paper": f"{paper_change:+.1%}",
                    "ours": f"{ours:+.1%}",
                    "verdict": _verdict(paper_change, ours, within),
                }
            )
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()
