"""Run one configuration end to end and store its record: the flow every entry point uses.

``run_experiment``: resolve the request -> look up the record (hit: done) -> prepare the data
-> build the model -> the registered method's run function on the engine -> evaluate -> write
the record (and a checkpoint for methods that others start from). Nothing below calls back
into the store.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.data import atomic_write, repo_root
from calkit.methods import MethodInputs
from calkit.pipeline import DataBundle, prepare_data
from calkit.runs import RECORD_FORMAT, ResolvedRun, RunConfig
from calkit.splits import SplitConfig
from calkit.store import (
    RECOMPUTE_RTOL,
    checkpoint_path,
    load_record,
    metrics_difference,
    record_path,
    snapshot_path,
    write_json,
)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads (restored afterwards)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _git_state() -> tuple[str | None, bool | None]:
    """The repository's commit and whether ``calkit/`` has uncommitted changes."""
    root = repo_root()
    if root is None:
        return None, None
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run([*git, "status", "--porcelain", "--untracked-files=no",
                                     "calkit"], capture_output=True, text=True,
                                    check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, dirty


CODE_STATE = _git_state()
"""Commit and dirty flag read when this code was imported: a long sweep worker keeps the code it
loaded even if the checkout moves on, so the record must name that commit, not today's."""


def environment_info(device: str) -> dict:
    """Hardware, package versions and the git commit of the running code, for every record."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from calkit.utils import cpu_model, run_matmul_gflops, select_device

    versions = {}
    for package in ("calkit", "torch", "numpy", "pandas", "scikit-learn", "matminer",
                    "pymatgen", "umap-learn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    commit, dirty = CODE_STATE
    resolved = select_device(device)
    return {
        "git_commit": commit,
        "git_dirty_calkit": dirty,
        "versions": {"python": platform.python_version(), **versions},
        "hardware": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(resolved),
            "gpu": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else None,
            "cpu": cpu_model(),
            # The run's own yardstick (same device and thread count): machines differ ~3x.
            "matmul_gflops": run_matmul_gflops(str(resolved), torch.get_num_threads()),
        },
    }


def _metrics_dict(table: pd.DataFrame, scale: float = 1.0) -> dict:
    """Per-set metrics, the error metrics in the target's units.

    ``loss`` stays in the units the model was trained in.
    """
    in_units = {"mae", "rmse"}
    return {name: {k: float(v) * (scale if k in in_units else 1.0) for k, v in row.items()}
            for name, row in table.iterrows()}


def _predictions(model, bundle: DataBundle, masks: dict[str, np.ndarray], names: list[str]) -> dict:
    from calkit.metrics import predict

    out = {}
    for name in names:
        if name not in masks or not masks[name].any():
            continue
        rows = np.flatnonzero(masks[name])
        scale = bundle.target_scale
        out[name] = {
            "id": bundle.frame[col.ID].to_numpy()[rows].tolist(),
            "y": _in_units(bundle.y[rows], scale).round(5).tolist(),
            "pred": _in_units(np.asarray(predict(model, bundle.X[rows])), scale).round(5).tolist(),
        }
    return out


def _in_units(values: np.ndarray, scale) -> np.ndarray:
    # The identity scale returns the float32 values untouched, so delta_e records stay as
    # they were before targets became a parameter.
    if scale.center == 0.0 and scale.scale == 1.0:
        return np.asarray(values)
    return scale.to_units(values)


def _load_models(run: ResolvedRun, path: Path, in_features: int):
    import torch

    from calkit.models import build_model

    state = torch.load(path, map_location="cpu", weights_only=True)
    models = []
    for key in ("model", "ema_model"):
        model = build_model(run.model_preset, in_features)
        model.load_state_dict(state[key])
        model.eval()
        models.append(model)
    return models


def baseline_models(config: RunConfig, bundle: DataBundle, root=None, progress: bool = True,
                    check: dict | None = None):
    """The ``(raw, ema)`` models of ``config``'s baseline, from its checkpoint.

    The checkpoint is git-ignored, so on a fresh clone the record may exist without it: the
    baseline is then retrained (deterministic for a fixed config and seed on one machine) and
    its metrics are compared with the stored record within :data:`RECOMPUTE_RTOL`. A larger
    difference (another machine) is reported, not fatal: the recomputed baseline is used, and
    ``check`` (if given) receives what the dependent run's record says about it.
    """
    base = config.baseline().resolve()
    ckpt = checkpoint_path(base.run_id, config.profile, root)
    if not ckpt.is_file():
        stored = record_path(base.run_id, config.profile, root)
        if stored.is_file():
            seconds = load_record(stored).get("wall_seconds")
            print(f"[calkit] baseline checkpoint {ckpt.name} is missing (checkpoints are not "
                  f"committed); retraining {base.run_id} now (its record took "
                  f"{seconds or '?'} s) and checking it against the stored record.",
                  file=sys.stderr, flush=True)
        rebuilt = run_experiment(config.baseline(), root=root, progress=progress, bundle=bundle,
                                 rebuild_checkpoint=True)
        if check is not None and "recomputed" in rebuilt:
            check.update(run_id=base.run_id, **rebuilt["recomputed"])
    return _load_models(base, ckpt, bundle.X.shape[1])


class RecordMismatch(RuntimeError):
    """A recomputed run's metrics have another structure than its stored record's."""


def _compare_recomputed(run_id: str, stored: dict, metrics: dict, environment: dict) -> dict:
    """How a recomputed run's metrics compare with its stored record's (module docstring)."""
    diff = metrics_difference(stored["metrics"], metrics)
    if diff is None:
        raise RecordMismatch(
            f"recomputing {run_id} gave metrics of another structure than its stored record "
            "(other sets or models): the record was made by other code. Rerun it with "
            "force=True (or `calkit sweep GRID --rerun-stale`) to replace it.")
    within = diff <= RECOMPUTE_RTOL
    if not within:
        warnings.warn(
            f"recomputing {run_id} on this machine ({environment.get('hardware', {}).get('cpu')})"
            f" moved its metrics by up to {diff:.2g} relative, more than the {RECOMPUTE_RTOL:g} "
            f"that float rounding across machines explains; the stored record (made on "
            f"{stored.get('hardware', {}).get('cpu')}) is kept and the run that needed it goes "
            "on with the recomputed model, naming it in its record.", stacklevel=3)
    return {"max_rel_difference": diff, "tolerance": RECOMPUTE_RTOL, "within_tolerance": within,
            "stored_hardware": stored.get("hardware"), "hardware": environment.get("hardware")}


def run_experiment(config: RunConfig, root: str | Path | None = None, force: bool = False,
                   progress: bool = True, bundle: DataBundle | None = None,
                   rebuild_checkpoint: bool = False) -> dict:
    """Run one configuration and write its record, or return the record if it exists.

    The record (JSON, under ``results/<profile>/runs/<run_id>.json``) holds the request, the
    resolved settings the run id covers, per-set metrics of the raw and the EMA model, the
    per-epoch history, predictions on the relation and target sets, the git commit, package
    versions, hardware and wall time. It is written atomically, so an interrupted run leaves
    no record. An IR-net or CAL-family run keeps a snapshot of its state after every epoch
    (beside the checkpoints), so running it again resumes at the epoch after the last one
    finished, with the same numbers; the record's ``resumed`` lists any such resume, and
    ``wall_seconds`` counts the last process only (the history's ``seconds`` has every epoch).

    Args:
        config: The run.
        root: Results root (default ``$CALKIT_RESULTS`` or the repository's ``results/``).
        force: Recompute even if a record exists.
        progress: Show progress bars.
        bundle: A prepared data bundle to reuse (must match the config's data set/profile).
        rebuild_checkpoint: Recompute a run whose record exists to restore its checkpoint.
            Recomputed metrics within :data:`RECOMPUTE_RTOL` of the stored ones are accepted;
            a larger difference is warned about and returned under ``recomputed`` (never
            written to the stored record); metrics of another structure (other code) raise
            :class:`RecordMismatch`.

    Returns:
        The record as a dict.
    """
    import torch

    from calkit.engine import Snapshot  # torch-heavy; imported lazily
    from calkit.metrics import evaluate_sets
    from calkit.models import build_model, parameter_count
    from calkit.utils import seed_everything

    run = config.resolve()
    path = record_path(run.run_id, config.profile, root)
    stored = load_record(path) if path.is_file() else None
    if stored is not None and not force and not rebuild_checkpoint:
        return stored
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    split_config = SplitConfig(seed=config.sets_seed)
    if bundle is None or (bundle.dataset, bundle.profile, bundle.protocol, bundle.split_config,
                          bundle.target) != (config.dataset, config.profile, config.protocol,
                                             split_config, config.target_column):
        bundle = prepare_data(config.dataset, config.profile, progress=progress,
                              protocol=config.protocol, split_config=split_config,
                              target=config.target)
    if run.identity["sets"]["source"] != bundle.sets_source:
        raise ValueError(f"run {run.run_id} is defined on {run.identity['sets']['source']} sets "
                         f"but the data bundle's sets are {bundle.sets_source}; prepare the data "
                         "with prepare_data(..., sets_source='shipped').")
    method = run.method
    snapshot = Snapshot(snapshot_path(run.run_id, config.profile, root), owner=run.run_id,
                        code=CODE_STATE[0])
    train_cfg = run.train
    train_cfg.progress = progress
    baseline_check: dict = {}
    with torch_threads(run.threads):
        model = None
        if not method.needs_baseline:
            seed_everything(config.seed)
            model = build_model(run.model_preset, bundle.X.shape[1])
        inputs = MethodInputs(
            X=bundle.X, y=bundle.y, masks=bundle.masks(), model=model, train=train_cfg,
            sal=run.sal, finetune=run.finetune,
            target_set=(run.identity["target"] or {}).get("set"), n_target=config.n_target,
            target_seed=config.target_seed,
            baseline=lambda: baseline_models(config, bundle, root, progress, baseline_check),
            settings=dict(method.settings), snapshot=snapshot)
        out = method.run(inputs)
        eval_masks = {k: np.asarray(v, bool) for k, v in dict(out.eval_masks).items()}
        models = {"raw": out.model, "ema": out.ema_model,
                  "raw_last": out.last_model or out.model,
                  "ema_last": out.last_ema_model or out.ema_model}
        metrics = {key: _metrics_dict(evaluate_sets(model, bundle.X, bundle.y, eval_masks),
                                      bundle.target_scale.scale)
                   for key, model in models.items()}
        environment = environment_info(config.device)
    recomputed = None
    if stored is not None and rebuild_checkpoint:
        recomputed = _compare_recomputed(run.run_id, stored, metrics, environment)
    if method.saves_checkpoint:
        ckpt = checkpoint_path(run.run_id, config.profile, root)
        with atomic_write(ckpt) as tmp:
            torch.save({"model": out.model.state_dict(),
                        "ema_model": out.ema_model.state_dict()}, tmp)
    if stored is not None and rebuild_checkpoint:
        snapshot.path.unlink(missing_ok=True)
        return {**stored, "recomputed": recomputed}
    pred_sets = sorted({col.RELATION, *([out.extra["target_set"]]
                                        if "target_set" in out.extra else [])})
    history = out.history
    record = {
        "format": RECORD_FORMAT,
        "run_id": run.run_id,
        "request": config.request(),
        "resolved": run.identity,
        "method": method.name,
        "n_parameters": parameter_count(out.model),
        "seed": config.seed,
        "metrics": metrics,
        "predictions": _predictions(out.ema_model, bundle, eval_masks, pred_sets),
        **out.run_info,
        **out.extra,
        **({"baseline_recomputed": baseline_check} if baseline_check else {}),
        "history": {k: list(v.values()) for k, v in json.loads(history.to_json()).items()},
        "data": {"rows": len(bundle.frame), "fit_on": bundle.fit_on,
                 "sets_source": bundle.sets_source,
                 **({} if bundle.target == col.DELTA_E else {
                     "target": bundle.target, "unit": bundle.unit,
                     "target_center": bundle.target_scale.center,
                     "target_scale": bundle.target_scale.scale})},
        **environment,
        "started_at": started_at,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(record, path)
    snapshot.path.unlink(missing_ok=True)
    return load_record(path)  # as later readers see it (JSON types: lists, not tuples)
