"""Run one configuration end to end and store its record: the flow every entry point uses.

``run_experiment``: resolve the request -> look up the record (hit: done) -> prepare the data
-> build the model -> the registered method's run function on the engine -> evaluate -> write
the record (and a checkpoint for methods that others start from). Nothing below calls back
into the store.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

from calkit import columns as col
from calkit.files import atomic_write
from calkit.methods import MethodInputs
from calkit.metrics import record_metrics, record_predictions
from calkit.pipeline import DataBundle, prepare_plan
from calkit.provenance import CODE_STATE, environment_info, torch_threads
from calkit.runs import RECORD_FORMAT, ResolvedRun, RunConfig
from calkit.store import compare_recomputed, run_files, write_record


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
    its metrics are compared with the stored record within
    :data:`calkit.store.RECOMPUTE_RTOL`. A larger difference (another machine) is reported,
    not fatal: the recomputed baseline is used, and ``check`` (if given) receives what the
    dependent run's record says about it.
    """
    base = config.baseline().resolve()
    files = run_files(base.run_id, config.profile, root)
    ckpt = files.checkpoint
    if not ckpt.is_file():
        if files.stored is not None:
            seconds = files.stored.get("wall_seconds")
            print(f"[calkit] baseline checkpoint {ckpt.name} is missing (checkpoints are not "
                  f"committed); retraining {base.run_id} now (its record took "
                  f"{seconds or '?'} s) and checking it against the stored record.",
                  file=sys.stderr, flush=True)
        rebuilt = run_experiment(config.baseline(), root=root, progress=progress, bundle=bundle,
                                 rebuild_checkpoint=True)
        if check is not None and "recomputed" in rebuilt:
            check.update(run_id=base.run_id, **rebuilt["recomputed"])
    return _load_models(base, ckpt, bundle.X.shape[1])


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
        bundle: A prepared data bundle to reuse; it is used only if it carries out the
            run's own data plan (``bundle.plan == run.data``), else the data are prepared.
        rebuild_checkpoint: Recompute a run whose record exists to restore its checkpoint.
            Recomputed metrics within :data:`calkit.store.RECOMPUTE_RTOL` of the stored ones
            are accepted; a larger difference is warned about and returned under
            ``recomputed`` (never written to the stored record); metrics of another structure
            (other code) raise :class:`calkit.store.RecordMismatch`.

    Returns:
        The record as a dict.
    """
    import torch

    from calkit.engine import Snapshot  # torch-heavy; imported lazily
    from calkit.models import build_model, parameter_count
    from calkit.utils import seed_everything

    run = config.resolve()
    files = run_files(run.run_id, config.profile, root)
    stored = files.stored
    if stored is not None and not force and not rebuild_checkpoint:
        return stored
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if bundle is None or bundle.plan != run.data:
        bundle = prepare_plan(run.data, progress=progress)
    method = run.method
    masks = bundle.masks()
    snapshot = Snapshot(files.snapshot, owner=run.run_id, code=CODE_STATE[0])
    train_cfg = run.train
    train_cfg.progress = progress
    baseline_check: dict = {}
    with torch_threads(run.threads):
        model = None
        if not method.needs_baseline:
            seed_everything(config.seed)
            model = build_model(run.model_preset, bundle.X.shape[1])
        inputs = MethodInputs(
            X=bundle.X, y=bundle.y, masks=masks, model=model, train=train_cfg,
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
        metrics = record_metrics(models, bundle.X, bundle.y, eval_masks,
                                 bundle.target_scale.scale)
        pred_sets = sorted({col.RELATION, *([out.extra["target_set"]]
                                            if "target_set" in out.extra else [])})
        predictions = record_predictions(
            out.ema_model, bundle.frame[col.ID].to_numpy(), bundle.X, bundle.y, eval_masks,
            pred_sets, bundle.target_scale.center, bundle.target_scale.scale)
        environment = environment_info(config.device)
    recomputed = None
    if stored is not None and rebuild_checkpoint:
        recomputed = compare_recomputed(run.run_id, stored, metrics, environment)
    if method.saves_checkpoint:
        with atomic_write(files.checkpoint) as tmp:
            torch.save({"model": out.model.state_dict(),
                        "ema_model": out.ema_model.state_dict()}, tmp)
    if stored is not None and rebuild_checkpoint:
        snapshot.path.unlink(missing_ok=True)
        return {**stored, "recomputed": recomputed}
    history = out.history
    record = {
        "format": RECORD_FORMAT,
        "run_id": run.run_id,
        "request": run.request,
        "resolved": run.identity,
        "method": method.name,
        "n_parameters": parameter_count(out.model),
        "seed": config.seed,
        "metrics": metrics,
        "predictions": predictions,
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
    written = write_record(record, files.record)
    snapshot.path.unlink(missing_ok=True)  # only now: a kill before the write resumes the run
    return written
