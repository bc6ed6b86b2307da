"""Run a grid of experiments, resumably, in-process or on a Dask cluster.

Usage::

    calkit sweep grids/verdict.yaml --profile cpu --jobs 1            # in-process, no Dask needed
    calkit sweep grids/verdict.yaml --profile cpu --jobs 2            # a LocalCluster of 2 workers
    calkit sweep grids/verdict.yaml --scheduler local --jobs 4        # the same, explicitly
    calkit sweep grids/verdict.yaml --scheduler tcp://HOST:8786       # a running Dask cluster
    calkit sweep grids/verdict.yaml --cluster slurm --slurm-jobs 4    # workers as Slurm jobs
    calkit sweep grids/verdict.yaml --profile smoke --dry-run
    calkit sweep grids/verdict.yaml --rerun-stale

A grid file lists runs and seeds::

    name: base
    seeds: [0, 1, 2]
    runs:
      - {method: baseline}
      - {method: cal}
      - {method: targeted, target_set: relation, n_target: 256}

Each run's record is written atomically when it finishes, and an IR-net or CAL-family run keeps a
snapshot of its state after every epoch, so an interrupted sweep (Ctrl-C, a closed session, a
lost worker) loses at most the epochs in flight: the next call skips every run whose record
exists and resumes the unfinished ones at their last finished epoch, with the same numbers
(``--dry-run`` lists them as ``part``, with the epochs done and the time left). Runs that
start from a baseline (registry: ``needs_baseline``) are scheduled after the others have
finished. A run whose request has a record under another id (the code now computes
something else) is *stale*: it is listed, and recomputed only with ``--rerun-stale``, which
then removes the superseded record. Every run computes with its profile's fixed thread count,
so the number of workers never changes a number.

One engine runs the grid: with ``--jobs 1`` (and no scheduler) the runs execute one after the
other in this process; otherwise every run is a Dask task (``dask`` and ``distributed``, the
``calkit-ood[dask]`` extra; ``dask-jobqueue`` for Slurm: ``calkit-ood[slurm]``). Workers write
records straight into the results folder, so a cluster's workers must share that folder (and have
calkit and the data installed). A task whose worker dies is run again on another worker; a
task that finds its record already written returns at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import shutil
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from calkit.engine import SnapshotProgress, read_snapshot_progress
from calkit.methods import get_method
from calkit.profiles import PROFILES, check_profile
from calkit.runs import RunConfig
from calkit.store import (
    current_snapshot,
    load_record,
    record_path,
    results_dir,
    stale_records_of,
)

DASK_HINT = ("pip install 'calkit-ood[dask]'  (Slurm: pip install 'calkit-ood[slurm]'), or run "
             "in-process with --jobs 1")
CONNECT_TIMEOUT = "5s"
TASK_RETRIES = 2

Outcome = tuple[str, float, "str | None"]
"""``(run_id, seconds, traceback or None)`` of one run."""
Runner = Callable[[RunConfig, "str | None"], Outcome]
"""Runs one config into the results root; the default is :func:`_run_one`."""


class SweepError(RuntimeError):
    """The sweep could not start (no Dask, an unreachable scheduler, bad cluster options)."""


RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def load_grid(
    path: str | Path, profile: str | None = None, seeds: list[int] | None = None
) -> list[RunConfig]:
    """Expand a grid file into validated run configs.

    Args:
        path: YAML file with ``runs`` (list of RunConfig fields) and optional ``seeds``.
        profile: Override of every run's profile.
        seeds: Override of the grid's seeds.

    Returns:
        The run configs in file order, runs that need a baseline last.

    Raises:
        ValueError: For unknown fields or values, naming the entry and the valid choices.
    """
    with open(path) as handle:
        grid = yaml.safe_load(handle) or {}
    if "runs" not in grid:
        raise ValueError(f"{path}: a grid needs a 'runs' list")
    seeds = seeds if seeds is not None else list(grid.get("seeds", [0]))
    configs = []
    for i, entry in enumerate(grid["runs"]):
        unknown = set(entry) - RUN_FIELDS
        if unknown:
            raise ValueError(
                f"{path}: run {i} has unknown field(s) {sorted(unknown)}; "
                f"valid: {sorted(RUN_FIELDS)}"
            )
        entry = dict(entry)
        if "overrides" in entry:
            entry["overrides"] = tuple(sorted((k, v) for k, v in dict(entry["overrides"]).items()))
        for seed in seeds:
            fields = {**entry, "seed": seed}
            if profile is not None:
                fields["profile"] = profile
            try:
                configs.append(RunConfig(**fields).validate())
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: run {i} ({entry}): {exc}") from exc
    return sorted(configs, key=lambda c: get_method(c.method).needs_baseline)


def _run_one(config: RunConfig, root: str | None) -> Outcome:
    """Run one config with :func:`calkit.runner.run_experiment`; errors become the outcome."""
    from calkit.runner import run_experiment

    start = time.perf_counter()
    try:
        run_experiment(config, root=root, progress=False)
        return config.run_id, time.perf_counter() - start, None
    except Exception:  # one failed run must not end the sweep; it is reported at the end
        return config.run_id, time.perf_counter() - start, traceback.format_exc()


def _task(runner: Runner, config: RunConfig, root: str | None) -> Outcome:
    """One Dask task: fix torch's threads, skip a run already recorded, else run it.

    A task is run again when its worker is lost; if the lost worker had already written the
    record (atomically), the retry finds it and returns without recomputing.
    """
    try:
        import torch

        torch.set_num_threads(check_profile(config.profile).threads)
    except ImportError:  # pragma: no cover - calkit needs torch; a test runner may not
        pass
    if record_path(config.run_id, config.profile, root).is_file():
        return config.run_id, 0.0, None
    return runner(config, root)


def plan(configs: list[RunConfig], root: str | Path | None = None
         ) -> tuple[list[RunConfig], list[RunConfig], dict[str, list[Path]]]:
    """Split configs into recorded, to-run and stale (``run_id -> superseded records``)."""
    done, todo, stale = [], [], {}
    for config in configs:
        if record_path(config.run_id, config.profile, root).is_file():
            done.append(config)
            continue
        todo.append(config)
        old = stale_records_of(config, root)
        if old:
            stale[config.run_id] = old
    return done, todo, stale


@dataclasses.dataclass(frozen=True)
class EntryCost:
    """One grid entry (its runs differ only in the seed): runs recorded and left, and wall times.

    The wall times are the recorded runs' ``wall_seconds``: a run's last process only, so a
    resumed run counts less than it cost. An entry with no recorded run of its own is timed by
    the entry it varies (``paced_by``: the same run without its overrides, e.g. a no-attack
    control by the method it controls), when the grid has one with recorded runs.
    """

    entry: RunConfig
    done: int
    left: int
    walls: tuple[float, ...]
    paced_by: EntryCost | None = None

    @property
    def median_seconds(self) -> float | None:
        """Median wall time of the recorded runs (or of ``paced_by``'s); None when none."""
        if self.walls:
            return statistics.median(self.walls)
        return None if self.paced_by is None else self.paced_by.median_seconds

    @property
    def hours_left(self) -> float | None:
        """CPU-hours left at the median wall time (None when there is nothing to time)."""
        median = self.median_seconds
        return None if median is None else self.left * median / 3600


def cost_plan(configs: list[RunConfig], root: str | Path | None = None) -> list[EntryCost]:
    """The grid's entries in order, each with its runs recorded and left and their wall times."""
    recorded: dict[RunConfig, list[float | None]] = {}
    left: dict[RunConfig, int] = {}
    for config in configs:
        key = dataclasses.replace(config, seed=0, device="auto")
        recorded.setdefault(key, [])
        left.setdefault(key, 0)
        path = record_path(config.run_id, config.profile, root)
        if path.is_file():
            recorded[key].append(load_record(path).get("wall_seconds"))
        else:
            left[key] += 1
    entries = {key: EntryCost(key, len(walls), left[key],
                              tuple(float(w) for w in walls if w is not None))
               for key, walls in recorded.items()}
    for key, entry in entries.items():
        varied = entries.get(dataclasses.replace(key, overrides=()))
        if not entry.walls and key.overrides and varied is not None and varied.walls:
            entries[key] = dataclasses.replace(entry, paced_by=varied)
    return list(entries.values())


def entry_label(entry: RunConfig) -> str:
    """A grid entry in a few words: method, overrides, target, profile and any size override."""
    text = entry.method + "".join(f" {k}={v}" for k, v in entry.overrides)
    if entry.target_set:
        text += f" -> {entry.target_set} N={entry.n_target}"
    extras = [entry.profile, entry.dataset]
    if entry.model_preset:
        extras.append(entry.model_preset)
    if entry.epochs:
        extras.append(f"{entry.epochs} epochs")
    return f"{text} ({', '.join(extras)})"


def describe_cost(entries: list[EntryCost]) -> list[str]:
    """The lines of ``--dry-run``'s plan: one per entry, then the CPU-hours left in all.

    An entry with no recorded run is timed by the entry it varies, and says so; one with
    neither has nothing to time, and the total says how many runs those are.
    """
    lines = ["plan (CPU time at the median wall time of each entry's recorded runs, their last "
             "process):"]
    for e in entries:
        median = e.median_seconds
        if median is None:
            cost = "no recorded run to time"
        else:
            cost = f"median {_duration(median)} a run, about {e.hours_left:.1f} CPU-h left"
            if not e.walls and e.paced_by is not None:
                cost = (f"no recorded run; at the pace of {entry_label(e.paced_by.entry)}, "
                        + cost.removeprefix("median "))
        lines.append(f"  {entry_label(e.entry)}: {e.done} done, {e.left} left; {cost}")
    timed = sum(e.hours_left or 0.0 for e in entries)
    paced = sum(e.hours_left or 0.0 for e in entries if not e.walls)
    untimed = sum(e.left for e in entries if e.median_seconds is None)
    total = sum(e.done + e.left for e in entries)
    lines.append(f"  {sum(e.done for e in entries)} of {total} runs recorded; about {timed:.1f} "
                 "CPU-h left in the timed entries"
                 + (f" ({paced:.1f} of them at the pace of the entry they vary)" if paced else "")
                 + (f", and {untimed} runs of entries with no recorded run" if untimed else ""))
    return lines


PROGRESS_POLL_SECONDS = 60.0
"""How often a running sweep reads its unfinished runs' snapshots for the progress bar."""


def _duration(seconds: float) -> str:
    return (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
            if seconds < 7200 else f"{seconds / 3600:.1f} h")


def describe_progress(progress: SnapshotProgress, total_epochs: int,
                      patience: int | None = None) -> str:
    """One line on an unfinished run: epochs done, time spent, and time left at the recent pace.

    The time left counts every planned epoch (early stopping can only shorten a run) at the
    last epochs' pace, which is the adversarial pace once a CAL run is past its warm-up. With
    ``patience``, the line also says when early stopping ends the run if validation does not
    improve.
    """
    text = (f"epoch {progress.epochs_run} of {total_epochs} done, "
            f"{_duration(progress.seconds)} of epochs so far")
    left = max(total_epochs - progress.epochs_run, 0)
    stop_at = progress.epochs_run + (patience - progress.bad_epochs) if patience else None
    if left and stop_at is not None and stop_at <= progress.epochs_run:
        return (text + f"; early stopping has ended it ({progress.bad_epochs} epochs without a "
                "new best validation loss): only its final evaluation is left")
    if left and stop_at is not None and stop_at < total_epochs:
        text += (f"; it stops after epoch {stop_at} unless the validation loss improves "
                 f"(patience {patience}, {progress.bad_epochs} epochs without a new best)")
    if left and progress.warming_up:
        text += "; still in the CAL warm-up, whose epochs cost far less than the adversarial ones"
    elif left and progress.recent_epoch_seconds > 0:
        text += (f"; up to about {_duration(left * progress.recent_epoch_seconds)} left at the "
                 "last epochs' pace")
    return text


@functools.cache
def _epochs_and_patience(config: RunConfig) -> tuple[int, int]:
    """A run's planned epochs and patience, resolved once (the watcher asks every minute)."""
    train = config.resolve().train
    return train.epochs, train.patience


def snapshot_progress(configs: list[RunConfig], root: str | Path | None = None
                      ) -> dict[str, tuple[str, SnapshotProgress, int, int]]:
    """``run_id -> (stage, progress, planned epochs, patience)`` of every unrecorded run's snapshot.

    ``stage`` is "" for a run that fits one network, else the fit in progress (e.g.
    ``candidate1`` of ``targeted_select``, :func:`calkit.store.current_snapshot`). The planned
    epochs and patience are the fit's own, as its snapshot keeps them (a refit runs exactly the
    epochs its search chose); a snapshot written before snapshots kept them falls back to the
    run's, an upper bound for such a refit.
    """
    out = {}
    for config in configs:
        if record_path(config.run_id, config.profile, root).is_file():
            continue
        found = current_snapshot(config.run_id, config.profile, root)
        progress = read_snapshot_progress(found[1]) if found else None
        if found and progress is not None:
            epochs, patience = _epochs_and_patience(config)
            out[config.run_id] = (found[0], progress,
                                  progress.planned_epochs or epochs, progress.patience or patience)
    return out


def progress_label(run_id: str, stage: str) -> str:
    """``run_id``, or ``run_id:stage`` for one fit of a run that fits several."""
    return f"{run_id}:{stage}" if stage else run_id


@contextlib.contextmanager
def _progress_postfix(bar: tqdm, configs: list[RunConfig], root: str | Path | None,
                      every: float) -> Iterator[None]:
    """Show each unfinished run's epoch count on ``bar`` while the block runs.

    A run can take hours, and the bar only counts whole runs; the workers' snapshots (written
    after every epoch to the shared results folder) tell how far each one is.
    """
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every):
            shown = snapshot_progress(configs, root)
            bar.set_postfix_str("; ".join(f"{progress_label(run_id, stage)} {p.epochs_run}/{total}"
                                          for run_id, (stage, p, total, _) in shown.items()))

    thread = threading.Thread(target=watch, name="calkit-sweep-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise SweepError(f"running a sweep on Dask needs dask and distributed ({exc}). Install "
                         f"them: {DASK_HINT}.") from exc
    return distributed


def slurm_cluster(cores: int = 4, memory: str = "16GB", walltime: str = "04:00:00",
                  jobs: int = 1, account: str | None = None, queue: str | None = None,
                  extra: list[str] | None = None, scale: bool = True) -> Any:
    """A ``dask_jobqueue.SLURMCluster``: ``jobs`` Slurm jobs of ``cores`` one-thread workers.

    Args:
        cores: Cores per Slurm job; each job runs that many worker processes of one thread.
        memory: Memory per Slurm job (shared by its workers), e.g. ``"16GB"``.
        walltime: Time limit per job, ``HH:MM:SS``; a run still going when its job ends is
            lost and run again on another worker (set it above the longest run).
        jobs: Slurm jobs to submit.
        account: ``--account`` of the jobs, if the site needs one.
        queue: Slurm partition (``--partition``).
        extra: More ``#SBATCH`` directives, e.g. ``["--gres=gpu:1"]``.
        scale: Submit the jobs now (``False``: build the cluster only, e.g. to inspect
            ``cluster.job_script()``).

    Raises:
        SweepError: If dask-jobqueue is not installed, or ``sbatch`` is not on the ``PATH``
            (with ``scale``: the jobs could never start and the sweep would wait for them).
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise SweepError(f"--cluster slurm needs dask-jobqueue ({exc}). Install it: "
                         "pip install 'calkit-ood[slurm]'.") from exc
    if scale and shutil.which("sbatch") is None:
        raise SweepError("--cluster slurm submits Slurm jobs, but sbatch is not on the PATH: run "
                         "the sweep on a Slurm login node (or use --scheduler).")
    cluster = SLURMCluster(cores=cores, processes=cores, memory=memory, walltime=walltime,
                           account=account, queue=queue,
                           job_extra_directives=list(extra or []),
                           # the worker processes read OMP_NUM_THREADS when torch loads
                           job_script_prologue=["export OMP_NUM_THREADS=1"])
    if scale:
        cluster.scale(jobs=jobs)
    return cluster


def check_workers_unpickle(client: Any, runner: Runner, config: RunConfig) -> None:
    """Fail unless every connected worker can unpickle a sweep task (its function and arguments).

    A worker that cannot unpickle a task (its calkit does not import, or the runner's module is
    not on its path) dies on it (distributed 2026.8; only its own log names the missing module),
    and a sweep left without workers waits forever. Here each worker unpickles the same payload
    through ``pickle.loads``, which every Python imports, so the check is answered either way.
    Workers that join later are not checked: one from another environment dies on its first
    task, which then waits for another worker.

    Raises:
        SweepError: With the worker's error and the fix.
    """
    import pickle

    import cloudpickle  # a dependency of distributed, which serialises tasks with it

    payload = cloudpickle.dumps((_task, runner, config))
    try:
        client.run(pickle.loads, payload)
    except Exception as exc:  # whatever unpickling raised on the worker
        raise SweepError(
            f"a Dask worker cannot unpickle a sweep task ({type(exc).__name__}: {exc}). The "
            "workers need the same environment as this process: install calkit there, or give "
            "them the same PYTHONPATH, and check that `python -c 'import calkit.sweep'` and the "
            f"runner's module ({runner.__module__}) import on a worker.") from exc


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, jobs: int = 2,
                cluster: Any = None) -> Iterator[Any]:
    """A ``distributed.Client`` for a sweep, closed (with any cluster it started) on exit.

    Args:
        scheduler: ``"local"`` or ``None`` (a ``LocalCluster`` of ``jobs`` one-thread worker
            processes) or a scheduler address such as ``tcp://host:8786``.
        jobs: Workers of the local cluster.
        cluster: A cluster object (e.g. :func:`slurm_cluster`); overrides ``scheduler``.

    Raises:
        SweepError: If Dask is missing or the scheduler does not answer within 5 s.
    """
    distributed = _import_distributed()
    if cluster is not None:
        with distributed.Client(cluster) as client:
            yield client
        return
    if scheduler in (None, "local"):
        if jobs < 1:
            raise SweepError(f"--jobs must be >= 1, got {jobs}")
        with distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as local, \
                distributed.Client(local) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(
            f"no Dask scheduler answered at {scheduler!r} within {CONNECT_TIMEOUT} ({exc}). "
            "Start one there (`dask scheduler`, then `dask worker ADDRESS` on each machine), "
            "check the address and port, or use --scheduler local.") from exc
    with client:
        yield client


def run_sweep(
    configs: list[RunConfig],
    jobs: int = 2,
    root: str | Path | None = None,
    progress: bool = True,
    rerun_stale: bool = False,
    scheduler: str | None = None,
    cluster: Any = None,
    runner: Runner | None = None,
) -> dict[str, str]:
    """Run every config without a record; return ``run_id -> traceback`` of failed runs.

    Configs whose request has a stale record are skipped (and listed) unless ``rerun_stale``.

    Args:
        configs: The runs, e.g. from :func:`load_grid`.
        jobs: ``1`` with no ``scheduler``/``cluster``: one after the other in this process
            (no Dask needed); otherwise the worker count of a local Dask cluster.
        root: Results root (see :func:`calkit.store.results_dir`).
        progress: Show a progress bar.
        rerun_stale: Recompute runs whose only records are stale, then delete those records.
        scheduler: ``"local"`` or a Dask scheduler address (``tcp://host:8786``).
        cluster: A Dask cluster object (e.g. :func:`slurm_cluster`).
        runner: What runs one config (default :func:`_run_one`, i.e. ``run_experiment``);
            a picklable top-level function for Dask.

    Raises:
        SweepError: If Dask is needed but missing, the scheduler cannot be reached, or a
            worker cannot unpickle a task.
    """
    runner = runner or _run_one
    use_dask = scheduler is not None or cluster is not None or jobs != 1
    if use_dask:
        _import_distributed()  # fail before any planning output
    done, todo, stale = plan(configs, root)
    if stale and not rerun_stale:
        print(f"[sweep] {len(stale)} run(s) have only stale records (made by other code); "
              "skipped. Pass --rerun-stale to recompute them:")
        for run_id, paths in stale.items():
            print(f"  {run_id} <- {', '.join(p.stem for p in paths)}")
        todo = [c for c in todo if c.run_id not in stale]
    where = ("in this process" if not use_dask else f"Dask scheduler {scheduler}"
             if scheduler not in (None, "local") else "a Dask cluster" if cluster is not None
             else f"a local Dask cluster of {jobs} worker(s)")
    print(f"[sweep] {len(configs)} runs, {len(done)} already recorded, {len(todo)} to run, "
          f"{where}")
    failures: dict[str, str] = {}
    if not todo:
        return failures
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, smoothing=0.1)
    root_s = str(root) if root is not None else None

    def report(config: RunConfig, outcome: Outcome) -> None:
        run_id, seconds, error = outcome
        if error:
            failures[run_id] = error
            tqdm.write(f"[sweep] FAILED {run_id} ({config}):\n{error}")
        else:
            tqdm.write(f"[sweep] done {run_id} seed={config.seed} in {seconds:.0f} s")
            for old in stale.get(run_id, []):
                old.unlink(missing_ok=True)
                tqdm.write(f"[sweep] removed superseded record {old.name}")
        bar.update(1)

    first = [c for c in todo if not get_method(c.method).needs_baseline]
    later = [c for c in todo if get_method(c.method).needs_baseline]
    watching = (_progress_postfix(bar, todo, root, PROGRESS_POLL_SECONDS) if progress
                else contextlib.nullcontext())
    try:
        with watching:
            if not use_dask:
                for config in first + later:
                    report(config, runner(config, root_s))
            else:
                distributed = _import_distributed()
                with dask_client(scheduler, jobs, cluster) as client:
                    if not client.scheduler_info().get("workers"):
                        print("[sweep] the Dask cluster has no workers yet; the runs wait for them")
                    check_workers_unpickle(client, runner, todo[0])
                    for batch in (first, later):  # the second phase starts from the first's records
                        futures = {client.submit(_task, runner, c, root_s, pure=False,
                                                 retries=TASK_RETRIES): c for c in batch}
                        for future in distributed.as_completed(futures):
                            config = futures[future]
                            try:
                                outcome = future.result()
                            except Exception:  # lost more often than allowed, or not unpickled
                                outcome = (config.run_id, 0.0, traceback.format_exc())
                            report(config, outcome)
    finally:
        bar.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``calkit sweep``."""
    parser = argparse.ArgumentParser(
        prog="calkit sweep", description="Run a resumable grid of experiments."
    )
    parser.add_argument("grid", help="YAML grid file, e.g. grids/verdict.yaml")
    parser.add_argument(
        "--profile", default=None,
        help=f"override every run's profile ({', '.join(PROFILES)})"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds overriding the grid's")
    parser.add_argument("--jobs", type=int, default=2,
                        help="1: run in this process, one run after the other (no Dask "
                        "needed); N > 1: a local Dask cluster of N one-thread worker processes "
                        "(default 2)")
    dask_opts = parser.add_argument_group(
        "Dask", "run on Dask (pip install 'calkit-ood[dask]'; Slurm: 'calkit-ood[slurm]'). Workers "
        "write records into the results folder, so it must be shared with them.")
    dask_opts.add_argument("--scheduler", default=None, metavar="local|tcp://HOST:PORT",
                           help="'local': a LocalCluster of --jobs workers; an address: a "
                           "running Dask scheduler (`dask scheduler` + `dask worker ADDRESS`)")
    dask_opts.add_argument("--cluster", choices=["slurm"], default=None,
                           help="start the workers as Slurm jobs (dask-jobqueue)")
    dask_opts.add_argument("--slurm-jobs", type=int, default=1, help="Slurm jobs (default 1)")
    dask_opts.add_argument("--slurm-cores", type=int, default=4,
                           help="cores per job = one-thread workers per job (default 4)")
    dask_opts.add_argument("--slurm-memory", default="16GB", help="memory per job (default 16GB)")
    dask_opts.add_argument("--slurm-walltime", default="04:00:00",
                           help="time limit per job, above the longest run (default 04:00:00)")
    dask_opts.add_argument("--slurm-account", default=None, help="Slurm --account")
    dask_opts.add_argument("--slurm-queue", default=None, help="Slurm partition")
    dask_opts.add_argument("--slurm-extra", action="append", default=None, metavar="DIRECTIVE",
                           help="extra #SBATCH directive, repeatable; write it with = "
                           "(--slurm-extra=--gres=gpu:1)")
    parser.add_argument(
        "--results", default=None,
        help="results root, where records and snapshots go (default: $CALKIT_RESULTS, else the "
             "repository's results/)"
    )
    parser.add_argument("--rerun-stale", action="store_true",
                        help="recompute runs whose only records are stale, then delete those")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    try:
        configs = load_grid(args.grid, args.profile, seeds)
    except (OSError, ValueError) as exc:
        print(f"calkit sweep: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        done, _, stale = plan(configs, args.results)
        done_ids = {c.run_id for c in done}
        partial = snapshot_progress(configs, args.results)
        for c in configs:
            state = "done" if c.run_id in done_ids else "stale" if c.run_id in stale else "todo"
            if state == "todo" and c.run_id in partial:
                state = "part"  # an interrupted run: it resumes from its snapshot
            print(f"{state:5s}  {c.run_id}  {c}")
            if c.run_id in partial:
                stage, progress, total_epochs, patience = partial[c.run_id]
                line = describe_progress(progress, total_epochs, patience)
                print(f"       {stage + ': ' if stage else ''}{line}")
        print("\n".join(describe_cost(cost_plan(configs, args.results))))
        return 0
    if args.cluster and args.scheduler:
        print("calkit sweep: give --scheduler or --cluster, not both", file=sys.stderr)
        return 2
    try:
        cluster = None
        if args.cluster == "slurm":
            cluster = slurm_cluster(args.slurm_cores, args.slurm_memory, args.slurm_walltime,
                                    args.slurm_jobs, args.slurm_account, args.slurm_queue,
                                    args.slurm_extra)
        with cluster if cluster is not None else contextlib.nullcontext():
            failures = run_sweep(configs, jobs=args.jobs, root=args.results,
                                 rerun_stale=args.rerun_stale, scheduler=args.scheduler,
                                 cluster=cluster)
    except SweepError as exc:
        print(f"calkit sweep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n[sweep] interrupted: finished runs are recorded and unfinished ones kept a "
              "snapshot of their last epoch; run the same command to resume.")
        return 130
    where = results_dir(configs[0].profile, args.results) if configs else "-"
    print(f"[sweep] records in {where}; {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
