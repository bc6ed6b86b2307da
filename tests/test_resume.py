"""An interrupted run resumes from its last finished epoch and gives the same numbers."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from test_cal import quick_cfg, shifted_regression, small_net

from calkit import runner, store, sweep
from calkit.engine import (
    Snapshot,
    SnapshotError,
    SnapshotProgress,
    TrainingEngine,
    read_snapshot_progress,
    stage_snapshot_path,
)
from calkit.methods.cal import fit_cal
from calkit.runs import RunConfig


class Interrupted(Exception):
    """Stands for a kill: raised after an epoch has ended, before its snapshot is written."""


def interrupt_after(monkeypatch, stop_epoch: int) -> None:
    """Make the engine raise :class:`Interrupted` once epoch ``stop_epoch`` has been evaluated."""
    original = TrainingEngine.end_epoch

    def end_epoch(self, epoch, *args, **kwargs):
        stop = original(self, epoch, *args, **kwargs)
        if epoch == stop_epoch:
            raise Interrupted
        return stop

    monkeypatch.setattr(TrainingEngine, "end_epoch", end_epoch)


def same_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(("target_set", "stop_epoch"), [
    ("covariate", 1),  # in the warm-up
    ("covariate", 3),  # in the adversarial phase
    (None, 3),  # between two re-sorts of the high-loss rows, which the snapshot must carry
])
def test_cal_resumed_equals_uninterrupted(tmp_path, monkeypatch, target_set, stop_epoch):
    X, y, sets = shifted_regression(0, n=900)
    cfg = quick_cfg(epochs=6, pre_adv_epochs=2, dropout=0.3, ema_start_epoch=1)
    kwargs = dict(target_set=target_set, n_target=40 if target_set else 0)
    whole = fit_cal(small_net(), X, y, sets, cfg, **kwargs)
    snap = Snapshot(tmp_path / "run.snapshot.pt", owner="run-1", code="abc")
    with monkeypatch.context() as patch:
        interrupt_after(patch, stop_epoch)
        with pytest.raises(Interrupted):
            fit_cal(small_net(), X, y, sets, cfg, snapshot=snap, **kwargs)
    assert snap.path.is_file()
    # Another initialisation: everything the resumed epochs read must come from the snapshot.
    resumed = fit_cal(small_net(seed=7), X, y, sets, cfg, snapshot=snap, **kwargs)
    assert resumed.resumed == [{"epoch": stop_epoch, "code": "abc",
                                "seconds_before": pytest.approx(
                                    resumed.history["seconds"].iloc[:stop_epoch].sum(), abs=0.01)}]
    np.testing.assert_array_equal(resumed.history.drop(columns="seconds").to_numpy(),
                                  whole.history.drop(columns="seconds").to_numpy())
    assert same_states(resumed.model, whole.model) and same_states(resumed.ema_model,
                                                                    whole.ema_model)
    assert same_states(resumed.last_model, whole.last_model)
    np.testing.assert_array_equal(resumed.w_history, whole.w_history)
    np.testing.assert_array_equal(resumed.w, whole.w)
    assert resumed.run_info()["resumed"] == resumed.resumed and "resumed" not in whole.run_info()


def test_plain_fit_resumes_its_early_stopping_and_a_finished_fit_is_not_extended(tmp_path,
                                                                                 monkeypatch):
    X, y, sets = shifted_regression(1, n=600)
    cfg = quick_cfg(epochs=8, patience=2, lr=3e-2, schedule="plateau", plateau_patience=1).train

    def fit(snapshot=None, seed=0):
        return TrainingEngine(small_net(seed=seed), X, y, sets, cfg).fit(snapshot=snapshot)

    whole = fit()
    snap = Snapshot(tmp_path / "plain.snapshot.pt", owner="plain")
    stop = min(2, whole.epochs_run - 1)
    with monkeypatch.context() as patch:
        interrupt_after(patch, stop)
        with pytest.raises(Interrupted):
            fit(snap)
    resumed = fit(snap, seed=3)
    assert (resumed.epochs_run, resumed.stopped_early, resumed.selected_epoch) == \
        (whole.epochs_run, whole.stopped_early, whole.selected_epoch)
    assert same_states(resumed.model, whole.model)
    # The snapshot now holds the finished fit: loading it again runs no further epoch.
    again = fit(snap, seed=5)
    assert again.epochs_run == whole.epochs_run and len(again.history) == len(whole.history)
    assert same_states(again.model, whole.model) and len(again.resumed) == 2


def test_a_snapshot_of_another_run_or_an_unreadable_one_is_refused(tmp_path):
    X, y, sets = shifted_regression(2, n=300)
    cfg = quick_cfg(epochs=1).train
    path = tmp_path / "x.snapshot.pt"
    TrainingEngine(small_net(), X, y, sets, cfg).fit(snapshot=Snapshot(path, owner="run-a"))
    with pytest.raises(SnapshotError, match="belongs to 'run-a', not 'run-b'.*Delete it"):
        TrainingEngine(small_net(), X, y, sets, cfg).fit(snapshot=Snapshot(path, owner="run-b"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SnapshotError, match="cannot be read.*Delete it to start the run again"):
        TrainingEngine(small_net(), X, y, sets, cfg).fit(snapshot=Snapshot(path, owner="run-a"))


@pytest.mark.parametrize("method", ["baseline", "cal"])
def test_an_interrupted_run_resumes_to_the_same_record(tiny_bundle, tmp_path, monkeypatch,
                                                       capsys, method):
    config = RunConfig(method=method, profile="smoke", epochs=4)
    whole = runner.run_experiment(config, root=tmp_path / "whole", progress=False,
                                  bundle=tiny_bundle)
    root = tmp_path / "cut"
    snapshot = store.snapshot_path(config.run_id, "smoke", root)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        with pytest.raises(Interrupted):
            runner.run_experiment(config, root=root, progress=False, bundle=tiny_bundle)
    assert snapshot.is_file() and not store.record_path(config.run_id, "smoke", root).is_file()
    progress = read_snapshot_progress(snapshot)
    assert (progress.planned_epochs, progress.patience) == (4, config.resolve().train.patience)
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"name: t\nseeds: [0]\nruns:\n  - {{method: {method}, epochs: 4}}\n")
    capsys.readouterr()
    assert sweep.main([str(grid), "--profile", "smoke", "--results", str(root), "--dry-run"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith(f"part   {config.run_id}")
    assert listing[1].strip().startswith("epoch 2 of 4 done"), listing
    pace = "still in the CAL warm-up" if method == "cal" else "left at the last epochs' pace"
    assert pace in listing[1], listing
    record = runner.run_experiment(config, root=root, progress=False, bundle=tiny_bundle)
    assert record["metrics"] == whole["metrics"]
    assert record["predictions"] == whole["predictions"]
    assert [r["epoch"] for r in record["resumed"]] == [2] and "resumed" not in whole
    assert not snapshot.exists()  # the record is written: the snapshot has done its work


def fake_snapshot(path, seconds, phases, bad_epochs, plan=None):
    history = [{"epoch": i, "seconds": t, **({} if p is None else {"phase": p})}
               for i, (t, p) in enumerate(zip(seconds, phases, strict=True))]
    torch.save({"history": history, "bookkeeping": {"bad_epochs": bad_epochs},
                **({} if plan is None else {"plan": plan})}, path)


def test_snapshot_progress_reads_the_pace_of_the_current_phase(tmp_path):
    path = tmp_path / "run.snapshot.pt"
    fake_snapshot(path, [10, 10, 400, 500], [0.0, 0.0, 1.0, 1.0], bad_epochs=3)
    progress = read_snapshot_progress(path)
    assert progress == SnapshotProgress(4, 920.0, 450.0, warming_up=False, bad_epochs=3)
    text = sweep.describe_progress(progress, total_epochs=60, patience=20)
    assert text.startswith("epoch 4 of 60 done, 15 min of epochs so far")
    assert "stops after epoch 21 unless the validation loss improves" in text
    assert "up to about 7.0 h left" in text  # 56 epochs at 450 s
    ended = sweep.describe_progress(SnapshotProgress(25, 9e3, 450.0, bad_epochs=20), 60, 20)
    assert "early stopping has ended it" in ended and "left at" not in ended
    fake_snapshot(path, [10, 12], [0.0, 0.0], bad_epochs=0)
    assert "still in the CAL warm-up" in sweep.describe_progress(read_snapshot_progress(path), 60)
    path.write_bytes(path.read_bytes()[:50])
    assert read_snapshot_progress(path) is None
    assert read_snapshot_progress(tmp_path / "missing.pt") is None


def test_a_running_sweep_shows_each_unfinished_runs_epochs(tmp_path, monkeypatch, capsys):
    config = RunConfig(method="baseline", profile="smoke", epochs=4)
    snapshot = store.snapshot_path(config.run_id, "smoke", tmp_path)
    snapshot.parent.mkdir(parents=True)
    fake_snapshot(snapshot, [1.0, 1.0, 1.0], [None] * 3, bad_epochs=0)
    monkeypatch.setattr(sweep, "PROGRESS_POLL_SECONDS", 0.02)

    def slow_runner(cfg, root):
        time.sleep(0.5)  # the watcher polls about 25 times meanwhile
        return cfg.run_id, 0.5, None

    assert sweep.run_sweep([config], jobs=1, root=tmp_path, runner=slow_runner) == {}
    assert f"{config.run_id} 3/4" in capsys.readouterr().err


def test_progress_of_a_run_that_fits_several_networks_names_the_fit_in_progress(tmp_path, capsys):
    config = RunConfig(method="baseline", profile="smoke", epochs=4)
    main = store.snapshot_path(config.run_id, "smoke", tmp_path)
    main.parent.mkdir(parents=True)
    assert store.current_snapshot(config.run_id, "smoke", tmp_path) is None
    finished = stage_snapshot_path(main, "candidate0")
    fake_snapshot(finished, [1.0] * 4, [None] * 4, bad_epochs=0)
    in_progress = stage_snapshot_path(main, "candidate1")
    fake_snapshot(in_progress, [1.0, 1.0], [None] * 2, bad_epochs=0)
    os.utime(finished, (1e9, 1e9))  # written long before the fit in progress
    assert store.current_snapshot(config.run_id, "smoke", tmp_path) == ("candidate1", in_progress)
    stage, progress, total, _ = sweep.snapshot_progress([config], tmp_path)[config.run_id]
    assert (stage, progress.epochs_run, total) == ("candidate1", 2, 4)
    assert sweep.progress_label(config.run_id, stage) == f"{config.run_id}:candidate1"
    fake_snapshot(main, [1.0], [None], bad_epochs=0)  # a single-fit run's own snapshot wins
    assert store.current_snapshot(config.run_id, "smoke", tmp_path) == ("", main)
    main.unlink()
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: t\nseeds: [0]\nruns:\n"
                    "  - {method: baseline, profile: smoke, epochs: 4}\n")
    assert sweep.main([str(grid), "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"part   {config.run_id}") and "candidate1: epoch 2 of 4 done" in out


def test_a_refit_shows_its_own_planned_epochs_not_the_runs(tmp_path, capsys):
    """The refit of ``targeted_select`` runs exactly the epochs its search chose, fewer than the
    run's budget; its snapshot keeps that plan, and the progress line counts against it."""
    config = RunConfig(method="baseline", profile="smoke", epochs=40)
    refit = stage_snapshot_path(store.snapshot_path(config.run_id, "smoke", tmp_path), "refit")
    refit.parent.mkdir(parents=True)
    fake_snapshot(refit, [1.0] * 5, [None] * 5, bad_epochs=0, plan={"epochs": 7, "patience": 7})
    stage, progress, total, patience = sweep.snapshot_progress([config], tmp_path)[config.run_id]
    assert (stage, progress.epochs_run, total, patience) == ("refit", 5, 7, 7)
    fake_snapshot(refit, [1.0] * 5, [None] * 5, bad_epochs=0)  # written before snapshots kept it
    assert sweep.snapshot_progress([config], tmp_path)[config.run_id][2] == 40
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: t\nseeds: [0]\nruns:\n"
                    "  - {method: baseline, profile: smoke, epochs: 40}\n")
    fake_snapshot(refit, [1.0] * 5, [None] * 5, bad_epochs=0, plan={"epochs": 7, "patience": 7})
    assert sweep.main([str(grid), "--dry-run", "--results", str(tmp_path)]) == 0
    assert "refit: epoch 5 of 7 done" in capsys.readouterr().out


def test_dry_run_plans_cpu_hours_from_the_recorded_runs_of_each_entry(tmp_path, capsys):
    """``--dry-run`` ends with a plan: per grid entry (runs that differ only in the seed), runs
    done and left and the CPU-hours left at the median wall time of its recorded runs."""
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: t\nseeds: [0, 1, 2, 3]\nruns:\n  - {method: baseline}\n"
                    "  - {method: finetune, target_set: relation, n_target: 16}\n")
    configs = sweep.load_grid(grid, profile="smoke")
    baselines = [c for c in configs if c.method == "baseline"]
    for config, wall in zip(baselines[:3], [600.0, 1800.0, 1200.0], strict=True):
        store.write_json({"run_id": config.run_id, "request": config.request(),
                          "wall_seconds": wall},
                         store.record_path(config.run_id, "smoke", tmp_path))
    base, tune = sweep.cost_plan(configs, tmp_path)
    assert (base.done, base.left, base.median_seconds) == (3, 1, 1200.0)
    assert base.hours_left == pytest.approx(1200 / 3600)
    assert (tune.done, tune.left, tune.median_seconds, tune.hours_left) == (0, 4, None, None)
    lines = sweep.describe_cost([base, tune])
    assert lines[1].startswith("  baseline (smoke, mp2019): 3 done, 1 left; median 20 min")
    assert "finetune -> relation N=16" in lines[2] and "no recorded run to time" in lines[2]
    assert lines[-1] == ("  3 of 8 runs recorded; about 0.3 CPU-h left in the timed entries, "
                         "and 4 runs of entries with no recorded run")
    assert sweep.main([str(grid), "--profile", "smoke", "--results", str(tmp_path),
                       "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-len(lines):] == lines


def test_an_untimed_variant_is_planned_at_the_pace_of_the_entry_it_varies(tmp_path):
    """A control that differs from a grid entry only in its overrides (the no-attack control of
    ``grids/verdict_select.yaml``) has no run of its own to time until one lands; the plan times
    it by the entry it varies and says so, and still leaves unrelated entries untimed."""
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: t\nseeds: [0, 1]\nruns:\n  - {method: baseline}\n"
                    "  - {method: baseline, overrides: {lr: 0.01}}\n"
                    "  - {method: finetune, target_set: relation, n_target: 16}\n")
    configs = sweep.load_grid(grid, profile="smoke")
    plain = next(c for c in configs if c.method == "baseline" and not c.overrides)
    store.write_json({"run_id": plain.run_id, "request": plain.request(), "wall_seconds": 900.0},
                     store.record_path(plain.run_id, "smoke", tmp_path))
    base, variant, tune = sweep.cost_plan(configs, tmp_path)
    assert variant.walls == () and variant.paced_by is base
    assert (variant.left, variant.median_seconds) == (2, 900.0)
    assert variant.hours_left == pytest.approx(0.5)
    assert tune.paced_by is None and tune.median_seconds is None
    lines = sweep.describe_cost([base, variant, tune])
    assert "at the pace of baseline (smoke, mp2019), 15 min a run, about 0.5 CPU-h" in lines[2]
    assert lines[-1] == ("  1 of 6 runs recorded; about 0.8 CPU-h left in the timed entries "
                         "(0.5 of them at the pace of the entry they vary), and 2 runs of entries "
                         "with no recorded run")
