"""What the runs were, where model selection landed, what they cost and where they ran.

One row per run (:func:`run_overview`), early stopping per kind of run
(:func:`early_stopping_table`), the machines behind the times (:func:`machines_summary`), and
the selections the results chapter's figures read (parity panels, own-row curves).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.methods import PAPER_TABLES, method_label, paper_table_subjects
from calkit.reporting.records import Record, as_records, find_record, run_label

OWN_ROW_RUNS = ("targeted", "targeted_noattack")
"""Run kinds whose own-row curves the results chapter shows: targeted CAL and its control
without an attack (both train on their N rows in the adversarial phase)."""


def run_overview(records: list[dict]) -> pd.DataFrame:
    """One row per run: what it was, where model selection landed, and what it cost.

    ``wall s`` is the last process's wall time; ``run s`` adds the epochs that processes
    before a resume (``resumes``) computed, so it is the run's cost.
    """
    rows = []
    for rec in as_records(records):
        rows.append({
            "run_id": rec.run_id, "method": rec.key, "seed": rec.seed,
            "target": rec.target_set, "N": rec.n_target,
            "selected epoch": rec.get("selected_epoch"), "epochs run": rec.get("epochs_run"),
            "protocol": rec.protocol,
            "EMA epoch": rec.get("ema_selected_epoch"),
            "selected in warm-up": rec.get("selected_in_warmup"),
            "EMA in warm-up": rec.get("ema_selected_in_warmup"), "diverged": rec.get("diverged"),
            "stopped early": rec.get("stopped_early"),
            "w frozen": rec.get("w_frozen"), "wall s": rec.get("wall_seconds"),
            "run s": _run_seconds(rec.raw), "resumes": len(rec.get("resumed", [])),
            "matmul GFLOP/s": rec.hardware.get("matmul_gflops", np.nan),
            "commit": (rec.get("git_commit") or "")[:8]})
    return pd.DataFrame(rows)


def records_summary(everything: list[dict], records: list[dict], paper_protocol: list[dict],
                    stale: int, results: str) -> list[str]:
    """Lines that say what a chapter reads.

    Lines that say what a chapter reads: how many records, of which protocols, how many stale
    ones are left out, the compute they summed to, their code commits and machines.
    """
    lines = [f"{len(everything)} current run records in {results} "
             f"({len(records)} clean protocol, {len(paper_protocol)} paper protocol)"]
    if stale:
        lines.append(f"{stale} stale record(s), made by other code, are not used")
    overview = run_overview(everything)
    if len(overview):
        lines.append(f"compute: {overview['wall s'].sum() / 3600:.2f} h of wall time summed over "
                     f"runs; code commit(s): {', '.join(sorted(set(overview['commit'])))}")
        lines.append(f"hardware: {machines_summary(everything)}")
    return lines


def grid_progress(stored: int, planned: int) -> str:
    """``"complete"`` once every planned run of a grid is stored, else ``"under way"``.

    The one place a page decides whether to call a study finished.

    Raises:
        ValueError: if ``planned`` is not positive (a grid with no runs is no study).
    """
    if planned <= 0:
        raise ValueError(f"a grid plans {planned} runs; a study needs at least one planned run.")
    return "complete" if stored >= planned else "under way"


def run_costs(records: list[dict]) -> pd.DataFrame:
    """Time per run kind (across resumes): runs, fastest and slowest run, median matmul rate."""
    cost = run_overview(records).groupby(["method", "target", "N"]).agg(
        runs=("run s", "size"), min_s=("run s", "min"), max_s=("run s", "max"),
        matmul_gflops=("matmul GFLOP/s", "median"))
    cost.columns = ["runs", "min s", "max s", "matmul GFLOP/s (median; NaN: not recorded)"]
    return cost


def stopped_early_runs(records: list[dict]) -> list[str]:
    """``"<run> seed <s> after <k> epochs"`` for every run that early stopping ended."""
    overview = run_overview(records)
    if not len(overview):
        return []
    early = overview[overview["stopped early"].eq(True)]  # None where not recorded
    return [f"{run_label(r['method'], _canonical(r['target']), r['N'])} seed {r['seed']} after "
            f"{int(r['epochs run'])} epochs" for _, r in early.iterrows()]


def _canonical(target: str) -> str:
    return col.resolve_set_name(target) if target else ""


def _best_validation_epoch(history: Mapping[str, Any]) -> tuple[int, bool] | None:
    """Index of a CAL-family run's best validation loss, and whether it is a warm-up epoch."""
    val, phase = history.get("val_loss"), history.get("phase")
    if not val or not phase:
        return None
    best = int(np.nanargmin(np.asarray(val, dtype=float)))
    return best, phase[best] == 0.0


def _best_in_warmup(record: dict) -> bool | None:
    """Whether a CAL-family run's best validation loss came from a warm-up epoch."""
    found = _best_validation_epoch(Record(record).history)
    return None if found is None else found[1]


def early_stopping_table(records: list[dict]) -> pd.DataFrame:
    """Per kind of run: how many runs early stopping ended, and after how many epochs.

    ``of which best in warm-up`` counts the ended runs whose best validation loss came from a
    CAL warm-up epoch, so no adversarial epoch ever beat it. Fine-tunes are left out (they
    stop on their held-out target rows, by their own rule).
    """
    overview = run_overview(records)
    if not len(overview):
        return pd.DataFrame()
    overview["best in warm-up"] = [_best_in_warmup(rec) for rec in records]
    overview = overview[~overview["method"].str.startswith("finetune")]
    rows = []
    for (method, target, n_target), group in overview.groupby(["method", "target", "N"]):
        base, _, overrides = method.partition("[")
        label = run_label(base, target, n_target) + (f" [{overrides}" if overrides else "")
        stopped = group[group["stopped early"].eq(True)]  # None: a record without the flag
        epochs = stopped["epochs run"]
        rows.append({
            "run": label, "runs": len(group), "stopped early": len(stopped),
            "epochs run when stopped": (f"{int(epochs.min())}-{int(epochs.max())}"
                                        if len(epochs) else "-"),
            "of which best in warm-up": int(stopped["best in warm-up"].eq(True).sum())})
    return pd.DataFrame(rows).set_index("run")


def early_stopping_by_profile(groups: Mapping[str, list[dict]]) -> pd.DataFrame:
    """:func:`early_stopping_table` per profile, stacked.

    :func:`early_stopping_table` of each profile that has records, stacked (``profile`` level
    first); empty when none has.
    """
    tables = {name: early_stopping_table(group) for name, group in groups.items() if group}
    return pd.concat(tables, names=["profile"]) if tables else pd.DataFrame()


def machine_summary(record: dict) -> str:
    """Where a record ran, with the yardstick its times should be read against.

    Machines that run calkit differ about 3x in speed, so every quoted time comes with the
    float32 matmul rate the run measured on its own device and thread count (records made
    before that rate was stored say so).
    """
    rate = Record(record).hardware.get("matmul_gflops")
    rate_text = ("matmul rate not recorded" if rate is None
                 else f"{rate:.1f} GFLOP/s float32 matmul")
    return _machine(record, rate_text)


def _machine(record: dict, tail: str) -> str:
    hw = Record(record).hardware
    where = hw.get("gpu") or hw.get("cpu") or hw.get("platform", "unknown machine")
    threads = hw.get("torch_threads")
    threads_text = "" if threads is None else f", {threads} torch thread{'s' * (threads != 1)}"
    cores = hw.get("cpu_count", "?")
    return f"{hw.get('device', '?')} ({where}{threads_text}, {cores} cores{tail and '; ' + tail})"


def machines_summary(records: Sequence[dict], shown: int = 3) -> str:
    """The machines a group of records ran on, and the matmul rates they measured.

    A group of runs made over several sessions mixes machines and records from before the
    rate was stored; quoting only one record's machine would hide both.
    """
    places = sorted({_machine(r, "") for r in records})
    more = f" and {len(places) - shown} more" if len(places) > shown else ""
    rates = [rec.hardware["matmul_gflops"] for rec in map(Record, records)
             if rec.hardware.get("matmul_gflops") is not None]
    if not rates:
        rate_text = "matmul rate not recorded"
    else:
        low, high = min(rates), max(rates)
        span = f"{low:.1f}" if high - low < 0.05 else f"{low:.1f}-{high:.1f}"
        rate_text = (f"{span} GFLOP/s float32 matmul, measured by {len(rates)} of "
                     f"{len(records)} runs (older records predate it)" if len(rates) < len(records)
                     else f"{span} GFLOP/s float32 matmul")
    return f"{'; '.join(places[:shown])}{more}; {rate_text}"


def _run_seconds(record: Mapping[str, Any]) -> float | None:
    """Wall time of the last process plus the epoch seconds before its last resume."""
    wall = record.get("wall_seconds")
    resumed = record.get("resumed") or [{}]
    return None if wall is None else round(wall + resumed[-1].get("seconds_before", 0.0), 1)


def shared_predictions(records: dict[str, dict | None], set_name: str) -> dict:
    """``label -> (y, pred)`` on the rows of ``set_name`` that every given record evaluated.

    Targeted runs remove their N rows from the set; restricting every model to the common
    rows makes the parity panels comparable.
    """
    present = {k: r for k, r in records.items() if r and set_name in r.get("predictions", {})}
    if not present:
        return {}
    common = set.intersection(*(set(r["predictions"][set_name]["id"]) for r in present.values()))
    panels = {}
    for label, rec in present.items():
        preds = rec["predictions"][set_name]
        keep = [i for i, rid in enumerate(preds["id"]) if rid in common]
        panels[label] = (np.asarray(preds["y"])[keep], np.asarray(preds["pred"])[keep])
    return panels


def parity_panels(records: list[dict], target: str = col.RELATION, n_target: int = 256,
                  seed: int = 0) -> dict:
    """Predicted against actual on one target set, for the parity figure.

    Predicted against actual on one target set for the IR-net and the targeted table's methods
    at one N (seed ``seed``), on the rows every one of them evaluated
    (:func:`shared_predictions`); empty when none has predictions there.
    """
    reference = PAPER_TABLES["base"].reference
    labelled = {method_label(reference): find_record(records, reference, seed=seed)}
    for method in (PAPER_TABLES["targeted"].reference, *paper_table_subjects("targeted")):
        labelled[f"{run_label(method, '', 0)}, N={n_target}"] = find_record(
            records, method, target, n_target, seed)
    return shared_predictions(labelled, target)


def own_row_records(records: list[dict], keys: Iterable[str] = OWN_ROW_RUNS,
                    min_n: int = 128) -> list[dict]:
    """The records behind the own-row curves figure.

    The records of the given run kinds (method keys) with at least ``min_n`` target rows, for
    the own-row curves figure.
    """
    wanted = set(keys)
    return [r for r in records if (rec := Record(r)).key in wanted and rec.n_target >= min_n]


def planned_runs(configs: Iterable[Any]) -> list[str]:
    """``"<run> seed <s>"`` for each planned run config (e.g. the ones a grid still misses)."""
    return [f"{run_label(c.method, _canonical(c.target_set or ''), c.n_target)} seed {c.seed}"
            for c in configs]
