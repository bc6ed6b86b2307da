from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from calkit import stats

# ----------------------------------------------------------------------------- intervals


def test_t_interval_matches_hand_computation():
    diffs = [1.0, 2.0, 3.0, 4.0, 5.0]
    iv = stats.paired_interval(diffs, level=0.95, method="t")
    # mean 3, sd sqrt(2.5), se sqrt(0.5); t_{4, 0.975} = 2.7764451
    half = sps.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert iv.estimate == pytest.approx(3.0)
    assert iv.low == pytest.approx(3.0 - half)
    assert iv.high == pytest.approx(3.0 + half)
    assert iv.low == pytest.approx(1.0367568, abs=1e-6)
    assert iv.high == pytest.approx(4.9632432, abs=1e-6)
    assert iv.width == pytest.approx(2 * 1.9632432, abs=1e-6)
    assert (iv.n, iv.method, iv.level) == (5, "t", 0.95)
    assert iv.excludes_zero and iv.resolvable


def test_t_interval_level_and_zero_spanning():
    diffs = [0.012, -0.004, 0.02, 0.007]
    iv90 = stats.paired_interval(diffs, level=0.90)
    iv95 = stats.paired_interval(diffs, level=0.95)
    assert iv90.width < iv95.width
    assert not iv95.excludes_zero
    half = sps.t.ppf(0.95, 3) * np.std(diffs, ddof=1) / 2
    assert iv90.high - iv90.estimate == pytest.approx(half)


def test_one_pair_is_not_resolvable_and_no_pairs_is_nan():
    for method in ("t", "bootstrap"):
        iv = stats.paired_interval([0.3], method=method)
        assert iv.estimate == 0.3
        assert iv.low == -math.inf and iv.high == math.inf
        assert iv.width == math.inf
        assert not iv.resolvable and not iv.excludes_zero
    empty = stats.paired_interval([])
    assert empty.n == 0 and math.isnan(empty.estimate) and math.isnan(empty.low)
    assert not empty.excludes_zero
    assert math.isnan(stats.paired_p_value([0.3]))


def test_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        stats.paired_interval([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        stats.paired_interval([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="method"):
        stats.paired_interval([1.0, 2.0], method="z")


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(42)
    diffs = rng.normal(0.5, 1.0, size=30)
    a = stats.paired_interval(diffs, method="bootstrap", n_boot=4000, seed=7)
    b = stats.paired_interval(diffs, method="bootstrap", n_boot=4000, seed=7)
    c = stats.paired_interval(diffs, method="bootstrap", n_boot=4000, seed=8)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)
    assert a.method == "bootstrap"
    assert a.low < diffs.mean() < a.high
    # percentile bootstrap of the mean ~ mean ± z * sd_pop / sqrt(n)
    half = sps.norm.ppf(0.975) * diffs.std(ddof=0) / math.sqrt(30)
    assert a.low == pytest.approx(diffs.mean() - half, abs=0.15 * half)
    assert a.high == pytest.approx(diffs.mean() + half, abs=0.15 * half)


def test_paired_p_value_matches_scipy_and_literal():
    diffs = [1.0, 2.0, 3.0, 4.0, 5.0]
    # t = 3 / sqrt(0.5) = 4.2426, df 4
    assert stats.paired_p_value(diffs) == pytest.approx(0.0132356, abs=1e-6)
    other = [0.012, -0.004, 0.02, 0.007]
    assert stats.paired_p_value(other) == pytest.approx(sps.ttest_1samp(other, 0).pvalue)
    assert stats.paired_p_value([0.0, 0.0]) == 1.0
    assert stats.paired_p_value([0.1, 0.1]) == 0.0


def test_ratio_interval_is_the_log_scale_t_interval_exponentiated():
    ratios = np.array([0.9, 0.8, 0.95])
    iv = stats.paired_ratio_interval(ratios)
    logs = np.log(ratios)
    half = sps.t.ppf(0.975, 2) * logs.std(ddof=1) / math.sqrt(3)
    assert iv.estimate == pytest.approx(math.exp(logs.mean()) - 1)
    assert iv.estimate == pytest.approx((0.9 * 0.8 * 0.95) ** (1 / 3) - 1)
    assert iv.estimate == pytest.approx(-0.1189132, abs=1e-6)
    assert iv.low == pytest.approx(math.exp(logs.mean() - half) - 1)
    assert iv.high == pytest.approx(math.exp(logs.mean() + half) - 1)
    assert iv.low > -1
    assert stats.paired_ratio_p_value(ratios) == pytest.approx(sps.ttest_1samp(logs, 0).pvalue)
    # a constant 10 % improvement is exactly -10 % with a zero-width interval
    flat = stats.paired_ratio_interval([0.9, 0.9, 0.9])
    assert flat.estimate == pytest.approx(-0.1)
    assert flat.low == pytest.approx(-0.1) and flat.high == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="positive"):
        stats.paired_ratio_interval([0.9, -0.1])


# ----------------------------------------------------------------------------- Holm


def test_holm_textbook_example():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_is_capped_monotone_and_skips_nan():
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])
    # sorted: 0.01 * 3 = 0.03, then 0.012 * 2 = 0.024 is raised to 0.03 (step-down monotone)
    np.testing.assert_allclose(stats.holm([0.012, 0.01, 0.5]), [0.03, 0.03, 0.5])
    out = stats.holm([0.01, np.nan, 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])
    assert stats.holm([]).size == 0
    with pytest.raises(ValueError):
        stats.holm([1.2])


# ----------------------------------------------------------------------------- pairing


def _frame():
    rows = []
    base = {0: 0.20, 1: 0.22, 2: 0.18, 3: 0.50}
    cal = {0: 0.18, 1: 0.20, 2: 0.17, 4: 0.40}
    for seed, v in base.items():
        rows.append({"method": "baseline", "seed": seed, "set": "prior", "loss": v})
        rows.append({"method": "baseline", "seed": seed, "set": "cov", "loss": v / 2})
    for seed, v in cal.items():
        rows.append({"method": "cal", "seed": seed, "set": "prior", "loss": v})
        rows.append({"method": "cal", "seed": seed, "set": "cov", "loss": v / 2 + 0.01})
    return pd.DataFrame(rows)


def test_pairing_drops_unpaired_seeds_and_counts_them():
    frame = _frame()
    pairs = stats.paired_differences(frame[frame["set"] == "prior"], "baseline", "cal")
    assert pairs.n == 3
    assert pairs.table["seed"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(pairs.diffs, [-0.02, -0.02, -0.01])
    np.testing.assert_allclose(pairs.ratios, [0.18 / 0.20, 0.20 / 0.22, 0.17 / 0.18])
    assert pairs.n_dropped == 2
    dropped = pairs.dropped.sort_values("seed")
    assert dropped["method"].tolist() == ["baseline", "cal"]
    assert dropped["seed"].tolist() == [3, 4]
    assert dropped["reason"].tolist() == ["no partner", "no partner"]
    assert dropped["loss"].tolist() == [0.50, 0.40]


def test_pairing_drops_missing_values_with_their_partner():
    frame = _frame()
    frame = frame[frame["set"] == "prior"].copy()
    frame.loc[(frame["method"] == "cal") & (frame["seed"] == 1), "loss"] = np.nan
    pairs = stats.paired_differences(frame, "baseline", "cal")
    assert pairs.n == 2 and pairs.n_dropped == 4
    reasons = {
        (m, s): r for m, s, r in pairs.dropped[["method", "seed", "reason"]].itertuples(index=False)
    }
    assert reasons[("cal", 1)] == "missing value"
    assert reasons[("baseline", 1)] == "partner value missing"


def test_pairing_refuses_ambiguous_keys_and_unknown_methods():
    frame = _frame()
    with pytest.raises(ValueError, match="not unique"):
        stats.paired_differences(frame, "baseline", "cal")  # two sets per seed
    both = stats.paired_differences(frame, "baseline", "cal", pair_on=["seed", "set"])
    assert both.n == 6 and both.n_dropped == 4
    with pytest.raises(ValueError, match="no rows"):
        stats.paired_differences(frame, "baseline", "cla")
    with pytest.raises(ValueError, match="lacks"):
        stats.paired_differences(frame, "baseline", "cal", value="mae")


# ----------------------------------------------------------------------------- verdicts


def _claims():
    return pd.DataFrame(
        {
            "claim": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "paper_change": [-0.10, -0.05, 0.05, -0.03, -0.10, -0.20],
            "estimate": [-0.121, 0.08, 0.06, 0.01, -0.05, -0.20],
            "low": [-0.18, 0.03, 0.02, -0.09, -0.09, -math.inf],
            "high": [-0.062, 0.13, 0.10, 0.11, -0.01, math.inf],
            "p_value": [0.001, 0.004, 0.002, 0.6, 0.03, np.nan],
        }
    )


def test_verdicts_three_outcomes_with_holm_across_the_table():
    out = stats.verdicts(_claims(), alpha=0.05)
    # family of 5 (c6 has no p-value): 0.001*5, 0.002*4, 0.004*3, 0.03*2, 0.6*1
    np.testing.assert_allclose(out["p_holm"][:5], [0.005, 0.012, 0.008, 0.6, 0.06])
    assert math.isnan(out["p_holm"].iloc[5])
    assert out["verdict"].tolist() == [
        "holds",  # below zero, paper says below zero
        "reversed",  # above zero, paper says below
        "holds",  # above zero, paper says above
        "not resolved",  # spans zero
        "not resolved",  # excludes zero but p_holm = 0.06
        "not resolved",  # one seed: infinite interval
    ]
    text = out["verdict_text"].tolist()
    assert text[0] == "holds: -12.1 % (-18.0 % to -6.2 %)"
    assert text[1] == "reversed: +8.0 % (+3.0 % to +13.0 %)"
    assert text[3] == "not resolved: the interval spans -9.0 % to +11.0 % (width 20.0 %)"
    assert "Holm-adjusted p = 0.06" in text[4]
    assert text[5].startswith("not resolved: no finite interval")
    assert "p_holm" not in _claims().columns  # input left alone


def test_verdict_side_follows_the_paper_sign():
    claims = _claims().iloc[[0]].copy()
    claims["paper_change"] = 0.10  # same interval, paper now claims an increase
    assert stats.verdicts(claims)["verdict"].iloc[0] == "reversed"
    claims["paper_change"] = 0.0
    with pytest.raises(ValueError, match="non-zero"):
        stats.verdicts(claims)


def test_verdict_n1_from_real_pairs_is_not_resolved():
    iv = stats.paired_ratio_interval([0.5])
    claims = pd.DataFrame(
        {
            "claim": ["one seed"],
            "paper_change": [-0.5],
            "estimate": [iv.estimate],
            "low": [iv.low],
            "high": [iv.high],
            "p_value": [stats.paired_ratio_p_value([0.5])],
        }
    )
    assert stats.verdicts(claims)["verdict"].tolist() == ["not resolved"]


# ----------------------------------------------------------------------------- summary


def test_summarise_pairs_rows_match_the_pieces():
    frame = _frame()
    table = stats.summarise_pairs(frame, [("baseline", "cal", "prior"), ("baseline", "cal", "cov")])
    assert list(table.columns) == list(stats.SUMMARY_COLUMNS)
    assert len(table) == 2
    prior = table.iloc[0]
    assert (prior["a"], prior["b"], prior["set"]) == ("baseline", "cal", "prior")
    assert prior["n"] == 3 and prior["n_dropped"] == 2
    assert prior["mean_a"] == pytest.approx(0.20)  # paired seeds only, not seed 3
    assert prior["mean_b"] == pytest.approx(0.55 / 3)
    assert prior["diff"] == pytest.approx(-0.05 / 3)
    diffs = [-0.02, -0.02, -0.01]
    iv = stats.paired_interval(diffs)
    assert (prior["diff_low"], prior["diff_high"]) == pytest.approx((iv.low, iv.high))
    assert prior["p_value"] == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue)
    ratios = [0.18 / 0.20, 0.20 / 0.22, 0.17 / 0.18]
    rel = stats.paired_ratio_interval(ratios)
    assert prior["rel"] == pytest.approx(np.prod(ratios) ** (1 / 3) - 1)
    assert (prior["rel_low"], prior["rel_high"]) == pytest.approx((rel.low, rel.high))
    assert prior["p_value_rel"] == pytest.approx(stats.paired_ratio_p_value(ratios))
    cov = table.iloc[1]
    assert cov["diff"] == pytest.approx(np.mean([-0.01 + 0.01, -0.01 + 0.01, -0.005 + 0.01]))
    numeric = table.drop(columns=["a", "b", "set"])
    assert all(pd.api.types.is_numeric_dtype(t) for t in numeric.dtypes)


def test_summarise_pairs_relative_is_nan_for_non_positive_values():
    frame = _frame()
    frame.loc[0, "loss"] = -0.1  # baseline seed 0, prior
    row = stats.summarise_pairs(frame, [("baseline", "cal", "prior")]).iloc[0]
    assert math.isnan(row["rel"]) and math.isnan(row["p_value_rel"])
    assert not math.isnan(row["diff"])


def test_one_rule_resolves_claims_directions_and_the_baselines_chapter():
    low, high = np.array([0.01, -0.3, -0.1, 0.02, np.nan]), np.array([0.2, -0.05, 0.1, 0.3, 0.1])
    p_holm = np.array([0.01, 0.001, 0.01, 0.2, 0.01])
    assert stats.resolved_side(low, high, p_holm).tolist() == [1, -1, 0, 0, 0]
    table = pd.DataFrame({"claim": list("abcde"), "paper_change": [0.1, 0.1, -0.1, 0.1, 0.1],
                          "estimate": [0.1, -0.2, 0.0, 0.1, 0.0], "low": low, "high": high,
                          "p_value": [0.002, 0.0002, 0.002, 0.3, 0.002]})
    judged = stats.verdicts(table)
    assert judged["verdict"].tolist() == ["holds", "reversed", "not resolved", "not resolved",
                                          "not resolved"]
    directions = stats.directional_verdicts(table.drop(columns="paper_change"))
    assert directions["verdict"].tolist() == ["higher", "lower", "not resolved", "not resolved",
                                              "not resolved"]
