"""Does early stopping cut targeted CAL short? The budget study (``grids/targeted_budget.yaml``).

Each full-budget run (targeted CAL whose patience equals the cpu budget) is paired with its
twin, the same run with the profile's patience; :func:`budget_twins` checks the pairs and
:func:`budget_histories` gives the curves behind them. The paired comparisons are
:func:`~calkit.reporting.claims.budget_table`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.methods import paper_table_subjects
from calkit.reporting.comparisons import FULL_BUDGET_TARGETED
from calkit.reporting.records import Record, as_records
from calkit.reporting.runs_diagnostics import _best_validation_epoch
from calkit.runs import RunConfig

BUDGET_HISTORY = {"val_loss": "validation, raw model", "ema_val_loss": "validation, EMA model"}
"""History columns :func:`budget_histories` follows besides the target set's raw-model loss."""
BUDGET_TARGETS = (("prior", col.PRIOR, 1024), ("relation", col.RELATION, 256))
"""``(glue key, target set, N)`` the budget grid runs, whose ratios the book's first page
quotes."""


def budget_runs(records: list[dict]) -> list[dict]:
    """The full-budget targeted CAL runs (:data:`FULL_BUDGET_TARGETED`) among ``records``."""
    return [r for r in records if Record(r).key == FULL_BUDGET_TARGETED]


def budget_targets(records: list[dict]) -> list[tuple[str, int]]:
    """The ``(target set, N)`` of the stored full-budget runs, sorted."""
    return sorted({(rec.target_set, rec.n_target) for rec in as_records(budget_runs(records))})


def _budget_pairs(records: list[dict], target: str, n_target: int
                  ) -> dict[int, tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``seed -> (targeted CAL record, the same run without early stopping)`` on one target.

    The twin is the record whose request, rebuilt as a :class:`~calkit.runs.RunConfig`, is the
    full-budget run's without its overrides, so a record of another protocol, data set or
    target draw is never paired.
    """
    def identity(rec: Record) -> RunConfig:
        return replace(RunConfig.from_request(dict(rec.request)), overrides=())

    targeted = paper_table_subjects("targeted")
    plain = {identity(rec): rec.raw for rec in as_records(records) if rec.key in targeted}
    pairs = {}
    for full in as_records(records):
        if (full.key == FULL_BUDGET_TARGETED and full.target_set == target
                and full.n_target == n_target and identity(full) in plain):
            pairs[int(full.seed)] = (plain[identity(full)], full.raw)
    return dict(sorted(pairs.items()))


def budget_histories(records: list[dict], target: str, n_target: int) -> pd.DataFrame:
    """Per epoch: the losses that decide early stopping, and the target set's, for the budget study.

    Only the raw model's loss on the evaluated target set (the target set minus its N rows) is
    kept per epoch; the EMA model's is measured once, at the end.

    Returns:
        Long frame ``seed, epoch, measure, loss, adversarial`` (epochs counted from 1) from
        each run without early stopping whose twin (the same targeted CAL run with the
        profile's patience) is stored; ``adversarial`` is false in the warm-up.
    """
    columns = {f"{target}/loss": f"{col.set_label(target)} (minus the N rows), raw model",
               **BUDGET_HISTORY}
    rows = []
    for seed, (_, full) in _budget_pairs(records, target, n_target).items():
        history = Record(full).history
        phase = history.get("phase") or []
        for key, measure in columns.items():
            for epoch, loss in enumerate(history.get(key) or []):
                rows.append({"seed": seed, "epoch": epoch + 1, "measure": measure, "loss": loss,
                             "adversarial": epoch < len(phase) and phase[epoch] != 0.0})
    return pd.DataFrame(rows, columns=["seed", "epoch", "measure", "loss", "adversarial"])


def budget_twins(records: list[dict], target: str, n_target: int) -> pd.DataFrame:
    """Per seed: where the stored targeted CAL run (the twin) ended, and what the full run did.

    The two runs differ only in their patience, so up to the twin's last epoch their
    histories should be equal; ``largest difference up to the twin's end`` checks it over
    every per-epoch loss both histories hold (0 means bit-for-bit the same run). A twin that
    early stopping did not end is the full run itself.

    Returns:
        One row per seed: the twin's epochs and whether early stopping ended it, that largest
        difference, the full run's best validation epoch (from 1) and whether it is a warm-up
        epoch, the EMA model's validation loss at its adversarial peak, at the twin's end and at
        the full run's end, each divided by its warm-up best, and the raw model's target-set
        loss: lowest in the warm-up, lowest in the adversarial epochs, at the twin's end and at
        the full run's end.
    """
    rows = []
    for seed, (stopped, full) in _budget_pairs(records, target, n_target).items():
        short, long = Record(stopped).history, Record(full).history
        n = len(short.get("val_loss") or [])
        shared = [k for k in short if k.endswith("loss") and k in long and k != "train_batch_loss"]
        gap = max((float(np.nanmax(np.abs(np.asarray(short[k][:n], dtype=float)
                                           - np.asarray(long[k][:n], dtype=float))))
                   for k in shared if len(long[k]) >= n and n), default=np.nan)
        ema = np.asarray(long["ema_val_loss"], dtype=float)
        warm = np.asarray(long["phase"], dtype=float) == 0.0
        curve = np.asarray(long[f"{target}/loss"], dtype=float)
        best, best_in_warmup = _best_validation_epoch(long) or (-1, False)  # -1: no history
        rows.append({
            "seed": seed, "twin: epochs run": n,
            "twin stopped early": bool(stopped.get("stopped_early")),
            "largest difference up to the twin's end": gap,
            "full run: best validation epoch": best + 1 if best >= 0 else np.nan,
            "in warm-up": bool(best_in_warmup),
            "EMA val / warm-up best: peak": np.nanmax(ema[~warm]) / np.nanmin(ema[warm]),
            "EMA val / warm-up best: at the twin's end": ema[n - 1] / np.nanmin(ema[warm]),
            "EMA val / warm-up best: at the end": ema[-1] / np.nanmin(ema[warm]),
            "target (raw): lowest in warm-up": np.nanmin(curve[warm]),
            "target (raw): lowest adversarial": np.nanmin(curve[~warm]),
            "target (raw): at the twin's end": curve[n - 1],
            "target (raw): at the end": curve[-1]})
    return pd.DataFrame(rows).set_index("seed") if rows else pd.DataFrame()


def budget_twin_ratios(twins: pd.DataFrame) -> list[str]:
    """The EMA validation loss over its warm-up best, as lines.

    One line per moment (peak, the twin's end, the end): the range over seeds of the EMA
    validation loss divided by its warm-up best, from :func:`budget_twins`.
    """
    return [f"EMA validation loss / its warm-up best, {when}: "
            f"{twins[f'EMA val / warm-up best: {when}'].min():.3g} to "
            f"{twins[f'EMA val / warm-up best: {when}'].max():.3g}"
            for when in ("peak", "at the twin's end", "at the end")]


BUDGET_QUESTIONS = (("es", "no early stopping vs targeted CAL"),
                    ("ft", "targeted CAL, no early stopping, vs fine-tuning"))
"""The budget table's questions, with the short keys of the book's glue names."""


def _budget_rows(budget: pd.DataFrame, target: str, n_target: int) -> dict[str, pd.Series]:
    """``question -> row`` of the budget table on one target (empty when it has none)."""
    suffix = f"{col.set_label(target)}, N={n_target}"
    return {claim.split(" on ")[0]: row for claim, row in budget.iterrows()
            if claim.endswith(suffix)} if len(budget) else {}


def budget_ratios(budget: pd.DataFrame, target: str, n_target: int
                  ) -> tuple[dict[str, dict[str, float]], int]:
    """The budget table's rows of one target as ratios of losses (1 + change), 3 figures.

    Args:
        budget: :func:`~calkit.reporting.claims.budget_table` (EMA model).
        target: The target set.
        n_target: N.

    Returns:
        ``question key -> {"estimate", "low", "high"} -> ratio`` (NaN where the table has no
        row) for :data:`BUDGET_QUESTIONS`, and the seeds of the target's first row (0: none).
    """
    rows = _budget_rows(budget, target, n_target)
    ratios = {}
    for key, question in BUDGET_QUESTIONS:
        row = rows.get(question)
        ratios[key] = {part: float(f"{1 + row[part]:.3g}") if row is not None else float("nan")
                       for part in ("estimate", "low", "high")}
    return ratios, int(next(iter(rows.values()))["n"]) if rows else 0


def budget_verdicts(budget: pd.DataFrame, target: str, n_target: int) -> dict[str, str]:
    """The verdict of each budget question on one target, as the book quotes it.

    ``lower``, ``higher`` or ``not resolved`` (Holm over the budget family), or, for a
    comparison that rests on targeted runs that did not learn their rows, ``withdrawn`` with
    the reason (:func:`~calkit.reporting.claims.withdrawal`), so that no sentence of the book
    reads a failed run as a finding about the method. "no runs yet" where the table has no row.
    """
    rows = _budget_rows(budget, target, n_target)
    out = {}
    for key, question in BUDGET_QUESTIONS:
        row = rows.get(question)
        if row is None:
            out[key] = "no runs yet"
        elif row["verdict"] == "withdrawn":
            out[key] = f"withdrawn: {row['withdrawn']}"
        else:
            out[key] = str(row["verdict"])
    return out
