from __future__ import annotations

import json

import numpy as np
import pytest

from calkit import experiments as ex
from calkit import sweep


def test_run_config_rejects_bad_values_with_valid_choices():
    with pytest.raises(ValueError, match="Valid methods: baseline, cal"):
        ex.RunConfig(method="sal").validate()
    with pytest.raises(ValueError, match="Valid profiles"):
        ex.RunConfig(profile="gpu").validate()
    with pytest.raises(ValueError, match="needs target_set"):
        ex.RunConfig(method="targeted").validate()
    with pytest.raises(ValueError, match="unknown set name 'piezzo'"):
        ex.RunConfig(method="finetune", target_set="piezzo", n_target=8).validate()
    with pytest.raises(ValueError, match="Valid presets"):
        ex.RunConfig(model_preset="huge").validate()
    with pytest.raises(ValueError, match="no delta_e"):
        ex.RunConfig(dataset="phonons").validate()


def test_run_id_is_stable_resolves_aliases_and_ignores_device():
    a = ex.RunConfig(method="targeted", target_set="relation", n_target=8)
    b = ex.RunConfig(method="targeted", target_set="piezo", n_target=8, device="cpu")
    assert a.run_id == b.run_id
    assert a.run_id != ex.RunConfig(method="targeted", target_set="relation", n_target=9).run_id
    assert a.run_id.startswith("targeted-")


def test_training_config_applies_profile_ablation_and_overrides():
    cfg = ex.training_config(
        ex.RunConfig(method="pg_last", profile="smoke", seed=4, overrides=(("alpha", 0.25),))
    )
    assert cfg.grad_layers == "last" and cfg.alpha == 0.25 and cfg.seed == 4 and cfg.epochs == 4
    base = ex.training_config(ex.RunConfig(method="baseline", profile="cpu", epochs=7))
    assert base.epochs == 7
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        ex.training_config(ex.RunConfig(method="baseline", overrides=(("attack_lr", 1.0),)))


def test_grid_loading_validates_entries(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "seeds: [0, 1]\nruns:\n"
        "  - {method: finetune, target_set: relation, n_target: 4}\n"
        "  - {method: baseline}\n"
    )
    configs = sweep.load_grid(grid, profile="smoke")
    assert [c.method for c in configs] == ["baseline", "baseline", "finetune", "finetune"]
    assert {c.seed for c in configs} == {0, 1}
    grid.write_text("runs:\n  - {method: baseline, lr: 1}\n")
    with pytest.raises(ValueError, match="unknown field"):
        sweep.load_grid(grid)
    grid.write_text("runs:\n  - {method: nope}\n")
    with pytest.raises(ValueError, match="run 0"):
        sweep.load_grid(grid)
    assert sweep.main([str(grid)]) == 2


@pytest.mark.realdata
@pytest.mark.slow
def test_record_is_complete_and_rerun_gives_same_numbers(real_data, tmp_path):
    config = ex.RunConfig(method="cal", profile="smoke", seed=1, epochs=3)
    record = ex.run_experiment(config, root=tmp_path, progress=False)
    path = ex.record_path(config, tmp_path)
    assert path.is_file()
    for key in (
        "config",
        "train_config",
        "metrics",
        "history",
        "seed",
        "git_commit",
        "versions",
        "hardware",
        "wall_seconds",
        "w_final",
    ):
        assert key in record, key
    assert set(record["metrics"]) == {"best", "ema"}
    assert record["history"]["perturbation"][-1] >= 0
    # A finished run is never computed again...
    stamp = path.stat().st_mtime_ns
    assert ex.run_experiment(config, root=tmp_path, progress=False) == json.loads(path.read_text())
    assert path.stat().st_mtime_ns == stamp
    # ...and recomputing it from its config gives the same numbers.
    again = ex.run_experiment(config, root=tmp_path, force=True, progress=False)
    assert again["metrics"] == record["metrics"]
    assert again["history"]["val_loss"] == record["history"]["val_loss"]


@pytest.mark.realdata
@pytest.mark.slow
def test_finetune_reuses_baseline_and_sweep_resumes(real_data, tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "seeds: [0]\nruns:\n  - {method: baseline, epochs: 2}\n"
        "  - {method: finetune, target_set: prior, n_target: 32, epochs: 2}\n"
    )
    configs = sweep.load_grid(grid, profile="smoke")
    assert sweep.run_sweep(configs, jobs=1, root=tmp_path, progress=False) == {}
    records = ex.load_records("smoke", tmp_path)
    assert sorted(r["config"]["method"] for r in records) == ["baseline", "finetune"]
    finetune = next(r for r in records if r["config"]["method"] == "finetune")
    assert len(finetune["target_indices"]) == 32
    assert finetune["metrics"]["ema"]["infoY_delta_e_target"]["n"] == 32
    # Interrupted sweep: delete one record; only that run is redone.
    ex.record_path(configs[1], tmp_path).unlink()
    kept = ex.record_path(configs[0], tmp_path).stat().st_mtime_ns
    assert sweep.run_sweep(configs, jobs=1, root=tmp_path, progress=False) == {}
    assert ex.record_path(configs[0], tmp_path).stat().st_mtime_ns == kept
    assert ex.record_path(configs[1], tmp_path).is_file()


@pytest.mark.realdata
def test_prepare_data_smoke_is_deterministic(real_data):
    a = ex.prepare_data("mp2019", "smoke", progress=False)
    b = ex.prepare_data("mp2019", "smoke", progress=False)
    assert len(a.frame) == 3000 and a.X.shape == (3000, 145)
    assert a.sets.equals(b.sets) and np.array_equal(a.X, b.X)
    assert np.abs(a.X).max() <= 10.0
    assert a.sets["train"].sum() > 500
