"""Sweeps on Dask: the same records as in-process, lost workers, bad addresses, Slurm jobs.

Nothing is trained: an injected runner writes a small record the way ``run_experiment`` does
(atomically, through the store), so these tests cover the scheduling, the retries, the two
phases and the idempotent store in seconds. A LocalCluster of 2 one-thread worker processes
on the loopback is shared by the module.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask/distributed not installed: pip install 'calkit-ood[dask]'")
import cloudpickle  # noqa: E402  (a dependency of distributed)

from calkit import store, sweep  # noqa: E402
from calkit.methods import get_method  # noqa: E402
from calkit.runs import RunConfig  # noqa: E402

# Workers cannot import this test module by name (pytest put tests/ on *its* sys.path only):
# ship the runner below by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fake_runner(config: RunConfig, root: str | None) -> tuple[str, float, str | None]:
    """Write a record derived from the seed (and the baseline's record for second-phase runs).

    Every call leaves a file under ``root/calls``. A file ``root/<run_id>.crash-once`` makes
    the call remove it and kill its worker process, as a machine lost mid-run would.
    """
    import torch

    start = time.perf_counter()
    calls = Path(root) / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    (calls / f"{config.run_id}.{uuid.uuid4().hex}").write_text(str(os.getpid()))
    marker = Path(root) / f"{config.run_id}.crash-once"
    if marker.is_file():
        marker.unlink()
        os._exit(1)
    base = None
    if get_method(config.method).needs_baseline:
        path = store.record_path(config.baseline().run_id, config.profile, root)
        if not path.is_file():
            return config.run_id, 0.0, "the baseline's record is missing"
        base = store.load_record(path)["value"]
    value = float(np.random.default_rng(config.seed).normal())
    record = {"run_id": config.run_id, "request": config.request(), "value": value,
              "baseline_value": base, "threads": torch.get_num_threads()}
    store.write_json(record, store.record_path(config.run_id, config.profile, root))
    return config.run_id, time.perf_counter() - start, None


def calls_of(root: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in sorted((root / "calls").glob("*")):
        out.setdefault(path.name.split(".")[0], []).append(int(path.read_text()))
    return out


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local


@pytest.fixture
def configs() -> list[RunConfig]:
    runs = [RunConfig(method="baseline", profile="smoke", seed=s) for s in range(3)]
    runs += [RunConfig(method="finetune", profile="smoke", seed=s, target_set="relation",
                       n_target=16) for s in range(2)]
    return runs


def records(configs: list[RunConfig], root: Path) -> dict[str, dict]:
    return {c.run_id: store.load_record(store.record_path(c.run_id, c.profile, root))
            for c in configs}


def test_dask_sweep_writes_the_records_of_a_sequential_sweep(cluster, configs, tmp_path):
    seq, dsk = tmp_path / "seq", tmp_path / "dask"
    assert sweep.run_sweep(configs, jobs=1, root=seq, progress=False, runner=fake_runner) == {}
    assert sweep.run_sweep(configs, root=dsk, progress=False, runner=fake_runner,
                           scheduler=cluster.scheduler_address) == {}
    assert records(configs, dsk) == records(configs, seq)
    assert all(r["threads"] == 1 for r in records(configs, dsk).values())
    # Second phase ran after the first (it read its baseline), in the worker processes.
    assert all(r["baseline_value"] is not None for r in records(configs, dsk).values()
               if r["request"]["method"] == "finetune")
    calls = calls_of(dsk)
    assert all(len(pids) == 1 and pids[0] != os.getpid() for pids in calls.values())
    # A finished record is never recomputed.
    assert sweep.run_sweep(configs, root=dsk, progress=False, runner=fake_runner,
                           scheduler=cluster.scheduler_address) == {}
    assert calls_of(dsk) == calls


def test_a_worker_lost_mid_run_is_retried_and_nothing_finished_is_lost(cluster, configs,
                                                                       tmp_path):
    victim = configs[1]
    (tmp_path / f"{victim.run_id}.crash-once").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / f"{victim.run_id}.crash-once").touch()
    client_addr = cluster.scheduler_address
    assert sweep.run_sweep(configs, root=tmp_path, progress=False, runner=fake_runner,
                           scheduler=client_addr) == {}
    calls = calls_of(tmp_path)
    assert len(calls[victim.run_id]) == 2, "the lost run was run again"
    assert all(len(calls[c.run_id]) == 1 for c in configs if c is not victim)
    expected = {c.run_id: float(np.random.default_rng(c.seed).normal()) for c in configs}
    assert {k: r["value"] for k, r in records(configs, tmp_path).items()} == expected
    # The cluster got its worker back.
    with distributed.Client(client_addr, timeout="5s") as client:
        client.wait_for_workers(2, timeout=30)


def test_a_task_the_workers_cannot_unpickle_fails_the_sweep_instead_of_hanging(
        cluster, configs, tmp_path, monkeypatch):
    # The runner's module is on this process's path only, as when a worker runs another
    # environment. Such a worker dies on the task, so without the check the sweep waits forever
    # for workers: run it in a thread and give up.
    (tmp_path / "runner_here_only.py").write_text(
        "def runner(config, root):\n    return config.run_id, 0.0, None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import runner_here_only

    outcome: dict[str, BaseException | None] = {}

    def attempt() -> None:
        try:
            sweep.run_sweep(configs, root=tmp_path / "res", progress=False,
                            runner=runner_here_only.runner, scheduler=cluster.scheduler_address)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the sweep hung on a task its workers cannot unpickle"
    error = outcome["error"]
    assert isinstance(error, sweep.SweepError)
    assert "runner_here_only" in str(error) and "PYTHONPATH" in str(error)
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").rglob("*.json"))


def test_a_bad_scheduler_address_fails_fast_and_names_the_fix(configs, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")  # that it gives up is tested, not when
    address = "tcp://127.0.0.1:9"
    start = time.perf_counter()
    with pytest.raises(sweep.SweepError, match=r"127\.0\.0\.1:9.*--scheduler local"):
        sweep.run_sweep(configs, root=tmp_path, progress=False, runner=fake_runner,
                        scheduler=address)
    assert time.perf_counter() - start < 10
    grid = tmp_path / "g.yaml"
    grid.write_text("runs:\n  - {method: baseline}\n")
    assert sweep.main([str(grid), "--profile", "smoke", "--scheduler", address,
                       "--results", str(tmp_path)]) == 2
    assert "127.0.0.1:9" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


def test_slurm_cluster_job_script_carries_the_options():
    pytest.importorskip("dask_jobqueue", reason="pip install 'calkit-ood[slurm]'")
    cluster = sweep.slurm_cluster(cores=2, memory="4GB", walltime="00:30:00", jobs=3,
                                  account="acct", queue="short", extra=["--gres=gpu:1"],
                                  scale=False)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for part in ("#SBATCH -t 00:30:00", "#SBATCH -A acct", "#SBATCH -p short",
                 "#SBATCH --gres=gpu:1", "export OMP_NUM_THREADS=1", "--nworkers 2",
                 "--nthreads 1"):
        assert part in script, (part, script)


def test_slurm_without_sbatch_is_refused_before_submitting(monkeypatch, tmp_path, capsys):
    pytest.importorskip("dask_jobqueue", reason="pip install 'calkit-ood[slurm]'")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(sweep.SweepError, match="sbatch is not on the PATH"):
        sweep.slurm_cluster()
    grid = tmp_path / "g.yaml"
    grid.write_text("runs:\n  - {method: baseline}\n")
    assert sweep.main([str(grid), "--profile", "smoke", "--cluster", "slurm",
                       "--results", str(tmp_path)]) == 2
    assert "sbatch" in capsys.readouterr().err
