"""Paired comparisons across seeds: differences, intervals, p-values, Holm and verdicts.

Numbers only: every function here takes and returns arrays, dataclasses or numeric
DataFrames; formatting for tables and figures is left to the caller (the one exception is
the ``verdict_text`` column of :func:`verdicts`, a sentence meant to be read as is).

Conventions used throughout:

* **Pairing.** Two methods ``a`` (the reference, e.g. the baseline) and ``b`` (the
  candidate, e.g. CAL) are compared on runs that share a pairing key, normally the seed.
  Rows without a partner, or whose value (or whose partner's value) is missing, are dropped
  and reported in :attr:`Pairs.dropped`; they are never silently averaged in.
* **Difference.** ``diff = b - a`` per pair. For a loss (lower is better) a negative
  difference means ``b`` is better.
* **Relative change.** The paired *ratio* on log scale: with ``r_i = b_i / a_i`` the
  estimate is ``exp(mean(log r_i)) - 1`` (the geometric-mean ratio minus one) and its
  interval is the interval of ``mean(log r_i)`` with both ends mapped through
  ``exp(.) - 1``. Lower is better: ``-0.10`` (-10 %) means ``b``'s loss is, typically over
  the seeds, 10 % lower than ``a``'s. The interval is asymmetric on the percent scale and
  never goes below -100 %. It needs strictly positive values (losses, MAE); its p-value is
  the paired t-test on the log ratios.
* **Holm.** :func:`verdicts` applies Holm-Bonferroni across all rows of the table it is
  given (one call = one family of claims); rows with a missing p-value are left out of the
  family. Intervals are *not* Holm-adjusted; a claim only "holds" when its unadjusted
  interval excludes zero on the paper's side *and* its Holm-adjusted p-value is below alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

IntervalMethod = Literal["t", "bootstrap"]

VERDICTS = ("holds", "reversed", "not resolved")
"""The three possible values of the ``verdict`` column of :func:`verdicts` for a claim that
is not withdrawn."""
WITHDRAWN = "withdrawn"
"""The verdict of a comparison that says nothing about the method (see :func:`verdicts`)."""
Verdict = Literal["holds", "reversed", "not resolved", "withdrawn"]
Direction = Literal["lower", "higher", "not resolved", "withdrawn"]

_BOOT_CHUNK = 2_000_000  # resampled values drawn at once by the bootstrap (memory bound)


# --------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Pairs:
    """Paired values of two methods and the rows that could not be paired.

    Attributes:
        a: Name of the reference method (the ``a`` in ``b - a``).
        b: Name of the compared method.
        pair_on: The columns that define a pair (e.g. ``("seed",)``).
        value: The value column that was compared (e.g. ``"loss"``).
        table: One row per pair, sorted by the pairing key: the key columns, then ``a``
            and ``b`` (the two values), ``diff`` (``b - a``) and ``ratio`` (``b / a``).
        dropped: The rows of the input that were not used: the method column, the key
            columns, the value column and a ``reason`` (``"no partner"``, ``"missing
            value"`` or ``"partner value missing"``).
    """

    a: str
    b: str
    pair_on: tuple[str, ...]
    value: str
    table: pd.DataFrame
    dropped: pd.DataFrame

    @property
    def n(self) -> int:
        """Number of complete pairs."""
        return len(self.table)

    @property
    def n_dropped(self) -> int:
        """Number of input rows (of ``a`` or ``b``) that were dropped."""
        return len(self.dropped)

    @property
    def diffs(self) -> np.ndarray:
        """The per-pair differences ``b - a`` as a float array."""
        return self.table["diff"].to_numpy(dtype=float)

    @property
    def ratios(self) -> np.ndarray:
        """The per-pair ratios ``b / a`` as a float array."""
        return self.table["ratio"].to_numpy(dtype=float)


def paired_differences(
    frame: pd.DataFrame,
    a: str,
    b: str,
    *,
    by: str = "method",
    pair_on: str | Sequence[str] = "seed",
    value: str = "loss",
) -> Pairs:
    """Pair the runs of two methods on a shared key and take ``b - a`` and ``b / a``.

    The frame is long: one row per run (and per set, if it holds several). Filter it to one
    set first, or include the set column in ``pair_on``; a key that occurs twice for the
    same method is an error rather than being averaged.

    Args:
        frame: Long results frame with columns ``by``, ``pair_on`` and ``value``.
        a: The reference method (value of column ``by``).
        b: The compared method.
        by: Column naming the method.
        pair_on: Column(s) whose values must match for two runs to form a pair.
        value: The numeric column to compare.

    Returns:
        A :class:`Pairs` with the paired table and the dropped rows (with reasons).

    Raises:
        ValueError: If a column is missing, ``a == b``, a method has no rows at all, a key
            is missing (NaN) or a key occurs more than once for one method.
    """
    keys = [pair_on] if isinstance(pair_on, str) else list(pair_on)
    if not keys:
        raise ValueError("pair_on must name at least one column")
    missing = [c for c in (by, *keys, value) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}; it has {list(frame.columns)}")
    if a == b:
        raise ValueError(f"a and b are the same method {a!r}")
    sub = frame.loc[frame[by].isin([a, b]), [by, *keys, value]].copy()
    for name in (a, b):
        if not (sub[by] == name).any():
            available = sorted(map(str, frame[by].dropna().unique()))
            raise ValueError(f"no rows with {by} == {name!r}; available: {available}")
    if sub[keys].isna().any().any():
        raise ValueError(f"missing values in the pairing column(s) {keys}")
    dup = sub.duplicated([by, *keys], keep=False)
    if dup.any():
        example = sub.loc[dup, [by, *keys]].head(4).to_dict("records")
        raise ValueError(
            f"pairing key {keys} is not unique within a method (e.g. {example}); filter the "
            f"frame to one set or add the set column to pair_on"
        )
    sub[value] = pd.to_numeric(sub[value], errors="raise").astype(float)

    side_a = sub[sub[by] == a].drop(columns=by).rename(columns={value: "a"})
    side_b = sub[sub[by] == b].drop(columns=by).rename(columns={value: "b"})
    merged = side_a.merge(side_b, on=keys, how="outer", indicator=True)
    both = merged["_merge"] == "both"
    a_nan, b_nan = merged["a"].isna(), merged["b"].isna()
    ok = both & ~a_nan & ~b_nan

    dropped_parts = []
    for name, own, alone in ((a, "a", "left_only"), (b, "b", "right_only")):
        rows = merged[merged["_merge"].isin(["both", alone]) & ~ok]
        if rows.empty:
            continue
        reason = np.select(
            [rows[own].isna(), rows["_merge"] == alone],
            ["missing value", "no partner"],
            default="partner value missing",
        )
        part = rows[keys].copy()
        part.insert(0, by, name)
        part[value] = rows[own].to_numpy()
        part["reason"] = reason
        dropped_parts.append(part)
    dropped = (
        pd.concat(dropped_parts, ignore_index=True)
        if dropped_parts
        else pd.DataFrame({by: [], **{k: [] for k in keys}, value: [], "reason": []})
    )

    table = merged.loc[ok, [*keys, "a", "b"]].sort_values(keys).reset_index(drop=True)
    table["diff"] = table["b"] - table["a"]
    with np.errstate(divide="ignore", invalid="ignore"):
        table["ratio"] = table["b"] / table["a"]
    return Pairs(a=a, b=b, pair_on=tuple(keys), value=value, table=table, dropped=dropped)


# --------------------------------------------------------------------------------------
# Intervals and p-values
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval.

    Attributes:
        estimate: The point estimate (mean difference, or relative change).
        low: Lower end; ``-inf`` when not resolvable (one pair), NaN when there is no data.
        high: Upper end; ``+inf`` when not resolvable, NaN when there is no data.
        n: Number of pairs behind the estimate.
        method: ``"t"`` or ``"bootstrap"``.
        level: Nominal coverage, e.g. 0.95.
    """

    estimate: float
    low: float
    high: float
    n: int
    method: str
    level: float

    @property
    def width(self) -> float:
        """``high - low`` (``inf`` or NaN when not resolvable)."""
        return self.high - self.low

    @property
    def resolvable(self) -> bool:
        """Whether there are at least two pairs and both ends are finite."""
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def excludes_zero(self) -> bool:
        """Whether the whole interval lies strictly on one side of zero (False if NaN)."""
        return bool(self.low > 0 or self.high < 0)


def _check_level_method(level: float, method: str) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in ("t", "bootstrap"):
        raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}")


def _as_finite_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} must be finite (drop missing pairs first)")
    return x


def paired_interval(
    diffs: Sequence[float] | np.ndarray,
    level: float = 0.95,
    method: IntervalMethod = "t",
    n_boot: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Interval for the mean of paired differences.

    ``"t"``: ``mean ± t_{n-1, (1+level)/2} * sd / sqrt(n)`` with the sample sd (ddof=1).
    ``"bootstrap"``: percentile bootstrap of the mean (``n_boot`` resamples of the pairs,
    ``numpy.random.default_rng(seed)``, so the same inputs give the same interval). With
    very few pairs the percentile bootstrap is too narrow; prefer ``"t"`` for 3-5 seeds.

    With one pair no spread can be estimated: the interval is ``(-inf, +inf)`` for both
    methods (``resolvable`` is False). With no pairs everything is NaN.

    Args:
        diffs: Per-pair differences ``b - a`` (finite).
        level: Two-sided coverage in (0, 1).
        method: ``"t"`` or ``"bootstrap"``.
        n_boot: Number of bootstrap resamples.
        seed: Seed of the bootstrap generator.

    Returns:
        The :class:`Interval` of the mean difference.

    Raises:
        ValueError: On a bad level or method, ``n_boot < 1`` or a non-finite difference.
    """
    _check_level_method(level, method)
    x = _as_finite_1d(diffs, "diffs")
    n = x.size
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, method, level)
    estimate = float(x.mean())
    if n == 1:
        return Interval(estimate, -math.inf, math.inf, 1, method, level)
    if method == "t":
        half = float(sps.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
        return Interval(estimate, estimate - half, estimate + half, n, method, level)
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        means[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = 1 - level
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high), n, method, level)


def _log_ratios(ratios: Sequence[float] | np.ndarray) -> np.ndarray:
    r = _as_finite_1d(ratios, "ratios")
    if np.any(r <= 0):
        raise ValueError("ratios must be positive (relative change needs positive a and b)")
    return np.log(r)


def paired_ratio_interval(
    ratios: Sequence[float] | np.ndarray,
    level: float = 0.95,
    method: IntervalMethod = "t",
    n_boot: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Interval for the relative change ``b / a - 1``, from paired ratios on log scale.

    The interval of ``mean(log(b_i / a_i))`` is computed with :func:`paired_interval` and
    mapped through ``exp(.) - 1``, so the estimate is the geometric-mean ratio minus one.
    Lower is better: ``-0.10`` means ``b``'s loss is 10 % lower than ``a``'s.

    Args:
        ratios: Per-pair ratios ``b_i / a_i`` (finite, positive).
        level: Two-sided coverage in (0, 1).
        method: ``"t"`` or ``"bootstrap"`` (applied to the log ratios).
        n_boot: Number of bootstrap resamples.
        seed: Seed of the bootstrap generator.

    Returns:
        The :class:`Interval` of the relative change (a fraction, not a percentage).

    Raises:
        ValueError: If a ratio is not finite and positive, or on bad options.
    """
    on_log = paired_interval(_log_ratios(ratios), level, method, n_boot, seed)
    return Interval(
        float(np.expm1(on_log.estimate)),
        float(np.expm1(on_log.low)),
        float(np.expm1(on_log.high)),
        on_log.n,
        on_log.method,
        on_log.level,
    )


def paired_p_value(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided paired t-test of ``mean(diffs) == 0``.

    Degenerate cases: fewer than two pairs gives NaN; zero spread gives 1.0 when every
    difference is zero and 0.0 otherwise (the t statistic is infinite).

    Args:
        diffs: Per-pair differences (finite). For the relative change pass the log ratios.

    Returns:
        The p-value.
    """
    x = _as_finite_1d(diffs, "diffs")
    n = x.size
    if n < 2:
        return math.nan
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    t_stat = mean / (sd / math.sqrt(n))
    return float(2 * sps.t.sf(abs(t_stat), n - 1))


def paired_ratio_p_value(ratios: Sequence[float] | np.ndarray) -> float:
    """Two-sided paired t-test of ``mean(log(b_i / a_i)) == 0`` (see :func:`paired_p_value`).

    Args:
        ratios: Per-pair ratios ``b_i / a_i`` (finite, positive).

    Returns:
        The p-value, consistent with the t interval of :func:`paired_ratio_interval`.
    """
    return paired_p_value(_log_ratios(ratios))


# --------------------------------------------------------------------------------------
# Multiple comparisons and verdicts
# --------------------------------------------------------------------------------------


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values.

    With the ``m`` p-values sorted ascending, the ``k``-th (1-based) becomes
    ``max_{j<=k} min(1, (m - j + 1) * p_(j))``; results are returned in the input order.
    NaN entries are left out of the family (``m`` counts the others) and stay NaN.

    Args:
        p_values: Raw p-values in [0, 1] (NaN allowed).

    Returns:
        Adjusted p-values, same shape as the input.

    Raises:
        ValueError: If a p-value lies outside [0, 1].
    """
    p = np.asarray(p_values, dtype=float)
    flat = p.ravel()
    out = np.full(flat.shape, math.nan)
    ok = ~np.isnan(flat)
    vals = flat[ok]
    if np.any((vals < 0) | (vals > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = vals.size
    if m:
        order = np.argsort(vals, kind="stable")
        scaled = (m - np.arange(m)) * vals[order]
        adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
        back = np.empty(m)
        back[order] = adjusted
        out[ok] = back
    return out.reshape(p.shape)


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def verdicts(
    table: pd.DataFrame,
    alpha: float = 0.05,
    *,
    estimate: str = "estimate",
    low: str = "low",
    high: str = "high",
    p_value: str = "p_value",
) -> pd.DataFrame:
    """Judge each claim of a table against the paper's sign: holds, reversed or not resolved.

    Every row is a claim with ``paper_change`` (the signed relative change the paper
    reports, a fraction: negative means the paper says ``b`` is lower) and our
    ``estimate``, ``low``, ``high`` (on the same scale, e.g. the ``rel``, ``rel_low``,
    ``rel_high`` of :func:`summarise_pairs`) and ``p_value`` (e.g. ``p_value_rel``).

    Holm-Bonferroni is applied once, across all rows of ``table`` with a non-missing
    p-value and no withdrawal (call this function per family if a table mixes families).
    Then:

    * ``withdrawn``: the row's optional ``withdrawn`` column gives a reason (e.g. the
      targeted runs did not learn their target rows), so the comparison says nothing about
      the method; it is left out of the Holm family;

    * ``holds``: the interval lies strictly on the paper's side of zero and
      ``p_holm < alpha``;
    * ``reversed``: the interval lies strictly on the opposite side and ``p_holm < alpha``;
    * ``not resolved``: anything else (interval touching or spanning zero, infinite or
      missing interval, e.g. one seed, or an interval excluding zero whose Holm-adjusted
      p-value is not below alpha).

    Args:
        table: One row per claim with columns ``claim``, ``paper_change`` and the four
            named below.
        alpha: Family-wise error rate.
        estimate: Name of the estimate column.
        low: Name of the interval's lower-end column.
        high: Name of the interval's upper-end column.
        p_value: Name of the raw p-value column.

    Returns:
        A copy of ``table`` with ``p_holm``, ``verdict`` and ``verdict_text`` added, e.g.
        ``"holds: -12.1 % (-18.0 % to -6.2 %)"`` or ``"not resolved: the interval spans
        -9.0 % to +11.0 % (width 20.0 %)"``.

    Raises:
        ValueError: If a column is missing, alpha is not in (0, 1) or a ``paper_change`` is
            zero or missing (its side would be undefined).
    """
    needed = ["claim", "paper_change", estimate, low, high, p_value]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    paper = table["paper_change"].to_numpy(dtype=float)
    bad = ~np.isfinite(paper) | (paper == 0)
    if bad.any():
        claims = table.loc[bad, "claim"].tolist()
        raise ValueError(f"paper_change must be finite and non-zero (claims {claims})")

    out = table.copy()
    reasons = _withdrawals(out)
    out["p_holm"] = _holm_kept(out[p_value].to_numpy(dtype=float), reasons)
    verdict, text = [], []
    sides = resolved_side(out[low].to_numpy(dtype=float), out[high].to_numpy(dtype=float),
                          out["p_holm"].to_numpy(dtype=float), alpha)
    for sign, side, est, lo, hi, ph, reason in zip(
        np.sign(paper),
        sides,
        out[estimate].to_numpy(dtype=float),
        out[low].to_numpy(dtype=float),
        out[high].to_numpy(dtype=float),
        out["p_holm"].to_numpy(dtype=float),
        reasons,
        strict=True,
    ):
        if reason:
            verdict.append(WITHDRAWN)
            text.append(f"{WITHDRAWN}: {reason}")
            continue
        span = f"{_pct(est)} ({_pct(lo)} to {_pct(hi)})"
        if side != 0:
            label = "holds" if side == sign else "reversed"
            verdict.append(label)
            text.append(f"{label}: {span}")
            continue
        verdict.append("not resolved")
        if not (math.isfinite(lo) and math.isfinite(hi)):
            text.append(f"not resolved: no finite interval (estimate {_pct(est)}; needs ≥ 2 pairs)")
        elif interval_side(lo, hi) == 0:
            text.append(
                f"not resolved: the interval spans {_pct(lo)} to {_pct(hi)} "
                f"(width {100 * (hi - lo):.1f} %)"
            )
        else:
            text.append(
                f"not resolved: {span}, but Holm-adjusted p = {ph:.3g} is not below {alpha:g}"
            )
    out["verdict"] = verdict
    out["verdict_text"] = text
    return out


def interval_side(low: float, high: float) -> int:
    """Which side of zero a finite interval lies on.

    Which side of zero a finite interval lies on: 1 above, -1 below, 0 touching, spanning or not
    finite.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return 1 if low > 0 else (-1 if high < 0 else 0)


def resolved_side(
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    p_holm: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> np.ndarray:
    """The one rule that resolves a comparison, row by row.

    A comparison is *resolved* when its interval lies strictly on one side of zero
    (:func:`interval_side`) and its Holm-adjusted p-value is below ``alpha``; :func:`verdicts`
    turns the side into ``holds``/``reversed`` against the paper's sign,
    :func:`directional_verdicts` into ``lower``/``higher``, and the baselines chapter counts it.

    Returns:
        Per row: 1 (resolved above zero: higher), -1 (resolved below: lower) or 0 (not
        resolved; also for a NaN p-value).
    """
    lows, highs = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    ps = np.asarray(p_holm, dtype=float)
    sides = np.array([interval_side(lo, hi) for lo, hi in zip(lows, highs, strict=True)],
                     dtype=int)
    return np.where(ps < alpha, sides, 0)


def _withdrawals(table: pd.DataFrame) -> list[str]:
    """The ``withdrawn`` column's reasons ("" where none), or all "" without the column."""
    if "withdrawn" not in table.columns:
        return [""] * len(table)
    return [r if isinstance(r, str) else "" for r in table["withdrawn"]]


def _holm_kept(p_values: np.ndarray, reasons: list[str]) -> np.ndarray:
    """Holm over the rows without a withdrawal; NaN for the withdrawn ones."""
    kept = np.array([not r for r in reasons], bool)
    out = np.full(len(p_values), np.nan)
    if kept.any():
        out[kept] = holm(p_values[kept])
    return out


def directional_verdicts(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Judge comparisons that have no paper value by direction: lower, higher, not resolved.

    The same rule as :func:`verdicts` without a paper side: Holm across the table's rows that
    are not withdrawn; ``lower``/``higher`` where the interval (``low``, ``high``) excludes
    zero and ``p_holm < alpha``; ``withdrawn`` with a reason in the optional ``withdrawn``
    column; ``not resolved`` otherwise.
    """
    out = table.copy()
    reasons = _withdrawals(out)
    out["p_holm"] = _holm_kept(out["p_value"].to_numpy(dtype=float), reasons)
    out["verdict"] = direction_words(out["low"], out["high"], out["p_holm"], alpha)
    out.loc[[bool(r) for r in reasons], "verdict"] = WITHDRAWN
    return out


def direction_words(
    low: Sequence[float] | np.ndarray,
    high: Sequence[float] | np.ndarray,
    p_holm: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
) -> np.ndarray:
    """``lower``, ``higher`` or ``not resolved`` per row, by :func:`resolved_side`."""
    side = resolved_side(low, high, p_holm, alpha)
    return np.where(side == 0, "not resolved", np.where(side < 0, "lower", "higher"))


# --------------------------------------------------------------------------------------
# Summary table
# --------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "a",
    "b",
    "set",
    "n",
    "n_dropped",
    "mean_a",
    "mean_b",
    "diff",
    "diff_low",
    "diff_high",
    "p_value",
    "rel",
    "rel_low",
    "rel_high",
    "p_value_rel",
)
"""Columns of :func:`summarise_pairs`, in order."""


def summarise_pairs(
    frame: pd.DataFrame,
    comparisons: Sequence[tuple[str, str, str | None]],
    *,
    by: str = "method",
    pair_on: str | Sequence[str] = "seed",
    value: str = "loss",
    set_column: str = "set",
    level: float = 0.95,
    method: IntervalMethod = "t",
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One numeric row per comparison ``(a, b, set)`` of a long results frame.

    For each comparison the frame is filtered to ``set_column == set`` (no filter when set
    is None), paired with :func:`paired_differences` and summarised. Columns (see
    :data:`SUMMARY_COLUMNS`): the labels ``a``, ``b``, ``set``; ``n`` pairs and
    ``n_dropped`` input rows left unpaired; ``mean_a`` and ``mean_b`` over the *paired*
    runs; ``diff`` (mean of ``b - a``) with ``diff_low``/``diff_high`` and the paired
    t-test ``p_value``; ``rel`` (relative change ``exp(mean log(b/a)) - 1``) with
    ``rel_low``/``rel_high`` and ``p_value_rel`` (t-test on the log ratios). The relative
    columns are NaN when some paired value is not positive. Nothing is formatted.

    Args:
        frame: Long results frame (one row per run and set).
        comparisons: ``(a, b, set)`` triples; ``a`` is the reference method.
        by: Column naming the method.
        pair_on: Pairing column(s), normally the seed.
        value: Value column, e.g. ``"loss"``.
        set_column: Column naming the evaluation set.
        level: Interval coverage.
        method: ``"t"`` or ``"bootstrap"``.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed (the same for every comparison).

    Returns:
        A DataFrame with one row per comparison, in the given order.
    """
    rows = []
    for a, b, set_name in comparisons:
        sub = frame if set_name is None else frame[frame[set_column] == set_name]
        pairs = paired_differences(sub, a, b, by=by, pair_on=pair_on, value=value)
        diff = paired_interval(pairs.diffs, level, method, n_boot, seed)
        ratios = pairs.ratios
        if pairs.n and np.all(pairs.table[["a", "b"]].to_numpy() > 0):
            rel = paired_ratio_interval(ratios, level, method, n_boot, seed)
            rel_vals = (rel.estimate, rel.low, rel.high, paired_ratio_p_value(ratios))
        else:
            rel_vals = (math.nan,) * 4
        rows.append(
            (
                a,
                b,
                set_name,
                pairs.n,
                pairs.n_dropped,
                float(pairs.table["a"].mean()) if pairs.n else math.nan,
                float(pairs.table["b"].mean()) if pairs.n else math.nan,
                diff.estimate,
                diff.low,
                diff.high,
                paired_p_value(pairs.diffs),
                *rel_vals,
            )
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
