"""The record store: atomic JSON records by run id, stale detection, and checkpoints.

Records live under ``<root>/<profile>/runs/<run_id>.json`` (root: ``$CALKIT_RESULTS`` or the
repository's ``results/``); checkpoints of methods that others start from live, git-ignored,
under ``<root>/<profile>/checkpoints/``. A record is *stale* when the code would resolve its
request to another run id today (a changed default, recipe, method entry or record format):
stale records are listed, never used, and ``calkit sweep GRID --rerun-stale`` recomputes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calkit.engine import stage_snapshot_path
from calkit.files import atomic_write, repo_root
from calkit.runs import RECORD_FORMAT, RunConfig

RESULTS_ENV = "CALKIT_RESULTS"


def results_dir(profile: str, root: str | Path | None = None) -> Path:
    """``<root>/<profile>``; root is ``$CALKIT_RESULTS`` or the repository's ``results/``."""
    if root is None:
        root = os.environ.get(RESULTS_ENV) or (
            (repo_root() or Path.home() / ".cache" / "calkit") / "results")
    return Path(root) / profile


def record_path(run_id: str, profile: str, root: str | Path | None = None) -> Path:
    """Where the record of a run id lives."""
    return results_dir(profile, root) / "runs" / f"{run_id}.json"


def checkpoint_path(run_id: str, profile: str, root: str | Path | None = None) -> Path:
    """Where the weights of a run id live (git-ignored)."""
    return results_dir(profile, root) / "checkpoints" / f"{run_id}.pt"


def snapshot_path(run_id: str, profile: str, root: str | Path | None = None) -> Path:
    """Where an unfinished run keeps its state between epochs (git-ignored, then removed)."""
    return results_dir(profile, root) / "checkpoints" / f"{run_id}.snapshot.pt"


def current_snapshot(run_id: str, profile: str, root: str | Path | None = None
                     ) -> tuple[str, Path] | None:
    """``(stage, path)`` of the snapshot an unfinished run wrote last, or ``None``.

    The stage is "" for a run that fits one network; for one that fits several in turn
    (:func:`calkit.engine.stage_snapshot_path`), it is the stage of the most recently written
    snapshot, the fit in progress (finished fits keep theirs until the run's record is written).
    """
    main = snapshot_path(run_id, profile, root)
    if main.is_file():
        return "", main
    written = []
    for path in main.parent.glob(stage_snapshot_path(main, "*").name):
        with contextlib.suppress(OSError):  # replaced or removed while we look
            written.append((path.stat().st_mtime, path))
    if not written:
        return None
    path = max(written)[1]
    return path.name[len(main.stem) + 1:-len(main.suffix)], path


@dataclass(frozen=True)
class RunFiles:
    """Every file of one run id.

    Attributes:
        record: The record (JSON, committed).
        checkpoint: The weights (git-ignored).
        snapshot: The state between epochs of an unfinished run (git-ignored, then removed).
        stored: The record as stored, or ``None`` when there is none yet.
    """

    record: Path
    checkpoint: Path
    snapshot: Path
    stored: dict | None


def run_files(run_id: str, profile: str, root: str | Path | None = None) -> RunFiles:
    """The files of a run id, and its stored record if there is one."""
    record = record_path(run_id, profile, root)
    return RunFiles(record, checkpoint_path(run_id, profile, root),
                    snapshot_path(run_id, profile, root),
                    load_record(record) if record.is_file() else None)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def write_json(payload: dict, path: Path) -> None:
    """Write ``payload`` atomically (a crash leaves the old file or none, never half a file)."""
    with atomic_write(path) as tmp, tmp.open("w") as handle:
        json.dump(payload, handle, indent=1, default=_json_default)


def write_record(record: dict, path: Path) -> dict:
    """Write a run record atomically and return it as later readers see it (JSON types)."""
    text = json.dumps(record, indent=1, default=_json_default)
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return json.loads(text)


def load_record(path: str | Path) -> dict:
    """Read one run record, naming the file if it is not valid JSON."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a valid run record ({exc}); delete it and rerun its "
                         "run (`calkit sweep GRID` recomputes missing records).") from exc


def load_records(profile: str, root: str | Path | None = None) -> list[dict]:
    """Every run record of a profile, current or stale (an empty list if there are none)."""
    folder = results_dir(profile, root) / "runs"
    return [load_record(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def current_run_id(record: dict) -> str | None:
    """The run id the code resolves the record's request to today (``None``: unresolvable)."""
    if record.get("format") != RECORD_FORMAT or "request" not in record:
        return None
    try:
        return RunConfig.from_request(record["request"]).resolve().run_id
    except (TypeError, ValueError):
        return None


def is_stale(record: dict) -> bool:
    """Whether the code would compute something else for this record's request today."""
    return current_run_id(record) != record.get("run_id")


@dataclass
class RecordSet:
    """A profile's records split into those the code stands behind and stale ones.

    Attributes:
        current: Records whose id is what the code resolves their request to today.
        stale: The others (older format, changed defaults, removed methods).
    """

    current: list[dict]
    stale: list[dict]

    def stale_table(self):
        """One row per stale record: its id, request and the id the code resolves it to."""
        import pandas as pd

        rows = [{"run_id": r.get("run_id"), "method": (r.get("request") or r.get("config") or
                                                        {}).get("method"),
                 "seed": r.get("seed"), "format": r.get("format", 1),
                 "current id": current_run_id(r) or "-"} for r in self.stale]
        return pd.DataFrame(rows, columns=["run_id", "method", "seed", "format", "current id"])


def partition_records(records: list[dict]) -> RecordSet:
    """Split records into current and stale (:func:`is_stale`)."""
    current: list[dict] = []
    stale: list[dict] = []
    for record in records:
        (stale if is_stale(record) else current).append(record)
    return RecordSet(current, stale)


def stale_records_of(config: RunConfig, root: str | Path | None = None) -> list[Path]:
    """Stored records made for the same request as ``config`` under another run id."""
    folder = results_dir(config.profile, root) / "runs"
    if not folder.is_dir():
        return []
    want = json.loads(json.dumps(config.request(), default=_json_default))
    run_id = config.run_id
    found = []
    for path in sorted(folder.glob(f"{config.method}-*.json")):
        if path.stem == run_id:
            continue
        record = load_record(path)
        if record.get("request") == want or _old_request(record) == want:
            found.append(path)
    return found


def _old_request(record: dict) -> dict | None:
    """The request of a format-1 record (its ``config`` field), in today's form."""
    old = record.get("config")
    if record.get("format") is not None or not isinstance(old, dict):
        return None
    # Format-1 runs had no protocol field; they all used the paper's random splits.
    return {**RunConfig(method=old["method"]).request(), "protocol": "paper", **old}


RECOMPUTE_RTOL = 1e-4
"""Relative tolerance within which a run recomputed on another machine matches its stored
record. A run id means "the same computation", not "the same bits on every CPU": another CPU
family or BLAS build moves float32 results in the last bits (observed: 1e-7 to 1e-6 relative
after 60 epochs), which this bound accepts."""


def metrics_difference(stored: dict, recomputed: dict) -> float | None:
    """Largest relative difference between two nested metric dicts.

    ``None`` when their structure (sets, models, metric names) differs, i.e. other code made
    one of them.
    """
    if isinstance(stored, dict) != isinstance(recomputed, dict):
        return None
    if isinstance(stored, dict):
        if set(stored) != set(recomputed):
            return None
        worst = 0.0
        for key in stored:
            diff = metrics_difference(stored[key], recomputed[key])
            if diff is None:
                return None
            worst = max(worst, diff)
        return worst
    a, b = float(stored), float(recomputed)
    if a == b or (a != a and b != b):  # equal, or both NaN
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


class RecordMismatch(RuntimeError):
    """A recomputed run's metrics have another structure than its stored record's."""


def compare_recomputed(run_id: str, stored: dict, metrics: dict, environment: dict) -> dict:
    """How a recomputed run's metrics compare with its stored record's.

    Within :data:`RECOMPUTE_RTOL` the recomputed model is the stored one up to float rounding;
    a larger difference (another machine) is warned about and reported, not fatal.

    Raises:
        RecordMismatch: The metrics have another structure (the record was made by other code).
    """
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
