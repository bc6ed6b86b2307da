"""The OOD benchmark: matbench tasks as data sets, chemistry hold-outs and the leaderboard."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from calkit import columns as col
from calkit import holdouts, splits
from calkit.data import DATASETS, FILES, load_dataset
from calkit.dataplan import plan_data
from calkit.matbench import TASKS, VALIDATION_SHARE
from calkit.reporting import benchmark


def test_every_task_is_a_registered_data_set_with_a_pinned_hashed_file():
    for task in TASKS:
        info = DATASETS[task.dataset]
        spec = FILES[task.file_key]
        assert info.files == (task.file_key,) and info.default_target == task.target
        assert spec.sha256 == (task.sha256,) and len(task.sha256) == 64
        assert "/matbench/936176db18ca4cd7b38cbd957c017a5bac770c6b/" in spec.url
        assert info.split_config.prior_tail == "both"
        assert info.split_config.element_holdouts == task.holdout_elements


def test_the_mp2019_construction_keeps_its_hash_keys():
    # Sets recorded before the hold-out fields existed must keep their identities.
    assert set(splits.SplitConfig().to_dict()) == {
        "seed", "covariate_fraction", "covariate_embedding", "umap_neighbors", "umap_min_dist",
        "kde_grid", "prior_fraction", "extreme_quantiles", "high_gap_quantile",
        "gap_prior_fraction", "gap_prior_tail", "n_random_splits", "random_fraction"}
    benchmark_keys = set(TASKS[0].split_config.to_dict())
    assert {"prior_tail", "element_holdouts", "cluster_k", "validation_share"} <= benchmark_keys


def test_elements_of_reads_fractional_and_integer_formulas():
    assert holdouts.elements_of("Fe0.62C0.000953Mn0.0005") == {"Fe", "C", "Mn"}
    assert holdouts.elements_of("LiFePO4") == {"Li", "Fe", "P", "O"}
    assert list(holdouts.contains_element(["NaCl", "Na2O", "Cl2"], "Na")) == [True, True, False]
    # "C" is not found inside "Cl" or "Co".
    assert not holdouts.contains_element(["NaCl", "CoO"], "C").any()


def test_holdout_elements_takes_the_most_common_within_the_share_band():
    formulas = ["O2"] * 60 + ["NaCl"] * 10 + ["KCl"] * 8 + ["LiF"] * 8 + ["MgS"] * 5 + \
        ["CaSe"] * 1 + ["SrTe"] * 8
    # 100 formulas; O (60 %) is too common, Ca and Se (1 %) too rare; Cl is in 18 %.
    chosen = holdouts.holdout_elements(formulas, n=3, share=(0.03, 0.12))
    assert chosen == ("Na", "F", "K")  # 10 %, then 8 % ties broken alphabetically (F, K, Li, ...)
    assert holdouts.holdout_elements(["O2"] * 10, n=3) == ()


def test_cluster_holdout_holds_out_the_most_distinct_cluster():
    rng = np.random.default_rng(0)
    near = rng.normal(0, 0.3, size=(450, 2))
    far = rng.normal(8, 0.3, size=(50, 2))  # 10 % of the rows, far from the mean
    features = np.vstack([near, far])
    mask = holdouts.cluster_holdout(features, k=4, seed=0)
    assert mask[450:].all() and not mask[:450].any()


def test_benchmark_sets_hold_out_both_tails_every_element_and_a_cluster(small_frame):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(len(small_frame), 5))
    config = splits.SplitConfig(prior_tail="both", element_holdouts=("Fe", "Zn"), cluster_k=4,
                                validation_share=0.2)
    sets = splits.build_sets(small_frame, feats, config,
                             embedding=rng.normal(size=(len(small_frame), 2)))
    lower, upper = (col.tail_prior_set(col.DELTA_E, t) for t in ("lower", "upper"))
    values = small_frame[col.DELTA_E]
    assert values[sets[lower]].max() <= values[~sets[lower]].min()
    assert values[sets[upper]].min() >= values[~sets[upper]].max()
    assert col.prior_set() not in sets  # both tails replace the one-tail set
    for element in ("Fe", "Zn"):
        has = small_frame[col.FORMULA].str.contains(element)
        assert (sets[col.element_set(element)] == has).all()
    assert sets[col.CLUSTER].any()
    clean = splits.protocol_sets(sets, "clean")
    ood = clean[[c for c in clean.columns if col.is_ood_set(c)]].any(axis=1)
    val = clean[list(col.CLEAN_SPLITS)].any(axis=1)
    # No training row holds a held-out element; validation takes a fifth of the other rows.
    train = clean[col.TRAIN]
    assert not small_frame[col.FORMULA][train].str.contains("Fe|Zn").any()
    assert abs(val.sum() - VALIDATION_SHARE * (~ood).sum()) <= 1
    assert not (val & ood).any()


def test_plan_names_the_benchmark_sets_and_accepts_them_as_targets():
    task = next(t for t in TASKS if t.name == "jdft2d")
    plan = plan_data(task.dataset, "cpu")
    assert plan.ood_sets == (col.COVARIATE, col.tail_prior_set(task.target, "lower"),
                             col.tail_prior_set(task.target, "upper"),
                             col.extreme_set(task.target),
                             *(col.element_set(e) for e in task.holdout_elements), col.CLUSTER)
    assert col.resolve_set_name("prior_upper", plan.ood_sets, target=task.target) == \
        col.tail_prior_set(task.target, "upper")
    assert col.set_label(col.element_set("Bi")) == "Bi compounds (element hold-out)"
    assert col.shift_kind(col.CLUSTER) == "cluster"


def test_every_task_ships_its_set_file_and_the_plan_reads_it():
    for task in TASKS:
        plan = plan_data(task.dataset, "cpu")
        assert plan.sets_source == "shipped", f"{task.name}: run `calkit sets --dataset " \
            f"{task.dataset} --profile cpu`"
        meta = splits.set_file_meta(plan.shipped_file)
        assert meta["rows"] <= task.rows
        assert meta["split_config"] == json.loads(json.dumps(task.split_config.to_dict()))


@pytest.mark.realdata
def test_tasks_load_one_row_per_formula_and_the_element_rule_gives_the_declared_elements(
        real_data):
    for task in TASKS:
        frame = load_dataset(task.dataset)
        assert len(frame) == task.rows and not frame[col.FORMULA].duplicated().any()
        assert frame[task.target].notna().all()
        assert holdouts.holdout_elements(frame[col.FORMULA]) == task.holdout_elements


def _record(method, seed, dataset, losses):
    sets = {name: {"n": 10, "loss": v, "mae": v, "rmse": v, "r2": 0.5}
            for name, v in losses.items()}
    return {"run_id": f"{method}-{seed}-{dataset}",
            "request": {"method": method, "seed": seed, "dataset": dataset, "target_set": None,
                        "n_target": 0, "overrides": [], "protocol": "clean"},
            "metrics": {"ema": sets, "raw": sets}}


def test_leaderboard_names_the_best_method_its_ties_and_counts_ranks():
    task = next(t for t in TASKS if t.name == "steels")
    shift = col.element_set("W")
    records = []
    for seed in range(5):
        jitter = 0.001 * seed
        base = {shift: 1.0 + jitter, col.COVARIATE: 1.0 + jitter, "Csplt1": 0.5}
        records.append(_record("baseline", seed, task.dataset, base))
        # The forest is clearly lower on the element set, CAL equal to the IR-net within noise.
        records.append(_record("rf", seed, task.dataset, {**base, shift: 0.5 + jitter}))
        records.append(_record("cal", seed, task.dataset,
                               {**base, shift: 1.0 + (-1) ** seed * 0.01 + jitter}))
    board = benchmark.leaderboard(records, range(5), [task])
    summary = benchmark.best_per_shift(board)
    best = summary.loc[("steels", shift)]
    assert best["best"] == "rf" and best["resolved best"] and best["side"] == -1
    assert best["rel"] == pytest.approx(-0.5, abs=0.01)
    assert best["tied"] == ""
    counts = benchmark.rank_counts(board)
    assert counts.loc["rf", "best or tied"] == 2  # the element set, and tied on the covariate set
    flags = pd.DataFrame({"seeds": [5, 5], "auroc mean": [0.9, 0.6], "auroc std": [0.1, 0.1]},
                         index=pd.MultiIndex.from_tuples([("steels", shift),
                                                          ("steels", col.COVARIATE)],
                                                         names=["task", "set"]))
    lines = benchmark.benchmark_answer(board, flags)
    assert lines[-1].endswith("AUROC (0.5 is chance) of steels 0.60-0.90, by task.")
    assert lines[0].startswith("On 2 of 2 task-shift pairs (1 task) the random forest")
    # A task with the IR-net's records alone compares nothing and is not counted.
    jdft2d = next(t for t in TASKS if t.name == "jdft2d")
    alone = [_record("baseline", seed, jdft2d.dataset, {col.COVARIATE: 1.0, "Csplt1": 0.5})
             for seed in range(5)]
    wider = benchmark.leaderboard(records + alone, range(5), [task, jdft2d])
    assert set(wider.index.get_level_values("task")) == {"steels"}
    assert benchmark.benchmark_answer(wider)[0] == lines[0]
    assert "CAL has a resolved lower loss than the IR-net on 0 of 2" in lines[1]
    grid = benchmark.relative_change_grid(board)
    assert set(grid.columns) == {"rf", "cal"}
    shown = benchmark.display_best(summary)
    assert shown.loc[("steels", "W compounds"), "Holm"] == "lower"
    assert benchmark.display_best(summary, ties=True).loc[("steels", "covariate"),
                                                          "tied with it"] == "CAL, random forest"


def test_targeted_comparison_pairs_the_two_targeted_methods_by_seed_per_task():
    task = next(t for t in TASKS if t.name == "expt_gap")
    tail = col.tail_prior_set(task.target, "upper")
    records = []
    for seed in range(5):
        for method, loss in (("finetune", 0.40), ("targeted_select", 0.30)):
            rec = _record(method, seed, task.dataset, {tail: loss + 0.002 * seed, "Csplt1": 0.1})
            rec["request"].update(target_set=tail, n_target=64)
            rec["run_id"] += method
            if method == "targeted_select":
                # seed 0 ends above its warm-up best on its own rows; seed 1 chose the warm-up
                end = {0: [0.5, 0.4, 0.45, 0.6], 1: [0.5, 0.4]}.get(seed, [0.5, 0.4, 0.2, 0.1])
                rec["history"] = {"phase": [0, 0, 1, 1][:len(end)], f"{tail}_target/loss": end}
            records.append(rec)
    table = benchmark.targeted_versus_finetune(records, range(5), [task])
    row = table.loc["expt_gap"]
    assert row["n_pairs"] == 5 and row["set"] == tail
    assert row["rel"] == pytest.approx(-0.25, abs=0.01) and row["side"] == -1
    assert (row["own_row_runs"], row["not_learned"], row["warmup_chosen"]) == (5, 1, 1)
    assert row["own_row_ratio"] == pytest.approx(0.25)  # median of 1.5, 1.0, 0.25, 0.25, 0.25
    shown = benchmark.display_targeted(table)
    assert list(shown.columns) == ["fine-tuning", "targeted", "change [95 %]", "Holm p"]
    own = benchmark.display_own_rows(table).loc["expt_gap"]
    assert (own["own-row ratio"], own["not learned"], own["chose the warm-up"]) == ("0.25",
                                                                                     "1 of 5", 1)
    assert shown.loc["expt_gap", "change [95 %]"].startswith("-24.8% [")
    line = benchmark._targeted_answer(table)  # the last line of benchmark_answer(..., targeted=)
    assert "resolved lower on 1 (expt_gap), resolved higher on 0" in line
    assert "failed to learn its rows in 1 of 5 runs and chose not to target in 1" in line
    assert benchmark.targeted_versus_finetune(records, range(5), [TASKS[1]]).empty


def test_anchor_table_sets_our_fold_maes_beside_the_leaderboard(tmp_path):
    from calkit import anchor

    steels = next(t for t in TASKS if t.name == "steels")
    rows = [{"task": "steels", "model": model, "fold": fold, "mae": mae + fold,
             "seconds": 1.0, "rows_without_features": 0}
            for fold in range(2) for model, mae in (("IRNetRegressor", 120.0),
                                                    ("random forest", 100.0))]
    anchor.write_anchor(rows, anchor.anchor_path(tmp_path, steels))
    # A quick look with shortened networks is stored but never shown as the anchor.
    jdft2d = next(t for t in TASKS if t.name == "jdft2d")
    anchor.write_anchor(rows, anchor.anchor_path(tmp_path, jdft2d), epochs=3)
    scores = anchor.load_anchor(tmp_path)
    assert set(scores["task"]) == {"steels"}
    table = anchor.anchor_table(scores, [steels, jdft2d])
    assert list(table.index) == ["steels (MPa)", "jdft2d (meV/atom)"]
    row = table.loc["steels (MPa)"]
    assert row[("calkit", "IR-net")] == pytest.approx(120.5)
    assert row[("calkit", "forest")] == pytest.approx(100.5)
    assert np.isnan(row[("calkit", "CAL")])
    assert row[("leaderboard", "CrabNet")] == pytest.approx(107.316)
    # jdft2d's scores were a shortened quick look: the leaderboard only.
    assert np.isnan(table.loc["jdft2d (meV/atom)", ("calkit", "IR-net")])
    coverage = benchmark.benchmark_coverage([], {"benchmark runs": []}, scores, [steels, jdft2d])
    assert coverage.loc["steels", "anchor folds"] == 2
    assert coverage.loc["jdft2d", "anchor folds"] == 0


def test_matbench_folds_are_matbench_v01_kfold():
    from calkit.anchor import matbench_folds

    folds = matbench_folds(20)
    tests = np.sort(np.concatenate([test for _, test in folds]))
    assert len(folds) == 5 and (tests == np.arange(20)).all()
    # matbench v0.1: KFold(5, shuffle=True, random_state=18012019); its first test fold of 20
    # rows, so a changed seed or shuffle flag fails here.
    from sklearn.model_selection import KFold

    first = next(iter(KFold(5, shuffle=True, random_state=18012019).split(np.arange(20))))[1]
    assert (folds[0][1] == first).all()
    assert not (folds[0][1] == np.arange(4)).all()


def test_coverage_counts_recorded_runs_and_risk_curves_follow_the_ensemble():
    from types import SimpleNamespace

    task = next(t for t in TASKS if t.name == "steels")
    configs = [SimpleNamespace(dataset=task.dataset, run_id=f"baseline-{s}") for s in range(3)]
    records = [_record("baseline", 0, task.dataset, {"Csplt1": 0.5})]
    records[0].update(run_id="baseline-0", wall_seconds=1800.0)
    coverage = benchmark.benchmark_coverage(records, {"benchmark runs": configs,
                                                      "targeted runs": []}, pd.DataFrame(), [task])
    assert coverage.loc["steels", "benchmark runs"] == "1 / 3"
    assert coverage.loc["steels", "targeted runs"] == "-"
    assert coverage.loc["steels", "run h"] == 0.5
    for seed, level in ((0, 1.0), (1, 3.0)):
        rec = _record("ensemble", seed, task.dataset, {col.COVARIATE: 1.0, "Csplt1": 0.5})
        rec["risk_coverage"] = {col.COVARIATE: {"confident_half": 1, "uncertain_half": 2,
                                                "aurc": 1, "risk": [level, 2 * level]},
                                "val": {"confident_half": 1, "uncertain_half": 2, "aurc": 1,
                                        "risk": [0.1, 0.2]}}
        records.append(rec)
    curves = benchmark.task_risk_curves(records, range(2), [task])
    assert list(curves) == ["steels"]
    assert curves["steels"][col.COVARIATE].tolist() == [2.0, 4.0]
    assert curves["steels"].index.tolist() == [0.5, 1.0]
    assert benchmark.task_risk_curves(records, [5], [task]) == {}
