"""Own-row checks, the withdrawal of verdicts that rest on them, Holm families, replication."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calkit import columns as col
from calkit import diagnostics, replication, reporting, stats


def _targeted(method, seed, own_curve, target_loss, target=col.PRIOR, n=1024, overrides=()):
    sets = {name: {"n": 10, "loss": v, "mae": 2 * v} for name, v in
            {target: target_loss, col.TRAIN: 0.01, **{s: 0.08 for s in col.CLEAN_SPLITS}}.items()}
    history = {}
    if own_curve is not None:
        history = {f"{target}_target/loss": list(own_curve),
                   "phase": [0.0] * 3 + [1.0] * (len(own_curve) - 3)}
    return {"run_id": f"{method}-{seed}-{target}-{n}-{overrides}",
            "request": {"method": method, "seed": seed, "target_set": target, "n_target": n,
                        "overrides": [list(o) for o in overrides], "profile": "cpu"},
            "metrics": {"ema": sets, "raw": sets, "ema_last": sets, "raw_last": sets},
            "history": history}


LEARNED = [0.3, 0.2, 0.1, 0.05, 0.01]
STUCK = [0.3, 0.2, 0.1, 0.15, 0.2]


def test_own_row_learning_compares_the_last_epoch_with_the_warmup_best():
    check = diagnostics.own_row_learning(_targeted("targeted", 0, LEARNED, 0.1))
    assert check.warmup_best == 0.1 and check.final == 0.01 and check.learned
    assert not diagnostics.own_row_learning(_targeted("targeted", 0, STUCK, 0.1)).learned
    assert diagnostics.own_row_learning(_targeted("finetune", 0, None, 0.1)) is None
    table = diagnostics.own_rows_table([_targeted("targeted", s, STUCK, 0.1) for s in range(3)])
    assert table.loc[0, "seeds"] == 3 and table.loc[0, "not_learned"] == 3
    assert table.loc[0, "ratio"] == pytest.approx(2.0)


@pytest.mark.parametrize("curve, withdrawn", [(LEARNED, False), (STUCK, True)])
def test_a_verdict_on_targeted_runs_that_did_not_learn_their_rows_is_withdrawn(curve, withdrawn):
    records = [_targeted("finetune", s, None, 0.01 + 0.001 * s) for s in range(4)]
    records += [_targeted("targeted", s, curve, 0.5 + 0.01 * s) for s in range(4)]
    table = reporting.claims_table(records)
    claim = table.loc[[c for c in table.index if "fine-tuning" in c][0]]
    assert (claim["verdict"] == "withdrawn") == withdrawn
    if withdrawn:
        assert "did not learn its 1,024 target rows in 4 of 4 seeds" in claim["verdict_text"]
        assert np.isnan(claim["p_holm"])  # out of the Holm family
    else:
        assert claim["verdict"] == "reversed"


def test_withdrawn_rows_leave_the_holm_family_and_directional_verdicts_share_the_rule():
    table = pd.DataFrame({"claim": ["a", "b"], "paper_change": [-0.1, -0.1],
                          "estimate": [-0.2, 5.0], "low": [-0.3, 4.0], "high": [-0.1, 6.0],
                          "p_value": [0.02, 0.001], "withdrawn": ["", "did not learn"]})
    judged = stats.verdicts(table)
    assert judged["p_holm"].iloc[0] == pytest.approx(0.02)  # a family of one
    assert list(judged["verdict"]) == ["holds", "withdrawn"]
    directional = stats.directional_verdicts(table.drop(columns="paper_change"))
    assert list(directional["verdict"]) == ["lower", "withdrawn"]


def test_headline_family_leaves_the_ablations_out():
    def base(method, s, shift):
        losses = {col.TRAIN: 0.01, col.COVARIATE: 0.1 + shift, col.PRIOR: 0.2 + shift,
                  col.RELATION: 0.1 + shift, col.HIGH_GAP: 0.15 + shift,
                  **{n: 0.08 + shift for n in col.CLEAN_SPLITS}}
        sets = {k: {"n": 10, "loss": v + 0.001 * s, "mae": v} for k, v in losses.items()}
        return {"run_id": f"{method}-{s}", "request": {"method": method, "seed": s,
                                                        "target_set": None, "n_target": 0,
                                                        "overrides": []},
                "metrics": {"ema": sets, "raw": sets}, "history": {}}
    records = [base(m, s, d) for s in range(3) for m, d in
               (("baseline", 0.0), ("cal", 0.01), ("pg_first", 0.02))]
    everything = reporting.claims_table(records)
    headline = reporting.claims_table(records, family="headline")
    assert len(headline) == 5 and len(everything) == 8
    assert set(headline["family"]) == {"headline (5 claims)"}
    with pytest.raises(ValueError, match="family"):
        reporting.claims_table(records, family="mine")


def test_replication_table_sets_our_mean_beside_the_authors_log():
    log = replication.authors_log()
    prior = log[(log["method"] == "targeted") & (log["target_set"] == col.PRIOR)
                & (log["model"] == "ema") & (log["set"] == col.PRIOR)]
    assert prior["loss"].iloc[0] == pytest.approx(0.0096)  # the paper's number, from the log
    records = [_targeted("targeted", s, LEARNED, 0.0096 * f)
               for s, f in enumerate((1.0, 1.2, 1.4))]
    table = replication.replication_table(records)
    row = table[(table["method"] == "targeted") & (table["target_set"] == col.PRIOR)
                & (table["model"] == "ema") & (table["set"] == col.PRIOR)].iloc[0]
    assert row["seeds"] == 3 and row["ratio"] == pytest.approx(1.2) and row["within"]
    # calkit's fine-tune has no EMA: the authors' fine-tune EMA rows have no counterpart.
    assert not ((table["method"] == "finetune") & (table["model"] == "ema")).any()
    order = replication.ordering_table(records + [
        _targeted("finetune", s, None, 0.0059) for s in range(3)])
    row = order[order["pair"].str.startswith("fine-tune (N=1024)")].iloc[0]
    assert row["theirs_lower"].startswith("fine-tune") and row["ours_lower"].startswith("fine")
    assert bool(row["agree"])


def test_a_flipped_ordering_says_which_of_our_methods_left_its_logged_number():
    """Their log has fine-tuning below targeted CAL on prior (0.0059 against 0.0097, last
    epoch); runs with fine-tuning at 0.02 flip that, and the sentence must say it is our
    fine-tune (3.39 times its logged loss) that moved, not our targeted CAL (1.19 times)."""
    records = [_targeted("targeted", s, LEARNED, 0.0096 * f)
               for s, f in enumerate((1.0, 1.2, 1.4))]
    records += [_targeted("finetune", s, None, 0.02) for s in range(3)]
    order = replication.ordering_table(records)
    row = order[order["pair"].str.startswith("fine-tune (N=1024)")
                & (order["set"] == col.PRIOR)].iloc[0]
    assert not row["agree"]
    assert row["theirs_change"] == pytest.approx(0.0097 / 0.0059 - 1)
    assert row["ours_change"] == pytest.approx(0.01152 / 0.02 - 1)
    (sentence,) = [s for s in replication.ordering_departures(order) if "on prior" in s]
    assert sentence == ("targeted CAL (N=1024) against fine-tune (N=1024) on prior: +64.4% in "
                        "their log, -42.4% in ours; our fine-tune (N=1024) at 3.39 times its "
                        "logged loss, our targeted CAL (N=1024) at 1.19 times")
    agreeing = order.assign(agree=True)
    assert replication.ordering_departures(agreeing) == []
    assert set(replication.ORDERING_COLUMNS) < set(order.columns)


def test_the_authors_fine_tune_training_rows_are_compared_with_the_n_rows_it_fine_tunes_on():
    """Their fine-tune's 'train' is its loss on the N rows it fine-tunes on: its EMA model scores
    there about what it scores on the target set, far above the IR-net's training loss. Ours is
    compared from the same rows (``<target>_target``), never from the IR-net's training rows."""
    log = replication.authors_log()
    tune = log[(log["method"] == "finetune") & (log["target_set"] == col.PRIOR)
               & (log["model"] == "ema")].set_index("set")["loss"]
    ir_net = log[(log["method"] == "baseline") & (log["set"] == col.TRAIN)]["loss"].iloc[0]
    assert tune[col.TRAIN] > 5 * ir_net and tune[col.TRAIN] == pytest.approx(tune[col.PRIOR],
                                                                            rel=0.2)
    records = []
    for s in range(2):
        record = _targeted("finetune", s, None, 0.01)
        for metrics in record["metrics"].values():
            metrics[col.own_rows(col.PRIOR)] = {"n": 1024, "loss": 0.0012, "mae": 0.0024}
        records.append(record)
    table = replication.replication_table(records)
    row = table[(table["method"] == "finetune") & (table["target_set"] == col.PRIOR)
                & (table["set"] == col.own_rows(col.PRIOR))].iloc[0]
    assert row["ours"] == pytest.approx(0.0012) and row["theirs"] == pytest.approx(0.0006)
    assert row["differs"] == replication.FINETUNE_TRAINING
    assert not ((table["method"] == "finetune") & (table["set"] == col.TRAIN)).any()
    # The IR-net and CAL rows still read the training rows.
    assert col.set_label(col.own_rows(col.PRIOR)) == (
        f"the N target rows of {col.set_label(col.PRIOR)}")


def test_factor_study_reading_rule():
    def study(setting_overrides, curve, seeds=3):
        return [_targeted("targeted", s, curve, 0.1, overrides=setting_overrides)
                for s in range(seeds)]
    records = (study((("patience", 30),), STUCK)
               + study((("patience", 30), ("supervised_on_all", False)), STUCK)
               + study((("lr", 0.0001), ("patience", 30), ("schedule", "none")), LEARNED))
    table = diagnostics.factor_table(records)
    assert set(table["setting"]) == {"cpu recipe", "cpu recipe + literal loop",
                                     "cpu recipe + constant 1e-4"}
    assert diagnostics.breaking_factors(table) == ["cpu recipe + constant 1e-4"]
    # No verdict without the cpu reference failing in every seed.
    assert diagnostics.breaking_factors(table[table["setting"] != "cpu recipe"]) == []
    assert diagnostics.factor_answer(table).startswith(
        "constant 1e-4 alone brings the own-row ratio below 0.5")
    # Without a breaking factor, the sentence says so and names who learned at all.
    interaction = diagnostics.factor_table(records[:6])
    assert diagnostics.factor_answer(interaction) == (
        "no single factor brings the own-row ratio below 0.5 in every seed")
    assert diagnostics.factor_answer(interaction.iloc[0:0]) == "no runs of the study yet"


def test_targeting_cost_is_relative_to_the_irnet_and_says_whether_rows_were_learned():
    def plain(s):
        rec = _targeted("baseline", s, None, 0.1)
        rec["request"].update(target_set=None, n_target=0)
        for model in rec["metrics"].values():
            model[col.RELATION] = {"n": 10, "loss": 0.1, "mae": 0.2}
        return rec
    records = [plain(s) for s in range(3)]
    for s in range(3):
        for method, curve in (("targeted", STUCK), ("finetune", None)):
            rec = _targeted(method, s, curve, 0.05)
            for model in rec["metrics"].values():
                model[col.RELATION] = {"n": 10, "loss": 0.2 + 0.001 * s, "mae": 0.4}
            records.append(rec)
    table = reporting.targeting_cost_change(records)
    targeted = [i for i in table.index if i.startswith("targeted")][0]
    assert table.loc[targeted, "learned its rows"] == "0 of 3 seeds"
    assert table.loc[targeted, col.set_label(col.RELATION)].startswith("2.01x")
    finetune = [i for i in table.index if i.startswith("fine-tune")][0]
    assert table.loc[finetune, "learned its rows"] == "-"


def test_claims_table_for_a_page_is_narrow_and_the_figure_keeps_its_axis():
    import matplotlib

    matplotlib.use("Agg")
    from calkit.plots import RATIO_LIMIT, paired_dots

    records = [_targeted("finetune", s, None, 0.01 + 0.001 * s) for s in range(4)]
    records += [_targeted("targeted", s, LEARNED, 1.8 + 0.01 * s) for s in range(4)]
    table = reporting.claims_table(records)
    assert list(reporting.display_claims(table).columns) == ["paper", "ours [95 %]", "seeds",
                                                             "verdict"]
    assert "p (Holm)" in reporting.claims_detail(table).columns
    fig = paired_dots(reporting.paired_points(records, reporting.paper_comparisons(records)),
                      table)
    low, high = fig.axes[0].get_xlim()
    assert high < 1.1 * np.log2(RATIO_LIMIT)  # a 150x claim is marked at the edge, not plotted
    assert any("x [" in t.get_text() for t in fig.axes[0].texts)


def test_ordering_summary_counts_agreeing_rows_and_names_the_others():
    targeted = "fine-tune (N=128) vs targeted CAL (N=128)"
    order = pd.DataFrame({"pair": ["IR-net vs CAL"] * 3 + [targeted],
                          "set": [col.COVARIATE, col.PRIOR, col.RELATION, col.RELATION],
                          "agree": [True, False, False, None]})
    text = replication.ordering_summary(order, "ema")
    assert text == ("with the EMA models, the authors' ordering holds on 1 of 3 rows "
                    "(not on IR-net vs CAL on prior, relation)")
    assert replication.ordering_summary(order.iloc[:1], "last") == (
        "with the last-epoch models, the authors' ordering holds on 1 of 1 rows")
    assert "no ordering" in replication.ordering_summary(order.iloc[3:], "ema")


def test_a_selected_run_that_chose_the_warmup_is_not_a_failure_to_learn():
    """targeted_select may find on its held-out rows that no adversarial epoch beats the warm-up;
    its refit then never targets. That is the method's answer, not an implementation that
    cannot learn its rows, so it is counted apart and withdraws nothing."""
    chose_warmup = _targeted("targeted_select", 0, [0.3, 0.2, 0.25], 0.5)
    chose_warmup["history"]["phase"] = [0.0, 0.0, 0.0]
    check = diagnostics.own_row_learning(chose_warmup)
    assert not check.applies and not check.failed and not check.learned
    stuck = _targeted("targeted_select", 1, STUCK, 0.5)
    assert diagnostics.own_row_learning(stuck).failed
    assert diagnostics.unlearned_runs([chose_warmup, stuck], "targeted_select", col.PRIOR,
                                      1024) == (1, 1)
    table = diagnostics.own_rows_table([chose_warmup, stuck])
    assert table.loc[0, "seeds"] == 2 and table.loc[0, "not_learned"] == 1
    assert table.loc[0, "warmup_chosen"] == 1


def test_fit_table_sets_cals_training_fit_beside_the_authors_log():
    """Where our replication departs: CAL's loss on its own training rows against the IR-net's."""
    def base(method, seed, train, val):
        sets = {col.TRAIN: {"n": 10, "loss": train, "mae": train},
                **{n: {"n": 10, "loss": val, "mae": val} for n in col.CLEAN_SPLITS}}
        history = {"train/loss": [0.05, 0.01, 3 * train], "val_loss": [0.05, 0.02, val],
                   **({"phase": [0, 1, 1]} if method == "cal" else {})}
        return {"run_id": f"{method}-{seed}", "request": {"method": method, "seed": seed,
                                                           "target_set": None, "n_target": 0,
                                                           "overrides": []},
                "metrics": {m: sets for m in ("ema", "raw", "ema_last", "raw_last")},
                "history": history}
    ours = [base("baseline", s, 0.002, 0.01) for s in range(3)]
    ours += [base("cal", s, 0.02, 0.03) for s in range(2)]
    table = replication.fit_table({"authors": ours, "empty": []})
    assert list(table.index) == ["authors' log", "authors"]  # a profile without runs: no row
    theirs = table.loc["authors' log", "CAL / IR-net, training"]
    assert theirs == pytest.approx(0.0061 / 0.0011)  # the log's EMA rows
    assert table.loc["authors", "CAL / IR-net, training"] == pytest.approx(10.0)
    assert table.loc["authors", "CAL / IR-net, validation"] == pytest.approx(3.0)
    assert table.loc["authors", "seeds"] == 2
    assert replication.fit_summary(table) == (
        "under their settings our CAL's loss on its own training rows is 10.0 times the "
        "IR-net's, in their log 5.5 times, outside the factor 1.5 the replication aims at: our "
        "CAL under their settings is not yet theirs")
    close = table.assign(**{"CAL / IR-net, training": [5.5, 7.0]})
    assert replication.fit_summary(close).endswith("(within the factor 1.5 the replication aims "
                                                   "at)")
    assert replication.fit_summary(table, "cpu") == ""
    curves = replication.fit_curves(ours)
    assert set(curves["measure"]) == {"training rows", "validation"}
    assert curves.loc[curves["run"] == "cal", "warmup_epochs"].eq(1).all()
    assert curves.loc[curves["run"] == "baseline", "warmup_epochs"].eq(0).all()
    assert len(curves) == 5 * 2 * 3
    from calkit import plots
    fig = plots.fit_curves(curves, {"cal": "CAL"}, title="a probe")
    assert fig._suptitle.get_text() == "a probe"
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["training rows", "validation"]
    # the title sits above the panels' own titles, not on them
    top = max(ax.title.get_window_extent(fig.canvas.get_renderer()).y1 for ax in panels)
    assert fig._suptitle.get_window_extent(fig.canvas.get_renderer()).y0 >= top


def test_adversarial_jump_reads_the_first_adversarial_epochs_against_the_last_warmup_epoch():
    def cal(seed, train, n_parameters, method="cal"):
        return {"request": {"method": method, "seed": seed, "target_set": None, "overrides": []},
                "n_parameters": n_parameters,
                "history": {"train/loss": train, "phase": [0] * 10 + [1] * (len(train) - 10)}}
    warm = list(np.linspace(0.05, 0.01, 10))
    records = [cal(0, warm + [0.05] + [0.03] * 9, 480_000),            # 20 epochs: the probe
               cal(1, warm + [0.05] + [0.02] * 9 + [0.001] * 40, 5_850_000),  # later epochs unread
               cal(2, warm + [0.03] * 5, 480_000),                      # too short to read
               cal(3, warm + [0.03] * 10, 480_000, method="baseline")]  # not base CAL
    jumps = replication.adversarial_jump(records)
    assert list(jumps["seed"]) == [0, 1]
    assert jumps["jump"].tolist() == pytest.approx([3.0, 2.0])  # epochs 12-20 over epoch 10
    assert jumps["parameters"].tolist() == [480_000, 5_850_000]
    assert replication.jump_reading(jumps) == (
        "the adversarial jump is 2.00 on the 5.85 M-parameter network (1 seed) against 3.00 on "
        "the 0.48 M one (1): the network size does not explain the gap")
    assert replication.jump_reading(jumps.iloc[:1]) == ""
    halved = jumps.assign(jump=[3.0, 1.2])
    assert replication.jump_reading(halved).endswith("a large part of the gap")
    assert replication.jump_reading(jumps.assign(jump=[3.0, 2.0 * 3])).endswith(
        "not decided by the declared rule; the larger network jumps more, not less")
    assert replication.jump_reading(jumps.assign(jump=[3.0, 1.8])).endswith(
        "not decided by the declared rule")


def _probe_run(method, seed, train, overrides=(), n_parameters=480_000, epochs=None):
    return {"request": {"method": method, "seed": seed, "target_set": None, "epochs": epochs,
                        "overrides": [list(kv) for kv in overrides]},
            "n_parameters": n_parameters,
            "history": {"train/loss": train, "phase": [0] * 10 + [1] * (len(train) - 10)}}


def test_jump_probes_read_each_probe_against_base_cal_of_the_same_seed():
    warm = list(np.linspace(0.05, 0.01, 10))
    authors_attack = replication.JUMP_PROBES[
        "the authors' attack (Adam beta2 0.9, summed cost)"][1]
    records = [_probe_run("cal", 0, warm + [0.05] + [0.03] * 49),                # base, 60 epochs
               _probe_run("cal", 0, warm + [0.05] + [0.03] * 9 + [0.01] * 100, epochs=120),
               _probe_run("ps", 0, warm + [0.012] * 10),                          # PS: no jump
               _probe_run("cal", 0, warm + [0.05] + [0.025] * 9, authors_attack),
               _probe_run("cal", 1, warm + [0.05] + [0.03] * 9, authors_attack)]  # no base seed 1
    base = replication.adversarial_jump(records)
    assert len(base) == 1 and base["epochs"].item() == 60  # the longer run adds no second row
    table = replication.jump_probe_table(records)
    assert table["seed"].tolist() == [0, 0]
    assert table["ratio"].tolist() == pytest.approx([1.2 / 3.0, 2.5 / 3.0])
    reading = replication.jump_probe_reading(table)
    assert reading == (
        "partial sampling alone (PS): jump 1.20 against base CAL's 3.00 (1 seed), removes most "
        "of the jump; the authors' attack (Adam beta2 0.9, summed cost): jump 2.50 "
        "against base CAL's 3.00 (1 seed), does not change it")
    assert replication.jump_probe_reading(table.iloc[:0]) == ""


def test_budget_reading_follows_the_declared_rule():
    fit = pd.DataFrame({"CAL / IR-net, training": [5.5, 13.7, 7.0], "seeds": [np.nan, 5, 1]},
                       index=["authors' log", "authors", "authors, 120 epochs"])
    assert replication.budget_reading(fit) == (
        "with 120 epochs CAL's training loss is 7.0 times the IR-net's (1 seed), against 13.7 at "
        "the profile's budget and 5.5 in their log: the budget explains the gap")
    part = fit.assign(**{"CAL / IR-net, training": [5.5, 13.7, 6.0]}).iloc[[0, 1]]
    assert replication.budget_reading(part) == ""  # the probe has not finished
    for value, verdict in ((5.5 * 1.5, "the budget explains the gap"),
                           (8.5, "not decided by the declared rule"),
                           (13.7 / 1.5, "the budget does not explain the gap"),
                           (20.0, "the budget does not explain the gap")):
        changed = fit.assign(**{"CAL / IR-net, training": [5.5, 13.7, value]})
        assert replication.budget_reading(changed).endswith(verdict)


def test_select_records_keeps_epoch_budgets_apart():
    def rec(epochs):
        return {"request": {"method": "cal", "seed": 0, "dataset": "mp2019", "protocol": "clean",
                            "sets_seed": 0, "target_seed": 3141, "epochs": epochs}}
    records = [rec(None), rec(120), rec(20)]
    assert reporting.select_records(records) == [records[0]]
    assert reporting.select_records(records, epochs=120) == [records[1]]


def test_partial_fit_reads_the_tenth_epoch_on_one_set_of_partial_rows():
    """Where the literal loop departs: loss on the partial rows against all training rows."""
    def cal(seed, n_epochs, supervised_on_all=False):
        batch = [0.02] * 10 + [0.03 - 0.002 * (k % 10) for k in range(n_epochs - 10)]
        train = [0.02] * 10 + [0.03 + 0.0001 * k for k in range(n_epochs - 10)]
        rec = _probe_run("cal", seed, train)
        rec["history"]["train_batch_loss"] = batch
        rec["resolved"] = {"sal": {"epochs_between_regens": 10,
                                   "supervised_on_all": supervised_on_all}}
        return rec
    records = [cal(0, 60), cal(1, 35), cal(2, 15), cal(3, 60, supervised_on_all=True)]
    table = replication.partial_fit_table(records)
    assert table["source"].tolist() == ["authors' log", "ours", "ours"]
    assert table["epoch"].tolist() == [361, 60, 30]  # the last epoch closing a 10-epoch cycle
    assert table["ratio"].iloc[0] == pytest.approx(0.013 / 0.0107)
    assert table["partial rows"].iloc[1:].tolist() == pytest.approx([0.012, 0.012])
    assert table["ratio"].iloc[1] == pytest.approx(0.012 / (0.03 + 0.0001 * 49))
    assert replication.partial_fit_summary(table).startswith(
        "after 10 epochs on the same high-loss rows our CAL's loss on them is 0.34-0.38 times "
        "its loss on all its training rows (2 seeds)")
    assert replication.partial_fit_summary(table.iloc[:1]) == ""


def test_budget_curves_summary_reads_cals_plateau_against_the_falling_irnet():
    rows = []
    for epoch in range(1, 21):
        cal = 0.05 / epoch if epoch <= 4 else (0.03 if epoch <= 12 else 0.02)
        rows += [{"run": "cal", "seed": 0, "epoch": epoch, "measure": "training rows",
                  "loss": cal, "warmup_epochs": 4},
                 {"run": "baseline", "seed": 0, "epoch": epoch, "measure": "training rows",
                  "loss": 0.01 / epoch, "warmup_epochs": 0}]
    curves = pd.DataFrame(rows)
    assert replication.budget_curves_summary(curves) == (
        "CAL's raw loss on its training rows stays between 0.020 and 0.030 through its 16 "
        "adversarial epochs (mean 0.030 over epochs 5-12, 0.020 over 13-20), while the IR-net's "
        "keeps falling (0.0010 at epoch 10, 0.0005 at 20)")
    assert replication.budget_curves_summary(curves[curves["run"] == "cal"]) == ""


def test_select_choices_count_the_chosen_recipes_per_target_and_leave_the_controls_out():
    from calkit.methods.targeted_select import TARGETED_CANDIDATE_LABELS, TARGETED_CANDIDATES

    def run(seed, k, epochs, target=col.RELATION, n=128, overrides=()):
        return {"request": {"method": "targeted_select", "seed": seed, "target_set": target,
                            "n_target": n, "overrides": [list(o) for o in overrides]},
                "selection": {"candidate": dict(reversed(TARGETED_CANDIDATES[k])),
                              "epochs": epochs, "in_warmup": epochs <= 10}}

    records = [run(0, 0, 40), run(1, 2, 8), run(2, 0, 50), run(0, 1, 30, col.PRIOR, 1024),
               run(3, 1, 20, overrides=(("attack_epochs", 0),)),
               {"request": {"method": "finetune", "seed": 0, "target_set": col.RELATION,
                            "n_target": 128, "overrides": []}}]
    table = diagnostics.select_choices_table(records).set_index(["target_set", "n_target"])
    first, second, third = TARGETED_CANDIDATE_LABELS
    relation = table.loc[(col.RELATION, 128)]
    assert relation["seeds"] == 3 and relation[first] == 2 and relation[second] == 0
    assert relation[third] == 1 and relation["epochs"] == 40 and relation["warmup_chosen"] == 1
    assert table.loc[(col.PRIOR, 1024), second] == 1 and len(table) == 2
    assert diagnostics.select_choices_table(records[-1:]).empty
    stale = run(4, 0, 40)
    stale["selection"]["candidate"] = {"lr": 0.5}
    with pytest.raises(ValueError, match="not one of TARGETED_CANDIDATES"):
        diagnostics.select_choices_table([stale])


def test_refit_horizon_counts_refits_whose_cosine_runs_over_fewer_epochs_than_the_search():
    def run(seed, candidate, epochs, target=col.RELATION, n=128, schedule="cosine",
            overrides=(), method="targeted_select"):
        return {"request": {"method": method, "seed": seed, "target_set": target,
                            "n_target": n, "overrides": [list(o) for o in overrides]},
                "resolved": {"train": {"schedule": schedule, "epochs": 60,
                                       **dict(o for o in overrides if o[0] == "schedule_epochs")}},
                "selection": {"candidate": candidate, "epochs": epochs, "in_warmup": False}}

    constant = {"lr": 1e-4, "schedule": "none"}
    records = [run(0, {}, 30), run(1, {}, 60), run(2, constant, 20), run(3, {}, 45),
               run(0, {}, 15, schedule="none"),  # a profile without a horizon
               run(0, constant, 25, col.PRIOR, 1024), run(1, constant, 40, col.PRIOR, 1024),
               run(0, {}, 42, overrides=(("attack_epochs", 0),)),
               run(5, {}, 30, overrides=(("schedule_epochs", 60),)),  # the probe: refit on 60
               run(0, {}, 30, col.PRIOR, 1024, method="targeted")]  # no selection of its own
    table = diagnostics.refit_horizon_table(records).set_index(["run", "target_set", "n_target"])
    relation = table.loc[("targeted_select", col.RELATION, 128)]
    assert (relation["seeds"], relation["rescheduled"], relation["shortest"]) == (5, 2, 0.5)
    control = table.loc[("targeted_select[attack_epochs=0]", col.RELATION, 128)]
    assert (control["seeds"], control["rescheduled"], control["shortest"]) == (1, 1, 0.7)
    prior = table.loc[("targeted_select", col.PRIOR, 1024)]
    assert (prior["seeds"], prior["rescheduled"]) == (2, 0) and np.isnan(prior["shortest"])
    probe = table.loc[("targeted_select[schedule_epochs=60]", col.RELATION, 128)]
    assert (probe["seeds"], probe["rescheduled"]) == (1, 0)
    assert len(table) == 4
    assert diagnostics.refit_horizon_reading(table.reset_index()) == (
        f"the refit repeats the scored run in all 2 runs on {col.set_label(col.PRIOR)}, N=1024; "
        "the refit decays its cosine over fewer epochs than the search did in 3 of 7 runs on "
        f"{col.set_label(col.RELATION)}, N=128 (the shortest over 0.50 of the search's budget)")
    assert diagnostics.refit_horizon_reading(diagnostics.refit_horizon_table(records[-1:])) == ""
    probe = run(3, {}, 45, overrides=(("schedule_epochs", 60),))
    # Seed 3 chose 45 epochs of the profile's recipe in both runs; seed 5 has no twin ...
    assert diagnostics.same_choices([*records, probe], "targeted_select[schedule_epochs=60]") == (
        1, 1)
    # ... until one chose 31 epochs where the probe chose 30: paired, and not the same.
    assert diagnostics.same_choices([*records, probe, run(5, {}, 31)],
                                    "targeted_select[schedule_epochs=60]") == (1, 2)
