"""Run a grid of experiments, resumably, in several local processes.

Usage::

    calkit sweep grids/base.yaml --profile cpu --jobs 2
    calkit sweep grids/base.yaml --profile smoke --dry-run
    calkit sweep grids/base.yaml --rerun-stale

A grid file lists runs and seeds::

    name: base
    seeds: [0, 1, 2]
    runs:
      - {method: baseline}
      - {method: cal}
      - {method: targeted, target_set: relation, n_target: 256}

Each run's record is written atomically when it finishes, so an interrupted sweep (Ctrl-C,
a closed session) loses at most the runs in flight; the next call skips every run whose
record exists. Runs that start from a baseline (registry: ``needs_baseline``) are scheduled
after the others. A run whose request has a record under another id (the code now computes
something else) is *stale*: it is listed, and recomputed only with ``--rerun-stale``, which
then removes the superseded record. Every run computes with its profile's fixed thread
count, so ``--jobs`` never changes a number.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import yaml
from tqdm import tqdm

from calkit.methods import get_method
from calkit.runs import RunConfig
from calkit.store import record_path, results_dir, stale_records_of

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


def _run_one(config: RunConfig, root: str | None) -> tuple[str, float, str | None]:
    from calkit.runner import run_experiment

    start = time.perf_counter()
    try:
        run_experiment(config, root=root, progress=False)
        return config.run_id, time.perf_counter() - start, None
    except Exception:  # one failed run must not end the sweep; it is reported at the end
        return config.run_id, time.perf_counter() - start, traceback.format_exc()


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


def run_sweep(
    configs: list[RunConfig],
    jobs: int = 2,
    root: str | Path | None = None,
    progress: bool = True,
    rerun_stale: bool = False,
) -> dict[str, str]:
    """Run every config without a record; return ``run_id -> traceback`` of failed runs.

    Configs whose request has a stale record are skipped (and listed) unless ``rerun_stale``.
    """
    done, todo, stale = plan(configs, root)
    if stale and not rerun_stale:
        print(f"[sweep] {len(stale)} run(s) have only stale records (made by other code); "
              "skipped. Pass --rerun-stale to recompute them:")
        for run_id, paths in stale.items():
            print(f"  {run_id} <- {', '.join(p.stem for p in paths)}")
        todo = [c for c in todo if c.run_id not in stale]
    print(f"[sweep] {len(configs)} runs, {len(done)} already recorded, {len(todo)} to run, "
          f"{jobs} process(es)")
    failures: dict[str, str] = {}
    if not todo:
        return failures
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, smoothing=0.1)
    root_s = str(root) if root is not None else None

    def report(config: RunConfig, outcome: tuple[str, float, str | None]) -> None:
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
    if jobs == 1:
        for config in first + later:
            report(config, _run_one(config, root_s))
    else:
        # spawn, not fork: a parent that has used torch's OpenMP pool cannot fork safely.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, context) as pool:
            for batch in (first, later):
                pending = {pool.submit(_run_one, c, root_s): c for c in batch}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        report(pending.pop(future), future.result())
    bar.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``calkit sweep``."""
    parser = argparse.ArgumentParser(
        prog="calkit sweep", description="Run a resumable grid of experiments."
    )
    parser.add_argument("grid", help="YAML grid file, e.g. grids/base.yaml")
    parser.add_argument(
        "--profile", default=None, help="override every run's profile (smoke, cpu, paper)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds overriding the grid's")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--results", default=None, help="results root (default: the repository's results/)"
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
        for c in configs:
            state = "done" if c.run_id in done_ids else "stale" if c.run_id in stale else "todo"
            print(f"{state:5s}  {c.run_id}  {c}")
        return 0
    try:
        failures = run_sweep(configs, jobs=args.jobs, root=args.results,
                             rerun_stale=args.rerun_stale)
    except KeyboardInterrupt:
        print("\n[sweep] interrupted: finished runs are recorded; run the same command to resume.")
        return 130
    where = results_dir(configs[0].profile, args.results) if configs else "-"
    print(f"[sweep] records in {where}; {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
