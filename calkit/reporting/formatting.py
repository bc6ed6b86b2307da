"""Tables for a page: the numbers stay in the numeric frames, these turn them into strings.

Relative changes print as percentages between -50 % and +100 % and as ratios beyond
(:func:`format_change`); ``mean ± std`` cells, labelled sets and methods.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.methods import method_label


def _change_formatter(estimate: float) -> Callable[[float], str]:
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


def _run_label(method: str, target_set: str, n_target: int) -> str:
    """``targeted CAL -> relation (piezo), N = 256``; the method alone when it has no target."""
    if not target_set:
        return method_label(method)
    return f"{method_label(method)} -> {col.set_label(target_set)}, N = {int(n_target):,}"


def display_replication(table: pd.DataFrame) -> pd.DataFrame:
    """The replication table (:func:`calkit.replication.replication_table`) narrow for a page.

    One row label (run, set, model); ours as ``mean ± std``; rows without our runs dropped.
    """
    have = table[table["seeds"] > 0]
    if have.empty:
        return pd.DataFrame()
    label = [f"{_run_label(m, t, n)}: {col.set_label(s)}, {model}" for m, t, n, s, model
             in zip(have["method"], have["target_set"], have["n_target"], have["set"],
                    have["model"], strict=True)]
    ours = [f"{m:.4f}" if not np.isfinite(sd) else f"{m:.4f} ± {sd:.4f}"
            for m, sd in zip(have["ours"], have["ours_std"], strict=True)]
    return pd.DataFrame({"theirs": have["theirs"].map("{:.4f}".format).to_numpy(), "ours": ours,
                         "seeds": have["seeds"].to_numpy(),
                         "ours / theirs": have["ratio"].map("{:.2f}".format).to_numpy()},
                        index=pd.Index(label, name="run: set, model"))


def display_factors(table: pd.DataFrame) -> pd.DataFrame:
    """The what-breaks-targeting table (:func:`calkit.diagnostics.factor_table`) for a page.

    The own-row ratio as ``median [min, max]``, the seeds that learned their rows as
    ``k of n``, and the last-epoch losses on the own rows and the held-out target rows.
    """
    if table.empty:
        return pd.DataFrame()
    label = [f"{setting}; {col.set_label(t)}, N = {int(n):,}" for setting, t, n
             in zip(table["setting"], table["target_set"], table["n_target"], strict=True)]
    ratio = [f"{med:.3g} [{lo:.3g}, {hi:.3g}]" for med, lo, hi
             in zip(table["ratio_median"], table["ratio_min"], table["ratio_max"], strict=True)]
    learned = [f"{int(k)} of {int(n)}" for k, n in zip(table["learned"], table["seeds"],
                                                       strict=True)]
    return pd.DataFrame({"own-row ratio": ratio, "learned": learned,
                         "own rows": table["own_final"].map("{:.4f}".format).to_numpy(),
                         "held out": table["heldout"].map("{:.4f}".format).to_numpy()},
                        index=pd.Index(label, name="setting (target, N)"))
