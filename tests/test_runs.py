"""The method registry, run configs, the run identity, the record store and the runner."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from calkit import methods, profiles, runner, store, sweep
from calkit.config import SAL_FIELDS_ADDED_LATER
from calkit.methods import REGISTRY, Method, get_method, method_label
from calkit.methods.plain import run_plain
from calkit.methods.registry import _REGISTRY
from calkit.runs import RECORD_FORMAT, RunConfig

ROOT = Path(__file__).resolve().parents[1]


def _config(name: str, **kw) -> RunConfig:
    target = dict(target_set="relation", n_target=8) if get_method(name).needs_target else {}
    return RunConfig(method=name, profile="smoke", **{**target, **kw})


def test_every_registered_method_reaches_every_consumer(tmp_path):
    """Walk the registry: each method validates, resolves to the right config parts, has a
    label, is ordered by the sweep after the runs it needs, and gets a record path."""
    assert list(REGISTRY)[:3] == ["baseline", "cal", "targeted"]
    grid = tmp_path / "all.yaml"
    grid.write_text("runs:\n" + "".join(
        f"  - {{method: {m.name}"
        + (", target_set: relation, n_target: 8" if m.needs_target else "") + "}\n"
        for m in REGISTRY.values()))
    configs = sweep.load_grid(grid, profile="smoke")
    assert {c.method for c in configs} == set(REGISTRY)
    seen_needing = False
    for config in configs:
        method = get_method(config.method)
        seen_needing |= method.needs_baseline
        assert method.needs_baseline == seen_needing, "sweep must order baselines first"
        run = config.resolve()
        assert run.run_id.startswith(f"{method.name}-") and run.method is method
        assert method_label(method.name) == method.label and method.label
        assert (run.sal is not None) == (method.family == "cal")
        assert (run.finetune is not None) == (method.family == "finetune")
        for key, value in method.recipe_changes.items():
            assert getattr(run.train, key) == value, (method.name, key)
        for key, value in method.sal_changes.items():
            assert getattr(run.sal, key) == value, (method.name, key)
        assert run.model_preset == (method.model_preset or profiles.PROFILES["smoke"].model_preset)
        path = store.record_path(run.run_id, "smoke", tmp_path)
        assert path.name == f"{run.run_id}.json"
        assert set(method.paper_rows) <= {"base", "targeted", "ablation"}


def test_unknown_names_fail_with_the_valid_ones():
    with pytest.raises(ValueError, match="Valid methods: baseline, cal, targeted"):
        RunConfig(method="sal").validate()
    with pytest.raises(ValueError, match="Valid profiles"):
        RunConfig(profile="gpu").validate()
    with pytest.raises(ValueError, match="needs target_set"):
        RunConfig(method="targeted").validate()
    with pytest.raises(ValueError, match="takes no target"):
        RunConfig(method="cal", target_set="relation", n_target=4).validate()
    with pytest.raises(ValueError, match="unknown set name 'piezzo'"):
        RunConfig(method="finetune", target_set="piezzo", n_target=8).validate()
    with pytest.raises(ValueError, match="Valid presets"):
        RunConfig(model_preset="huge").validate()
    with pytest.raises(ValueError, match="has no target 'delta_e'; its targets are last_phdos"):
        RunConfig(dataset="phonons", target="delta_e").validate()
    with pytest.raises(ValueError, match="does not exist on data set 'phonons'.*Xshift_umap"):
        RunConfig(method="targeted", dataset="phonons", target_set="relation",
                  n_target=8).validate()
    with pytest.raises(ValueError, match="does not exist on data set 'phonons'.*infoY_last"):
        RunConfig(method="targeted", dataset="phonons", target_set="high_gap",
                  n_target=8).validate()
    with pytest.raises(ValueError, match="unknown config field.*atack_lr.*SAL"):
        RunConfig(method="cal", overrides=(("atack_lr", 1.0),)).validate()
    with pytest.raises(ValueError, match="has no SAL settings"):
        RunConfig(method="baseline", overrides=(("attack_lr", 1.0),)).resolve()


def test_one_recipe_shared_by_baseline_and_cal_and_declared_changes_only():
    base = RunConfig(method="baseline").resolve()
    cal = RunConfig(method="cal").resolve()
    assert base.train.identity() == cal.train.identity()
    targeted = RunConfig(method="targeted", target_set="prior", n_target=64).resolve()
    differs = {k for k, v in targeted.train.identity().items() if base.train.identity()[k] != v}
    assert differs == set(get_method("targeted").recipe_changes) == {"selection"}
    pg = RunConfig(method="pg_first").resolve()
    assert {k for k, v in pg.sal.identity().items() if cal.sal.identity()[k] != v} == \
        {"grad_layers"}


def test_run_id_covers_what_the_run_computes(monkeypatch):
    config = RunConfig(method="cal", profile="smoke")
    first = config.run_id
    assert dataclasses.replace(config, device="cpu").run_id == first  # device: same numbers
    assert RunConfig(method="targeted", target_set="relation", n_target=8).run_id == \
        RunConfig(method="targeted", target_set="piezo", n_target=8).run_id  # alias
    assert dataclasses.replace(config, overrides=(("alpha", 0.25),)).run_id != first
    smoke = profiles.PROFILES["smoke"]
    changed = {
        "recipe": dataclasses.replace(smoke, recipe=dataclasses.replace(smoke.recipe, lr=5e-4)),
        "sal": dataclasses.replace(smoke, sal=dataclasses.replace(smoke.sal, attack_lr=0.5)),
        "threads": dataclasses.replace(smoke, threads=2),
    }
    for what, prof in changed.items():
        with monkeypatch.context() as m:
            m.setitem(profiles.PROFILES, "smoke", prof)
            assert config.run_id != first, what
    with monkeypatch.context() as m:
        m.setattr("calkit.runs.RECORD_FORMAT", RECORD_FORMAT + 1)
        assert config.run_id != first
    # A SAL setting added after records existed stays out of the identity at its default (the
    # behaviour before it existed), so stored ids hold; set away from it, it changes the id.
    for name, value in {"attack_beta2": 0.9, "attack_cost": "row_sum"}.items():
        assert name in SAL_FIELDS_ADDED_LATER
        assert name not in config.resolve().sal.identity()
        moved = dataclasses.replace(config, overrides=((name, value),))
        assert moved.resolve().sal.identity()[name] == value
        assert moved.run_id != first, name
    # A fine-tune's identity includes its baseline's, so a changed recipe reaches it too.
    ft = RunConfig(method="finetune", profile="smoke", target_set="relation", n_target=8)
    assert ft.resolve().identity["baseline"] == ft.baseline().run_id


@pytest.fixture
def toy_method():
    """A method registered for one test: one entry plus its function is all it takes."""
    entry = methods.register(Method("toy", "toy net", "plain", run_plain, "a test method",
                                    recipe_changes={"lr": 3e-3}, why="test"))
    yield entry
    _REGISTRY.pop("toy")


def test_a_new_method_runs_end_to_end_and_records(toy_method, tiny_bundle, tmp_path):
    config = RunConfig(method="toy", profile="smoke", epochs=2)
    record = runner.run_experiment(config, root=tmp_path, progress=False, bundle=tiny_bundle)
    path = store.record_path(config.run_id, "smoke", tmp_path)
    assert path.is_file() and record["method"] == "toy" and record["format"] == RECORD_FORMAT
    assert record["resolved"]["train"]["lr"] == 3e-3 and record["request"]["method"] == "toy"
    assert set(record["metrics"]) == {"raw", "ema", "raw_last", "ema_last"}
    assert record["epochs_run"] == 2
    assert record["resolved"]["threads"] == record["hardware"]["torch_threads"] == 1
    # Its time can be read against the machine: the run measured its own matmul rate.
    assert record["hardware"]["matmul_gflops"] > 0 and record["hardware"]["cpu"]
    assert not store.is_stale(record)
    # A finished run is never computed again.
    stamp = path.stat().st_mtime_ns
    assert runner.run_experiment(config, root=tmp_path, progress=False, bundle=tiny_bundle) == \
        json.loads(path.read_text())
    assert path.stat().st_mtime_ns == stamp


def test_changed_code_makes_records_stale_and_the_sweep_reruns_them(
        toy_method, tiny_bundle, tmp_path, monkeypatch, capsys):
    config = RunConfig(method="toy", profile="smoke", epochs=2)
    runner.run_experiment(config, root=tmp_path, progress=False, bundle=tiny_bundle)
    old_id = config.run_id
    changed = dataclasses.replace(toy_method, recipe_changes={"lr": 1e-3})
    monkeypatch.setitem(_REGISTRY, "toy", changed)
    assert config.run_id != old_id
    records = store.load_records("smoke", tmp_path)
    split = store.partition_records(records)
    assert [r["run_id"] for r in split.stale] == [old_id] and not split.current
    assert split.stale_table()["current id"].tolist() == [config.run_id]
    assert [p.stem for p in store.stale_records_of(config, tmp_path)] == [old_id]
    monkeypatch.setattr("calkit.runner.prepare_plan", lambda *a, **k: tiny_bundle)
    assert sweep.run_sweep([config], jobs=1, root=tmp_path, progress=False) == {}
    assert "only stale records" in capsys.readouterr().out
    assert not store.record_path(config.run_id, "smoke", tmp_path).is_file()
    assert sweep.run_sweep([config], jobs=1, root=tmp_path, progress=False,
                           rerun_stale=True) == {}
    assert store.record_path(config.run_id, "smoke", tmp_path).is_file()
    assert not store.record_path(old_id, "smoke", tmp_path).is_file()


def test_finetune_rebuilds_a_missing_baseline_checkpoint_and_checks_it(tiny_bundle, tmp_path,
                                                                       capsys):
    base = RunConfig(method="baseline", profile="smoke", epochs=2)
    ft = RunConfig(method="finetune", profile="smoke", epochs=2, target_set="relation",
                   n_target=16)
    stored = runner.run_experiment(base, root=tmp_path, progress=False, bundle=tiny_bundle)
    ckpt = store.checkpoint_path(base.run_id, "smoke", tmp_path)
    assert ckpt.is_file()
    ckpt.unlink()  # a fresh clone: the record is committed, the checkpoint is not
    record = runner.run_experiment(ft, root=tmp_path, progress=False, bundle=tiny_bundle)
    assert "checkpoint" in capsys.readouterr().err and ckpt.is_file()
    assert len(record["target_indices"]) == 16
    assert record["metrics"]["ema"]["piezo_target"]["n"] == 16
    assert store.load_record(store.record_path(base.run_id, "smoke", tmp_path)) == stored
    # Metrics of another structure come from other code: refused, not silently replaced.
    ckpt.unlink()
    path = store.record_path(base.run_id, "smoke", tmp_path)
    tampered = {**stored, "metrics": {**stored["metrics"], "ema": {}}}
    path.write_text(json.dumps(tampered))
    with pytest.raises(store.RecordMismatch, match="another structure"):
        runner.run_experiment(ft, root=tmp_path, progress=False, bundle=tiny_bundle, force=True)


def _perturbed(record: dict, rel: float) -> dict:
    """The record with every metric moved by ``rel`` relative (another machine's rounding)."""
    def move(node):
        if isinstance(node, dict):
            return {k: move(v) for k, v in node.items()}
        return node * (1 + rel) if isinstance(node, float) else node
    return {**record, "metrics": move(record["metrics"])}


@pytest.mark.parametrize("rel, within", [(1e-7, True), (1e-2, False)])
def test_a_baseline_recomputed_elsewhere_is_compared_within_a_tolerance(tiny_bundle, tmp_path,
                                                                       rel, within):
    """Records are portable: a fine-tune whose baseline checkpoint is missing recomputes the
    baseline; a difference within RECOMPUTE_RTOL is accepted silently, a larger one is warned
    about and named in the fine-tune's record, and the run completes either way."""
    base = RunConfig(method="baseline", profile="smoke", epochs=2)
    ft = RunConfig(method="finetune", profile="smoke", epochs=2, target_set="relation",
                   n_target=16)
    stored = runner.run_experiment(base, root=tmp_path, progress=False, bundle=tiny_bundle)
    store.checkpoint_path(base.run_id, "smoke", tmp_path).unlink()
    path = store.record_path(base.run_id, "smoke", tmp_path)
    path.write_text(json.dumps(_perturbed(stored, rel)))
    assert store.metrics_difference(stored["metrics"], _perturbed(stored, rel)["metrics"]) \
        == pytest.approx(rel, rel=0.02)
    if within:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning at all
            record = runner.run_experiment(ft, root=tmp_path, progress=False,
                                           bundle=tiny_bundle)
    else:
        with pytest.warns(UserWarning, match=r"moved its metrics by up to 0\.0099 relative"):
            record = runner.run_experiment(ft, root=tmp_path, progress=False,
                                           bundle=tiny_bundle)
    check = record["baseline_recomputed"]
    assert check["run_id"] == base.run_id and check["within_tolerance"] is within
    assert check["max_rel_difference"] == pytest.approx(rel, rel=0.02)
    assert store.load_record(path) == _perturbed(stored, rel)  # the stored record is kept
    assert record["metrics"]["ema"]["piezo_target"]["n"] == 16


def test_corrupted_record_names_the_file(tmp_path):
    path = tmp_path / "smoke" / "runs" / "baseline-000000000000.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"run_id": ')
    with pytest.raises(ValueError, match="baseline-000000000000.json is not a valid run record"):
        store.load_records("smoke", tmp_path)


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
@pytest.mark.extended  # a minute of real training; the Dask plumbing is tested fast on its own
def test_jobs_one_and_two_give_identical_records(real_data, tmp_path):
    """A smoke grid (baseline, CAL, a fine-tune that waits for its baseline), one seed,
    sequentially and in two worker processes."""
    pytest.importorskip("distributed",
                        reason="--jobs 2 runs on Dask: pip install 'calkit-ood[dask]'")
    grid = tmp_path / "grid.yaml"
    grid.write_text("runs:\n  - {method: baseline}\n  - {method: cal}\n"
                    "  - {method: finetune, target_set: relation, n_target: 16}\n")
    configs = sweep.load_grid(grid, profile="smoke", seeds=[0])
    one, two = tmp_path / "one", tmp_path / "two"
    assert sweep.run_sweep(configs, jobs=1, root=one, progress=False) == {}
    assert sweep.run_sweep(configs, jobs=2, root=two, progress=False) == {}
    for config in configs:
        a = store.load_record(store.record_path(config.run_id, "smoke", one))
        b = store.load_record(store.record_path(config.run_id, "smoke", two))
        assert a["metrics"] == b["metrics"], config
        assert {k: v for k, v in a["history"].items() if k != "seconds"} == \
            {k: v for k, v in b["history"].items() if k != "seconds"}, config
        assert a["predictions"] == b["predictions"], config
        assert a["hardware"]["torch_threads"] == b["hardware"]["torch_threads"] == 1


@pytest.mark.realdata
def test_prepare_data_smoke_is_deterministic(real_data):
    from calkit.pipeline import prepare_data

    a = prepare_data("mp2019", "smoke", progress=False)
    b = prepare_data("mp2019", "smoke", progress=False)
    assert len(a.frame) == 3000 and a.X.shape == (3000, 145)
    assert a.sets.equals(b.sets) and np.array_equal(a.X, b.X)
    assert np.abs(a.X).max() <= 10.0
    assert a.sets["train"].sum() > 500


def test_every_registered_method_runs_end_to_end(tiny_bundle, tmp_path):
    """Each registry entry trains, evaluates and records on a tiny bundle (2 epochs)."""
    for name, method in REGISTRY.items():
        config = _config(name, epochs=2, overrides=(("pre_adv_epochs", 1),)
                         if method.family == "cal" else ())
        record = runner.run_experiment(config, root=tmp_path, progress=False,
                                       bundle=tiny_bundle)
        assert record["method"] == name
        assert set(record["metrics"]) == {"raw", "ema", "raw_last", "ema_last"}, name
        for metrics in record["metrics"].values():
            assert all(np.isfinite(v["loss"]) for v in metrics.values()), name
        if method.needs_target:
            assert len(record["target_indices"]) == 8, name
            assert "piezo_target" in record["metrics"]["ema"], name
        if method.family == "cal":
            assert record["history"]["n_sal_steps"][-1] >= (1 if method.sal_changes.get(
                "sal", True) else 0), name
    oracle = store.load_records("smoke", tmp_path)
    notes = [r["finetune"]["note"] for r in oracle if r["method"] == "finetune_oracle"]
    assert notes and notes[0].startswith("ORACLE")


def test_sweeps_run_without_dask_in_process_and_name_the_extra_otherwise(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    config = RunConfig(method="baseline", profile="smoke")
    calls = []

    def runner(c, root):
        calls.append(c.run_id)
        return c.run_id, 0.0, None

    assert sweep.run_sweep([config], jobs=1, root=tmp_path, progress=False, runner=runner) == {}
    assert calls == [config.run_id]
    for kwargs in ({"jobs": 2}, {"scheduler": "local"}, {"scheduler": "tcp://127.0.0.1:9"}):
        with pytest.raises(sweep.SweepError, match=r"pip install 'calkit-ood\[dask\]'.*--jobs 1"):
            sweep.run_sweep([config], root=tmp_path, progress=False, runner=runner, **kwargs)
    grid = tmp_path / "g.yaml"
    grid.write_text("runs:\n  - {method: baseline}\n")
    assert sweep.main([str(grid), "--profile", "smoke", "--results", str(tmp_path)]) == 2


def test_paper_short_is_the_paper_model_and_sal_with_the_converging_recipe():
    short = RunConfig(method="cal", profile="paper-short").resolve()
    paper = RunConfig(method="cal", profile="paper").resolve()
    cpu = RunConfig(method="cal", profile="cpu").resolve()
    assert short.identity["model"] == paper.identity["model"]
    assert short.identity["model"]["preset"] == "paper"
    # The paper's SAL settings in calkit's reading of the loop (the cpu profile's), not the
    # literal one that the paper profile keeps.
    assert short.sal.supervised_on_all and cpu.sal.supervised_on_all
    assert not paper.sal.supervised_on_all
    assert {**short.identity["sal"], "supervised_on_all": False} == paper.identity["sal"]
    assert short.identity["train"] == cpu.identity["train"]
    assert (short.train.lr, short.train.schedule, short.train.epochs, short.train.patience,
            short.train.ema_start_epoch) == (1e-3, "cosine", 60, 20, 10)
    assert short.identity["data"]["max_rows"] is None and short.threads == 1
    assert len({r.run_id for r in (short, paper, cpu)}) == 3
    configs = sweep.load_grid(ROOT / "grids" / "paper_short.yaml")
    assert {c.profile for c in configs} == {"paper-short"}


def test_authors_profile_is_every_setting_of_the_authors_training_code():
    """The ``authors`` profile (cal-paper.md sections 9-10, ``normal.toml``) on the cpu network."""
    for method in ("baseline", "cal", "finetune"):
        kwargs = {"target_set": "prior", "n_target": 1024} if method == "finetune" else {}
        run = RunConfig(method=method, profile="authors", **kwargs).resolve()
        train = run.train
        assert (train.lr, train.schedule, train.patience, train.ema_start_epoch, train.ema_every,
                train.ema_warmup, train.research_eval_mode_quirk, train.dropout, train.loss,
                train.batch_size) == (1e-4, "none", 100, 20, "epoch", True, True, 0.5,
                                      "smooth_l1", 256)
        assert run.identity["model"]["preset"] == "cpu"
    sal = RunConfig(method="targeted", profile="authors", target_set="prior",
                    n_target=1024).resolve().sal
    assert (sal.pre_adv_epochs, sal.epochs_between_regens, sal.partial_batches) == (10, 10, 21)
    assert not sal.supervised_on_all  # the literal loop: supervised steps on the partial rows
    assert (sal.attack_epochs, sal.attack_lr, sal.theta_epochs, sal.theta_lr) == (10, 3e-4, 3, 3e-4)
    assert (sal.theta_optimizer, sal.theta_lr_schedule, sal.target_steps) == (
        "fresh", "constant", "authors")
    assert (sal.w_init, sal.deltaall, sal.xa_grad_reduce, sal.alpha, sal.r_theta_splits,
            sal.w_update, sal.w_reset, sal.negative_weight_reset) == (
        100.0, 20.0, 0.01, 0.5, 5, "batch", "epoch_end", 1.0)
    configs = sweep.load_grid(ROOT / "grids" / "authors.yaml")
    assert {c.profile for c in configs} == {"authors"} and len({c.seed for c in configs}) >= 5
