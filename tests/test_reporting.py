from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calkit import columns as col
from calkit import reporting


def _record(method, seed, losses, target=None, n=0):
    sets = {
        name: {"n": 10, "loss": v, "mae": 2 * v, "rmse": 3 * v, "r2": 0.5}
        for name, v in losses.items()
    }
    return {
        "run_id": f"{method}-{seed}-{target}-{n}",
        "request": {"method": method, "seed": seed, "target_set": target, "n_target": n,
                    "overrides": []},
        "metrics": {"ema": sets, "raw": sets},
    }


def _base_losses(shift):
    out = {
        col.TRAIN: 0.01 + shift,
        col.COVARIATE: 0.1 + shift,
        col.PRIOR: 0.2 + shift,
        col.RELATION: 0.1 + shift,
        col.HIGH_GAP: 0.15 + shift,
    }
    out.update({name: 0.08 + shift for name in col.RANDOM_SPLITS})
    return out


def test_paper_values_are_one_tidy_table():
    pv = reporting.paper_values()
    assert list(pv.columns) == ["table", "set", "method", "target_set", "n_target", "metric",
                                "value"]
    assert len(pv) == 12 + 8 + 25
    # The paper does not state N for the covariate row: it matches any N, others only theirs.
    assert reporting.paper_value("targeted", col.COVARIATE, col.COVARIATE, 64) == 0.0647
    assert reporting.paper_value("targeted", col.PRIOR, col.PRIOR, 1024) == 0.0096
    assert np.isnan(reporting.paper_value("targeted", col.PRIOR, col.PRIOR, 64))


def test_base_table_is_numeric_with_paired_change():
    records = [_record("baseline", s, _base_losses(0.001 * s)) for s in range(3)]
    records += [_record("cal", s, _base_losses(0.05 + 0.001 * s)) for s in range(3)]
    table = reporting.base_table(records)
    row = table.loc[col.PRIOR]
    assert row["baseline mean"] == pytest.approx(0.201)
    assert row["baseline std"] == pytest.approx(0.001)
    assert row["baseline n"] == 3
    assert row["baseline paper"] == pytest.approx(0.1602)
    # Paired per seed: CAL's loss is 0.05 higher on every seed, so the interval is tight.
    assert row["CAL vs IR-net n_pairs"] == 3
    assert row["CAL vs IR-net diff"] == pytest.approx(0.05)
    assert row["CAL vs IR-net rel_low"] > 0.2
    assert table.loc["validation", "baseline mean"] == pytest.approx(0.081)
    shown = reporting.display(table)
    assert shown.loc[col.SET_LABELS[col.PRIOR], "IR-net (ours)"] == "0.2010 ± 0.0010"


def test_pairing_resolves_what_unpaired_spread_cannot():
    """A shift common to both methods per seed cancels in the paired difference."""
    records = [_record("baseline", s, _base_losses(0.02 * s)) for s in range(4)]
    records += [_record("cal", s, _base_losses(0.001 + 0.02 * s)) for s in range(4)]
    row = reporting.base_table(records).loc[col.PRIOR]
    assert row["cal std"] > 0.02 and row["CAL vs IR-net rel_low"] > 0


def test_targeted_table_pairs_methods_and_reads_any_n():
    records = []
    for s in range(3):
        records.append(_record("finetune", s, {col.RELATION: 0.10 + 0.001 * s}, col.RELATION, 64))
        records.append(_record("targeted", s, {col.RELATION: 0.05 + 0.002 * s}, col.RELATION, 64))
    table = reporting.targeted_table(records)
    row = table.loc[(col.RELATION, 64)]
    assert row["targeted mean"] == pytest.approx(0.052)
    assert np.isnan(row["targeted paper"])  # the paper has no N = 64 row
    assert row["targeted vs fine-tune rel"] == pytest.approx(
        np.exp(np.mean(np.log([0.05 / 0.1, 0.052 / 0.101, 0.054 / 0.102]))) - 1)


def test_ablation_and_claims_tables():
    records = [_record("cal", s, _base_losses(0.001 * s)) for s in range(3)]
    records += [_record("ps", s, _base_losses(0.03 + 0.001 * s)) for s in range(3)]
    table = reporting.ablation_table(records)
    assert table.loc[("ps", col.TRAIN), "paper"] == 0.0204
    assert table.loc[("ps", col.TRAIN), "mean"] == pytest.approx(0.041)
    shown = reporting.display_ablation(table)
    assert shown.loc[("PS", "paper"), "training"] == "0.0204"
    warm = [dict(r, ema_selected_in_warmup=r["request"]["seed"] == 0) for r in records]
    shown = reporting.display_ablation(reporting.ablation_table(warm))
    assert shown.loc[("PS", "ours"), "selected in warm-up"] == "1 of 3 seeds: warm-up network"
    claims = reporting.claims_table(records)
    row = claims.loc["PS vs CAL on " + col.SET_LABELS[col.PRIOR]]
    assert row["paper_change"] == pytest.approx(0.1729 / 0.1564 - 1)
    assert row["low"] > 0 and row["verdict"] == "holds"
    assert row["n"] == 3


def test_targeted_claims_move_to_the_superseding_runs_only_at_as_many_seeds():
    """The redone verdict: targeted_select answers the paper's targeted claim once it covers
    as many seeds as the cpu-recipe runs it supersedes, never on fewer."""
    from calkit.methods import get_method

    assert get_method("targeted_select").supersedes == "targeted"
    records = []
    for s in range(3):
        records.append(_record("finetune", s, {col.PRIOR: 0.10 + 0.001 * s}, col.PRIOR, 1024))
        records.append(_record("targeted", s, {col.PRIOR: 0.50 + 0.002 * s}, col.PRIOR, 1024))
    for s in range(2):
        records.append(_record("targeted_select", s, {col.PRIOR: 0.05 + 0.001 * s},
                               col.PRIOR, 1024))

    def prior_claim(recs):
        table = reporting.claims_table(recs)
        (label,) = [c for c in table.index if col.set_label(col.PRIOR) in c and "N=1024" in c]
        return label, table.loc[label]

    label, old = prior_claim(records)
    assert label.startswith("targeted CAL vs") and old["estimate"] > 3  # the old runs, 3 seeds
    sources = reporting.claim_sources(records)
    assert sources[["reads", "subject_seeds", "successor_seeds"]].values.tolist() == [
        ["targeted", 3, 2]]
    assert reporting.claim_sources_summary(sources).startswith(
        "0 of 1 targeted claims read the redone runs; the other one reads the earlier runs")
    records.append(_record("targeted_select", 2, {col.PRIOR: 0.052}, col.PRIOR, 1024))
    assert reporting.claim_sources(records)["reads"].tolist() == ["targeted_select"]
    assert reporting.claim_sources_summary(reporting.claim_sources(records)) == (
        f"1 of 1 targeted claims read the redone runs ({col.set_label(col.PRIOR)}, N=1024, "
        "with 3 seeds)")
    label, row = prior_claim(records)
    assert label.startswith("targeted CAL (recipe chosen") and row["estimate"] < 0
    assert row["n"] == 3 and row["paper_change"] == old["paper_change"]  # the paper's value stays
    assert np.isfinite(row["paper_change"])


def test_validation_row_uses_the_clean_splits_too():
    losses = {col.TRAIN: 0.01, col.PRIOR: 0.2, **{name: 0.05 for name in col.CLEAN_SPLITS}}
    frame = reporting.metrics_frame([_record("cal", 0, losses)])
    assert frame.loc[frame["set"] == "validation", "loss"].tolist() == [pytest.approx(0.05)]


def test_versus_baseline_bolds_only_a_best_resolved_against_the_runner_up():
    records = []
    for seed in range(4):
        jitter = 0.001 * seed
        records.append(_record("baseline", seed, {col.COVARIATE: 0.10 + jitter,
                                                  col.PRIOR: 0.20 + jitter}))
        # rf: clearly lowest on covariate (every seed); on prior it ties with the ensemble.
        records.append(_record("rf", seed, {col.COVARIATE: 0.05 + jitter,
                                            col.PRIOR: 0.15 + 0.02 * (seed % 2)}))
        records.append(_record("ensemble", seed, {col.COVARIATE: 0.08 + jitter,
                                                  col.PRIOR: 0.15 + 0.02 * ((seed + 1) % 2)}))
    table = reporting.versus_baseline_table(records, methods=("rf", "ensemble"))
    assert table.loc[(col.COVARIATE, "rf"), "best"]
    assert not table.loc[(col.PRIOR, "rf"), "best"]
    assert not table.loc[(col.PRIOR, "ensemble"), "best"]
    assert table.loc[(col.COVARIATE, "rf"), "rel"] == pytest.approx(
        np.exp(np.mean(np.log([(0.05 + j) / (0.10 + j) for j in 0.001 * np.arange(4)]))) - 1)
    shown = reporting.display_versus_baseline(table)
    assert shown.loc["random forest", col.set_label(col.COVARIATE)].startswith("**0.0515 (")
    assert "**" not in shown.loc["random forest", col.set_label(col.PRIOR)]


def test_ood_flag_table_averages_auroc_and_halves_over_seeds():
    records = []
    for seed, auroc in ((0, 0.6), (1, 0.8)):
        rec = _record("ensemble", seed, {col.COVARIATE: 0.1})
        rec["spread_auroc"] = {col.COVARIATE: auroc}
        rec["risk_coverage"] = {col.COVARIATE: {"confident_half": 0.1 * (seed + 1),
                                                "uncertain_half": 0.5, "aurc": 0.2,
                                                "risk": [0.1, 0.2]},
                                "val": {"confident_half": 0.05, "uncertain_half": 0.1,
                                        "aurc": 0.07, "risk": [0.05, 0.08]}}
        records.append(rec)
    flags = reporting.ood_flag_table(records)
    row = flags.loc[("ensemble", col.COVARIATE)]
    assert row["seeds"] == 2 and row["auroc mean"] == pytest.approx(0.7)
    assert row["confident half MAE mean"] == pytest.approx(0.15)
    curves = reporting.risk_curves(records)
    assert list(curves.index) == [0.5, 1.0]
    assert curves[col.COVARIATE].tolist() == pytest.approx([0.1, 0.2])


def test_changes_show_ratios_where_percentages_explode():
    assert reporting.format_change(-0.079, -0.13, -0.024) == "-7.9% [-13.0%, -2.4%]"
    assert reporting.format_change(188.3, 142.2, 246.4) == "189x [143x, 247x]"
    assert reporting.format_change(-0.9, -0.95, -0.8) == "0.1x [0.05x, 0.2x]"
    assert reporting.format_change(0.05, -np.inf, np.inf) == "+5.0% (no interval)"


def test_interval_ends_are_columns_in_the_unit_of_their_row():
    import pandas as pd

    cols = reporting.change_columns(pd.Series([-0.079, 188.3, 0.05]),
                                    pd.Series([-0.13, 142.2, -np.inf]),
                                    pd.Series([-0.024, 246.4, np.inf]))
    assert cols.values.tolist() == [["-7.9%", "-13.0%", "-2.4%"], ["189x", "143x", "247x"],
                                    ["+5.0%", "-", "-"]]


def test_baseline_findings_name_resolved_methods_and_misranked_sets():
    records = []
    for seed in range(4):
        jitter = 0.001 * seed
        records.append(_record("baseline", seed, {col.COVARIATE: 0.10 + jitter,
                                                  col.PRIOR: 0.20 + jitter}))
        records.append(_record("rf", seed, {col.COVARIATE: 0.05 + jitter,
                                            col.PRIOR: 0.30 + jitter}))
        rec = _record("ensemble", seed, {col.COVARIATE: 0.10 + 0.01 * (seed % 2 - 0.5),
                                         col.PRIOR: 0.20 + jitter})
        rec["spread_auroc"] = {col.COVARIATE: 0.6 + 0.02 * seed, col.PRIOR: 0.8}
        rec["risk_coverage"] = {col.COVARIATE: {"confident_half": 0.1, "uncertain_half": 0.3,
                                                "aurc": 0.2, "risk": [0.1, 0.2]},
                                col.PRIOR: {"confident_half": 0.5, "uncertain_half": 0.3,
                                            "aurc": 0.4, "risk": [0.5, 0.4]}}
        records.append(rec)
    table = reporting.versus_baseline_table(records, methods=("rf", "ensemble"))
    lines = reporting.baseline_findings(table, reporting.ood_flag_table(records))
    lower, higher, auroc, wrong = lines
    assert lower.startswith("Resolved lower loss than the IR-net: random forest on "
                            + col.set_label(col.COVARIATE)) and "(1 of 4" in lower
    assert "random forest on " + col.set_label(col.PRIOR) in higher and "ensemble" not in higher
    assert "AUROC 0.63 to 0.80" in auroc  # the covariate mean over seeds, then the prior
    assert col.set_label(col.PRIOR) in wrong and col.set_label(col.COVARIATE) not in wrong
    assert reporting.baseline_findings(pd.DataFrame(), pd.DataFrame()) == []


def test_controls_table_pairs_the_literal_loop_with_targeted_cal_by_seed():
    records = []
    for s in range(3):
        records.append(_record("finetune", s, {col.PRIOR: 0.010 + 0.001 * s}, col.PRIOR, 1024))
        records.append(_record("targeted", s, {col.PRIOR: 1.0 + 0.1 * s}, col.PRIOR, 1024))
        literal = _record("targeted", s, {col.PRIOR: 0.5 + 0.05 * s}, col.PRIOR, 1024)
        literal["request"]["overrides"] = [["supervised_on_all", False]]
        records.append(literal)
    table = reporting.controls_table(records)
    label = f"{col.set_label(col.PRIOR)}, N=1024"
    row = table.loc[f"literal loop vs targeted CAL on {label}"]
    # Every seed's literal-loop loss is half its targeted-CAL loss: -50 % with no spread.
    assert row["n"] == 3 and row["estimate"] == pytest.approx(-0.5)
    assert row["verdict"] == "lower"
    assert table.loc[f"literal loop vs fine-tuning on {label}", "estimate"] == pytest.approx(
        np.exp(np.mean(np.log([0.5 / 0.010, 0.55 / 0.011, 0.6 / 0.012]))) - 1)


def test_ema_versus_raw_is_the_mean_ratio_on_validation_and_the_runs_own_set():
    records = []
    for s in range(2):
        for method, target in (("baseline", None), ("targeted", col.PRIOR)):
            raw = {col.PRIOR: 0.1, **{name: 0.01 for name in col.CLEAN_SPLITS}}
            factor = 10.0 * (1 + s) if method == "targeted" else 1.0
            rec = _record(method, s, {k: v * factor for k, v in raw.items()}, target,
                          1024 if target else 0)
            rec["metrics"]["raw"] = {k: {**v, "loss": raw[k]}
                                     for k, v in rec["metrics"]["ema"].items()}
            records.append(rec)
    table = reporting.ema_versus_raw(records)
    assert table.loc[("baseline", "", 0)].tolist() == [2, 1.0, 1.0]
    # targeted: EMA 10x and 20x the raw loss on seeds 0 and 1.
    assert table.loc[("targeted", col.PRIOR, 1024)].tolist() == pytest.approx([2, 15.0, 15.0])


def test_draws_table_judges_each_set_construction_and_target_draw_on_the_same_seeds():
    records = []
    for s in range(5):
        for sets_seed, factor in ((0, 0.9), (1, 1.1)):  # CAL 10 % lower, then 10 % higher
            for method, f in (("baseline", 1.0), ("cal", factor)):
                rec = _record(method, s, {k: v * f * (1 + 0.01 * s)
                                          for k, v in _base_losses(0).items()})
                rec["request"].update(sets_seed=sets_seed, protocol="clean")
                records.append(rec)
        for target_seed in (3141, 1, 2):
            for method, loss in (("finetune", 0.1), ("targeted", 0.08)):
                rec = _record(method, s, {col.RELATION: loss * (1 + 0.01 * s)}, col.RELATION, 256)
                rec["request"].update(target_seed=target_seed, protocol="clean")
                records.append(rec)
        for method in ("finetune", "targeted"):  # one draw only: it cannot show a draw's effect
            prior = _record(method, s, {col.PRIOR: 0.1 + 0.01 * s}, col.PRIOR, 1024)
            prior["request"].update(protocol="clean")
            records.append(prior)
    table = reporting.draws_table(records)
    covariate = f"CAL vs IR-net on {col.set_label(col.COVARIATE)}"
    assert table.loc[f"{covariate} [sets seed 0]", "estimate"] == pytest.approx(-0.1)
    assert table.loc[f"{covariate} [sets seed 1]", "estimate"] == pytest.approx(0.1)
    # Seeds 3 and 4 are left out: every draw is paired over DRAW_SEEDS only; the pooled rows
    # have one pair per (draw, seed).
    pooled = table["draw"].str.endswith("pooled")
    assert set(table.loc[~pooled, "n"]) == {len(reporting.DRAW_SEEDS)}
    assert table.loc[f"{covariate} [2 set seeds pooled]", "n"] == 2 * len(reporting.DRAW_SEEDS)
    # -10 % on one draw, +10 % on the other: pooled, the geometric mean of 0.9 and 1.1.
    assert table.loc[f"{covariate} [2 set seeds pooled]", "estimate"] == pytest.approx(
        np.sqrt(0.9 * 1.1) - 1)
    targeted = [c for c in table.index if c.startswith("targeted CAL")]
    assert [c.rsplit("[", 1)[1] for c in targeted] == [
        "target draw 1]", "target draw 2]", "target draw 3141]", "3 target draws pooled]"]
    assert table.loc[targeted[-1], "n"] == 3 * len(reporting.DRAW_SEEDS)
    assert all(table.loc[c, "estimate"] == pytest.approx(-0.2) for c in targeted)
    assert not any(col.set_label(col.PRIOR) + ", N=1024" in c for c in table.index)
    points = reporting.draws_points(records)
    assert set(points["claim"]) == set(table.index)
    assert len(points) == table["n"].sum()


def test_profiles_table_judges_the_shared_claims_on_the_shared_seeds():
    def group(cal_factor, seeds, with_relation_target):
        out = []
        for s in seeds:
            for method, f in (("baseline", 1.0), ("cal", cal_factor)):
                out.append(_record(method, s, {k: v * f * (1 + 0.01 * s)
                                               for k, v in _base_losses(0).items()}))
            if with_relation_target:
                for method, loss in (("finetune", 0.1), ("targeted", 0.12)):
                    out.append(_record(method, s, {col.RELATION: loss * (1 + 0.02 * s)},
                                       col.RELATION, 256))
        return out

    table = reporting.profiles_table(
        {"cpu": group(0.9, range(10), True), "paper-short": group(1.2, range(3), False)},
        seeds=(0, 1, 2))
    covariate = f"CAL vs IR-net on {col.set_label(col.COVARIATE)}"
    # The relation target is in one profile only, so it is no shared claim.
    assert not any(c.startswith("targeted") for c in table.index) and covariate in table.index
    assert table.loc[covariate, "cpu: ours"].startswith("-10.0%")
    assert table.loc[covariate, "paper-short: ours"].startswith("+20.0%")
    assert table.loc[covariate, "cpu: seeds"] == 3 == table.loc[covariate, "paper-short: seeds"]
    # The paper says +1.8 % on the covariate set: CAL 10 % lower reverses it, 20 % higher holds.
    assert table.loc[covariate, "cpu: verdict"] == "reversed"
    assert table.loc[covariate, "paper-short: verdict"] == "holds"
    assert reporting.profiles_table({"cpu": group(0.9, range(3), False), "paper-short": []}).empty


def test_profiles_errors_sets_the_shared_runs_side_by_side():
    def group(factor, seeds, methods):
        out = [_record(m, s, {k: v * factor * (1 + 0.01 * s) for k, v in _base_losses(0).items()})
               for s in seeds for m in methods]
        out += [_record("finetune", s, {col.RELATION: 0.1 * factor, col.TRAIN: 0.5}, col.RELATION,
                        256) for s in seeds]
        return out

    table = reporting.profiles_errors(
        {"cpu": group(1.0, range(10), ("baseline", "cal")),
         "paper-short": group(0.5, range(3), ("baseline",))},
        seeds=(0, 1, 2))
    runs = set(table.index.get_level_values("run"))
    # CAL is in one profile only; the fine-tune shows its target set, not the others.
    assert runs == {"IR-net", f"fine-tune -> {col.set_label(col.RELATION)}, N=256"}
    finetune = table.xs(f"fine-tune -> {col.set_label(col.RELATION)}, N=256", level="run")
    assert list(finetune.index) == [col.set_label(col.RELATION)]
    covariate = table.loc[("IR-net", col.set_label(col.COVARIATE))]
    assert covariate["cpu n"] == 3 == covariate["paper-short n"]
    assert covariate["cpu mean"] == pytest.approx(2 * 0.1 * 1.01)  # mae = 2 x loss here
    assert covariate["paper-short / cpu"] == pytest.approx(0.5)
    assert list(table.index.get_level_values("set"))[:len(reporting.BASE_SETS)] == [
        col.set_label(s) for s in reporting.BASE_SETS]
    assert reporting.profiles_errors({"cpu": group(1.0, range(3), ("cal",)),
                                      "paper-short": []}).empty


def test_run_overview_counts_the_epochs_before_a_resume():
    whole = {**_record("cal", 0, _base_losses(0.0)), "wall_seconds": 100.0}
    resumed = {**_record("cal", 1, _base_losses(0.0)), "wall_seconds": 40.0,
               "resumed": [{"epoch": 3, "code": "a", "seconds_before": 30.0},
                           {"epoch": 7, "code": "b", "seconds_before": 70.0}]}
    table = reporting.run_overview([whole, resumed]).set_index("seed")
    assert table.loc[0, "run s"] == 100.0 and table.loc[0, "resumes"] == 0
    assert table.loc[1, "run s"] == 110.0 and table.loc[1, "resumes"] == 2


def test_machine_summary_quotes_the_matmul_rate_or_says_it_is_missing():
    hardware = {"device": "cpu", "cpu": "Some CPU", "torch_threads": 1, "cpu_count": 2,
                "gpu": None, "platform": "Linux"}
    new = reporting.machine_summary({"hardware": {**hardware, "matmul_gflops": 74.4}})
    old = reporting.machine_summary({"hardware": hardware})
    assert "74.4 GFLOP/s" in new and "Some CPU" in new and "1 torch thread," in new
    assert "not recorded" in old and "GFLOP/s" not in old
    overview = reporting.run_overview([
        {**_record("cal", 0, _base_losses(0.0)), "hardware": {**hardware, "matmul_gflops": 74.4}},
        {**_record("cal", 1, _base_losses(0.0)), "hardware": hardware}]).set_index("seed")
    assert overview.loc[0, "matmul GFLOP/s"] == 74.4
    assert np.isnan(overview.loc[1, "matmul GFLOP/s"])
    group = reporting.machines_summary([{"hardware": {**hardware, "matmul_gflops": 74.4}},
                                        {"hardware": {**hardware, "matmul_gflops": 70.0}},
                                        {"hardware": {**hardware, "cpu": "Other CPU"}}])
    assert group.count("Some CPU") == 1 and "Other CPU" in group
    assert "70.0-74.4 GFLOP/s float32 matmul, measured by 2 of 3 runs" in group
    assert "not recorded" in reporting.machines_summary([{"hardware": hardware}])


def test_early_stopping_table_counts_the_runs_it_ended_by_kind():
    def run(method, seed, stopped, epochs, target=None, n=0, best_epoch=2):
        val = [0.5] * epochs
        val[best_epoch] = 0.1
        return {**_record(method, seed, _base_losses(0.0), target, n),
                "stopped_early": stopped, "epochs_run": epochs,
                "history": {"val_loss": val, "phase": [float(e >= 5) for e in range(epochs)]}}

    table = reporting.early_stopping_table([
        run("targeted", 0, True, 26, col.PRIOR, 1024),
        run("targeted", 1, True, 30, col.PRIOR, 1024, best_epoch=9),
        run("targeted", 2, False, 60, col.PRIOR, 1024), run("cal", 0, False, 60),
        {**_record("cal", 1, _base_losses(0.0)), "epochs_run": 60},  # a record without the flag
        run("finetune", 0, True, 12, col.PRIOR, 1024)])
    prior = reporting.run_label("targeted", col.PRIOR, 1024)
    assert table.loc[prior, "runs"] == 3 and table.loc[prior, "stopped early"] == 2
    assert table.loc[prior, "epochs run when stopped"] == "26-30"
    assert table.loc[prior, "of which best in warm-up"] == 1  # seed 1's best came at epoch 9
    assert table.loc["CAL", "stopped early"] == 0 and table.loc["CAL", "runs"] == 2
    assert not any(name.startswith("fine-tune") for name in table.index)
    assert reporting.early_stopping_table([]).empty


def test_budget_table_pairs_targeted_cal_with_and_without_early_stopping_by_seed():
    records = []
    for s in range(3):
        records.append(_record("finetune", s, {col.PRIOR: 0.010}, col.PRIOR, 1024))
        records.append(_record("targeted", s, {col.PRIOR: 1.0 + 0.1 * s}, col.PRIOR, 1024))
        full = _record("targeted", s, {col.PRIOR: 2.0 + 0.2 * s}, col.PRIOR, 1024)
        full["request"]["overrides"] = [["patience", 60]]
        records.append(full)
    table = reporting.budget_table(records)
    label = f"{col.set_label(col.PRIOR)}, N=1024"
    row = table.loc[f"no early stopping vs targeted CAL on {label}"]
    assert row["n"] == 3 and row["estimate"] == pytest.approx(1.0) and row["verdict"] == "higher"
    assert f"targeted CAL, no early stopping, vs fine-tuning on {label}" in table.index
    assert len(table) == 2  # a family of its own: the controls table is untouched
    assert reporting.budget_table(records[:2]).empty


@pytest.mark.parametrize("learned", [True, False])
def test_budget_verdicts_withdraw_comparisons_whose_targeted_runs_did_not_learn_rows(learned):
    records = []
    for s in range(3):
        records.append(_record("finetune", s, {col.PRIOR: 0.010}, col.PRIOR, 1024))
        for overrides, loss in (([], 1.0 + 0.1 * s), ([["patience", 60]], 2.0 + 0.2 * s)):
            run = _record("targeted", s, {col.PRIOR: loss}, col.PRIOR, 1024)
            run["request"]["overrides"] = overrides
            end = 0.01 if learned else 0.5  # the warm-up best on the own rows is 0.1
            run["history"] = {"phase": [0.0, 0.0, 1.0, 1.0],
                              f"{col.PRIOR}_target/loss": [0.2, 0.1, 0.3, end]}
            records.append(run)
    verdicts = reporting.budget_verdicts(reporting.budget_table(records), col.PRIOR, 1024)
    if learned:
        assert verdicts == {"es": "higher", "ft": "higher"}
    else:
        assert all(v.startswith("withdrawn: targeted CAL") and "3 of 3 seeds" in v
                   for v in verdicts.values())
    assert reporting.budget_verdicts(reporting.budget_table(records), col.RELATION, 256) == {
        "es": "no runs yet", "ft": "no runs yet"}


def test_budget_twins_pair_each_full_run_with_its_early_stopped_twin_and_no_other():
    def history(epochs, stop=None):
        # Warm-up of 3 epochs holds the best validation loss; epochs past ``stop`` differ.
        val = [0.1, 0.05, 0.02] + [0.04 + 0.001 * e for e in range(epochs - 3)]
        ema = [0.1, 0.05, 0.02] + [0.4] * 4 + [0.03] * (epochs - 7)
        target = [0.2, 0.1, 0.08] + [0.15] * (epochs - 3)
        if stop is not None:
            val, ema, target = val[:stop], ema[:stop], target[:stop]
        return {"val_loss": val, "ema_val_loss": ema, f"{col.PRIOR}/loss": target,
                "phase": [float(e >= 3) for e in range(len(val))]}

    records = []
    for seed in range(2):
        stopped = _record("targeted", seed, {col.PRIOR: 1.0}, col.PRIOR, 1024)
        stopped.update(history=history(12, stop=9), stopped_early=True, epochs_run=9)
        full = _record("targeted", seed, {col.PRIOR: 0.1}, col.PRIOR, 1024)
        full["request"]["overrides"] = [["patience", 60]]
        full["history"] = history(12)
        records += [stopped, full]
    records[0]["history"]["val_loss"][4] += 0.5  # seed 0's twin is not the same run
    other = _record("targeted", 1, {col.PRIOR: 1.0}, col.PRIOR, 1024)
    other["request"]["protocol"] = "paper"  # another protocol: never a twin, though it comes last
    other["history"] = history(5)
    records.append(other)

    twins = reporting.budget_twins(records, col.PRIOR, 1024)
    assert list(twins.index) == [0, 1]
    assert twins.loc[1, "twin: epochs run"] == 9 and twins.loc[1, "twin stopped early"]
    assert twins.loc[1, "largest difference up to the twin's end"] == 0.0
    assert twins.loc[0, "largest difference up to the twin's end"] == pytest.approx(0.5)
    assert twins.loc[1, "full run: best validation epoch"] == 3 and twins.loc[1, "in warm-up"]
    assert twins.loc[1, "EMA val / warm-up best: peak"] == pytest.approx(20.0)
    assert twins.loc[1, "EMA val / warm-up best: at the twin's end"] == pytest.approx(1.5)
    assert twins.loc[1, "target (raw): lowest in warm-up"] == pytest.approx(0.08)
    assert twins.loc[1, "target (raw): lowest adversarial"] == pytest.approx(0.15)
    assert reporting.budget_twins(records, col.RELATION, 256).empty

    curves = reporting.budget_histories(records, col.PRIOR, 1024)
    assert len(curves) == 2 * 3 * 12 and curves["epoch"].min() == 1
    assert curves.groupby("seed")["adversarial"].sum().tolist() == [3 * 9, 3 * 9]

    from calkit import plots
    fig = plots.budget_curves(curves, twins["twin: epochs run"][twins["twin stopped early"]])
    assert len(fig.axes) == 3 and all(ax.get_yscale() == "log" for ax in fig.axes)


def test_a_method_declared_with_paper_rows_enters_the_paper_tables_without_touching_reporting(
        monkeypatch):
    """Registering a method with ``paper_rows`` (and the paper's value for it) is all it takes
    for the base and ablation tables and the claims to hold it."""
    from calkit.methods import registry
    from calkit.methods.cal import run_cal
    from calkit.reporting import paper as paper_module

    records = [_record("baseline", s, _base_losses(0.02 + 0.001 * s)) for s in range(3)]
    records += [_record("cal", s, _base_losses(0.001 * s)) for s in range(3)]
    records += [_record("cal_new", s, _base_losses(0.03 + 0.001 * s)) for s in range(3)]
    claim = "CAL, new vs CAL on " + col.SET_LABELS[col.PRIOR]
    assert "cal_new" not in reporting.ablation_table(records).index.get_level_values("method")
    assert "cal_new mean" not in reporting.base_table(records).columns

    new = registry.Method("cal_new", "CAL, new", "cal", run_cal, "a method of a test",
                          paper_rows=("base", "ablation"))
    monkeypatch.setitem(registry._REGISTRY, new.name, new)
    values = paper_module.paper_values()
    extra = pd.DataFrame([
        {"table": "ablation", "set": col.PRIOR, "method": "cal_new", "target_set": "",
         "n_target": pd.NA, "metric": "loss", "value": 0.2},
        {"table": "base", "set": col.COVARIATE, "method": "cal_new", "target_set": "",
         "n_target": pd.NA, "metric": "loss", "value": 0.05}])
    extended = pd.concat([values, extra.astype({"n_target": "Int64"})], ignore_index=True)
    monkeypatch.setattr(paper_module, "_paper_values", lambda: extended)

    ablation = reporting.ablation_table(records)
    assert ablation.loc[("cal_new", col.PRIOR), "paper"] == 0.2
    assert ablation.loc[("cal_new", col.PRIOR), "n"] == 3
    base = reporting.base_table(records)
    assert base.loc[col.COVARIATE, "cal_new n"] == 3
    assert base.loc[col.PRIOR, "CAL, new vs IR-net n_pairs"] == 3
    comparisons = {c.label: c for c in reporting.paper_comparisons(records)}
    assert comparisons[claim].a == reporting.RunKey("cal")
    assert comparisons[claim].b == reporting.RunKey("cal_new")
    assert comparisons[claim].family == "ablation"
    assert "CAL, new vs IR-net on " + col.SET_LABELS[col.COVARIATE] in comparisons
    claims = reporting.claims_table(records)
    assert claims.loc[claim, "verdict"] == "holds"  # the paper's +X % and ours are both higher
    assert claim not in reporting.claims_table(records, family="headline").index


def test_comparisons_are_typed_and_come_from_the_registry():
    records = [_record("finetune", s, {col.RELATION: 0.1}, col.RELATION, 256) for s in range(2)]
    records += [_record("targeted", s, {col.RELATION: 0.2}, col.RELATION, 256) for s in range(2)]
    targeted = [c for c in reporting.paper_comparisons(records) if c.family == "targeted"]
    assert [c.label for c in targeted] == [
        f"targeted CAL vs fine-tuning on {col.set_label(col.RELATION)}, N=256"]
    assert targeted[0].a == reporting.RunKey("finetune", col.RELATION, 256)
    assert targeted[0].headline
    controls = reporting.control_comparisons(records)
    literal = [c for c in controls if c.b.method == reporting.LITERAL_TARGETED]
    assert reporting.LITERAL_TARGETED == "targeted[supervised_on_all=False]"
    assert {c.a.method for c in literal} == {"targeted", "finetune"}
    assert reporting.ABLATIONS == ("pg_first", "pg_last", "aa", "ps", "irnet3")
    assert reporting.BASELINES == ("rf", "ensemble", "cmixup", "balanced", "cvar")
    assert reporting.FULL_BUDGET_TARGETED == "targeted[patience=60]"


def test_replication_and_factor_tables_are_narrowed_for_the_page():
    import pandas as pd

    from calkit import columns as col
    from calkit.reporting import display_factors, display_replication

    replication = pd.DataFrame({
        "method": ["baseline", "targeted"], "target_set": ["", col.RELATION],
        "n_target": [0, 256], "model": ["ema", "last"], "set": [col.PRIOR, col.RELATION],
        "theirs": [0.16, 0.0345], "ours": [0.111, 0.0442], "ours_std": [0.004, float("nan")],
        "seeds": [5, 1], "ratio": [0.69, 1.28], "within": [True, True], "differs": ["", ""]})
    shown = display_replication(replication)
    assert list(shown.columns) == ["theirs", "ours", "seeds", "ours / theirs"]
    assert shown["ours"].tolist() == ["0.1110 ± 0.0040", "0.0442"]  # one seed: no spread
    assert "N = 256" in shown.index[1] and shown.index[1].endswith("last")
    assert display_replication(replication.assign(seeds=0)).empty

    factors = pd.DataFrame({
        "setting": ["cpu recipe"], "target_set": [col.PRIOR], "n_target": [1024], "seeds": [3],
        "ratio_median": [1.76], "ratio_min": [1.52], "ratio_max": [1.96], "learned": [0],
        "own_final": [0.1427], "heldout": [0.1437]})
    shown = display_factors(factors)
    assert shown.iloc[0].tolist() == ["1.76 [1.52, 1.96]", "0 of 3", "0.1427", "0.1437"]
    assert shown.index[0].startswith("cpu recipe; ") and "N = 1,024" in shown.index[0]


def test_control_readings_group_each_question_by_verdict_and_name_the_holm_family():
    records = []
    for s in range(4):
        loss = 1.0 + 0.1 * s
        # Fine-tuning's run on the target is what makes (prior, 1024) a target of the records.
        records.append(_record("finetune", s, {col.PRIOR: 0.1}, col.PRIOR, 1024))
        records.append(_record("targeted_select", s, {col.PRIOR: loss}, col.PRIOR, 1024))
        noattack = _record("targeted_select", s, {col.PRIOR: 1.6 * loss}, col.PRIOR, 1024)
        noattack["request"]["overrides"] = [["attack_epochs", 0]]
        noattack["run_id"] += "-noattack"
        records.append(noattack)
        # The IR-net + N rows alternates 10 % above and below: no direction.
        records.append(_record("plain_target", s, {col.PRIOR: loss * (1.1 if s % 2 else 0.9)},
                               col.PRIOR, 1024))
    table = reporting.select_controls_table(records)
    readings = reporting.control_readings(table, "select")
    where = f"{col.set_label(col.PRIOR)}, N=1024"
    assert readings[0] == (f"targeted CAL (chosen recipe) vs no attack: lower on {where} "
                           "(-37.5% [-37.5%, -37.5%], 4 seeds).")
    assert readings[1].startswith(f"targeted CAL (chosen recipe) vs IR-net + N rows: "
                                  f"not resolved on {where} (")
    assert readings[-1] == "Holm over the 2 comparisons of the select family."
    assert reporting.control_readings(table.iloc[:0], "select") == []


def test_a_grid_is_complete_only_when_every_planned_run_is_stored():
    assert reporting.grid_progress(36, 36) == "complete"
    assert reporting.grid_progress(143, 160) == "under way"
    with pytest.raises(ValueError, match="planned run"):
        reporting.grid_progress(0, 0)


def test_the_refit_probe_table_pairs_probe_stored_and_fine_tuning_and_applies_its_rule():
    def probe_records(probe_factor):
        records = []
        for s in range(4):
            loss = 1.0 + 0.1 * s
            records.append(_record("finetune", s, {col.RELATION: loss / 1.3}, col.RELATION, 256))
            records.append(_record("targeted_select", s, {col.RELATION: loss}, col.RELATION, 256))
            probe = _record("targeted_select", s, {col.RELATION: loss * probe_factor(s)},
                            col.RELATION, 256)
            probe["request"]["overrides"] = [["schedule_epochs", 60]]
            probe["run_id"] += "-probe"
            records.append(probe)
        return reporting.refit_probe_table(records)

    # The probe is 5 % above the stored runs: still 36.5 % above fine-tuning, the stored sign.
    table = probe_records(lambda s: 1.05)
    where = f"{col.set_label(col.RELATION)}, N=256"
    assert list(table.index) == [
        f"targeted CAL: refit on the search's schedule vs as stored on {where}",
        f"targeted CAL (chosen recipe) vs fine-tuning on {where}",
        f"targeted CAL, refit on the search's schedule, vs fine-tuning on {where}"]
    assert table["estimate"].round(4).tolist() == [0.05, 0.3, 0.365]
    assert reporting.refit_probe_conclusion(table, 4, 4) == (
        f"by the declared rule the refit's schedule does not explain the verdict on {where} (the "
        "probe's search chose as the stored run in 4 of 4 seeds)")
    # A probe that brings targeted CAL to fine-tuning's level, give or take: the rule says "may".
    level = probe_records(lambda s: (1 / 1.3) * (1.1 if s % 2 else 0.9))
    assert f"may explain the verdict on {where}," in reporting.refit_probe_conclusion(level, 4, 4)
    assert "the rule is not applied" in reporting.refit_probe_conclusion(table, 3, 4)
    assert reporting.refit_probe_conclusion(table.iloc[:0], 0, 0) == "no probe runs yet"
