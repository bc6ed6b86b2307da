"""Run records as typed rows: an accessor for one record, and records -> long frames.

A stored record is a JSON dict (:mod:`calkit.store`); :class:`Record` reads its parts by name
(``Record(rec).seed``, ``.target_set``, ``.metrics``) so that the reporting modules never spell
out ``rec["request"][...]``. :func:`metrics_frame` and :func:`seed_summary` turn a group of
records into the long and summarised frames every table starts from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.columns import Protocol
from calkit.diagnostics import method_key
from calkit.methods import method_label
from calkit.runs import RunConfig

Which = Literal["ema", "raw", "ema_last", "raw_last"]
"""Which model a table reads: the EMA or raw model, at the selected epoch or the last one."""
Metric = Literal["loss", "mae", "rmse", "r2"]
"""A metric stored per set in every record."""

VALIDATION = "validation"
"""Pseudo-set name: the mean of the five random splits (the paper's "validation")."""
DEFAULT_SETS_SEED: int = RunConfig().sets_seed
DEFAULT_TARGET_SEED: int = RunConfig().target_seed


@dataclass(frozen=True)
class RunKey:
    """A kind of run that seeds are pooled over: method key, target set and N.

    Attributes:
        method: The method key (``cal``, ``targeted[patience=60]``).
        target: The target set ("" for untargeted runs).
        n: The number of target rows (0 for untargeted runs).
    """

    method: str
    target: str = ""
    n: int = 0

    @property
    def frame_key(self) -> str:
        """The key :func:`calkit.reporting.comparisons.pair` matches rows by."""
        return f"{self.method}@{self.target}:{self.n}"


@dataclass(frozen=True)
class Record:
    """Typed read access to one stored run record (the dict stays as it is).

    Attributes:
        raw: The record as stored.
    """

    raw: Mapping[str, Any]

    @property
    def request(self) -> Mapping[str, Any]:
        """The run's request (method, seed, target, protocol, overrides, ...)."""
        return self.raw["request"]

    @property
    def resolved(self) -> Mapping[str, Any]:
        """The resolved run settings (empty for records without them)."""
        return self.raw.get("resolved") or {}

    @property
    def run_id(self) -> str:
        """The run's identity."""
        return self.raw["run_id"]

    @property
    def method(self) -> str:
        """The registered method's name, without overrides."""
        return self.request["method"]

    @property
    def key(self) -> str:
        """The method key of the records, e.g. ``targeted[patience=60]``.

        The method key with overrides, e.g. ``targeted[supervised_on_all=False]``.
        """
        return method_key(dict(self.request))

    @property
    def seed(self) -> int:
        """The training seed."""
        return self.request["seed"]

    @property
    def target_set(self) -> str:
        """The target set, "" for untargeted runs."""
        return self.request.get("target_set") or ""

    @property
    def n_target(self) -> int:
        """The number of target rows, 0 for untargeted runs."""
        return int(self.request.get("n_target") or 0)

    @property
    def run_key(self) -> RunKey:
        """The kind of run: method key, target set and N."""
        return RunKey(self.key, self.target_set, self.n_target)

    @property
    def has_overrides(self) -> bool:
        """Whether the run changed its method's config (a variant)."""
        return bool(self.request.get("overrides"))

    @property
    def dataset(self) -> str:
        """The data set (``mp2019`` for records made before it was stored)."""
        return self.request.get("dataset", "mp2019")

    @property
    def protocol(self) -> str:
        """The set construction protocol (``paper`` for old records)."""
        return self.request.get("protocol", "paper")

    @property
    def model_preset(self) -> str | None:
        """The model preset the request chose over its profile's (``None``: the profile's)."""
        return self.request.get("model_preset")

    @property
    def epochs(self) -> int | None:
        """The epoch budget the request chose over its profile's (``None``: the profile's)."""
        return self.request.get("epochs")

    @property
    def sets_seed(self) -> int:
        """The seed of the OOD set construction."""
        return self.request.get("sets_seed", DEFAULT_SETS_SEED)

    @property
    def target_seed(self) -> int:
        """The seed of the draw of the N target rows."""
        return self.request.get("target_seed", DEFAULT_TARGET_SEED)

    @property
    def target_column(self) -> str | None:
        """The property the run predicts when it is not the data set's default."""
        return self.request.get("target")

    @property
    def metrics(self) -> Mapping[str, Mapping[str, Mapping[str, float]]]:
        """``model -> set -> metric -> value`` (models: :data:`Which`)."""
        return self.raw["metrics"]

    @property
    def history(self) -> Mapping[str, list]:
        """Per-epoch history columns (empty for methods without epochs)."""
        return self.raw.get("history") or {}

    @property
    def hardware(self) -> Mapping[str, Any]:
        """Where the run ran (device, threads, measured matmul rate)."""
        return self.raw.get("hardware", {})

    def get(self, name: str, default: Any = None) -> Any:
        """Another top-level field of the record (``selected_epoch``, ``stopped_early``...)."""
        return self.raw.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self.raw


def as_records(records: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Typed accessors of a group of records, in order."""
    return [Record(r) for r in records]


def run_label(method: str, target: str, n_target: int) -> str:
    """Readable name of a run kind: ``"CAL"``, or ``"fine-tune -> relation (piezo), N=256"``."""
    label = method_label(method)
    return label + (f" -> {col.set_label(target)}, N={n_target}" if target else "")


# ------------------------------------------------------------------ selecting records
def select_records(records: list[dict], protocol: Protocol = "clean",
                   sets_seed: int = DEFAULT_SETS_SEED, target_seed: int = DEFAULT_TARGET_SEED,
                   dataset: str = "mp2019", model_preset: str | None = None,
                   epochs: int | None = None) -> list[dict]:
    """The records of one data set, protocol, set and target draw, network and epoch budget.

    Tables pool seeds of the same method; records of other data sets, protocols, set and
    target draws, model presets (e.g. the paper's network under the ``authors`` profile,
    ``grids/authors_paper.yaml``) or epoch budgets (``grids/authors_budget_probe.yaml``) are
    other experiments and are never pooled with them.
    """
    return [r for r, rec in zip(records, as_records(records), strict=True)
            if rec.dataset == dataset and rec.target_column is None
            and rec.protocol == protocol and rec.sets_seed == sets_seed
            and rec.target_seed == target_seed and rec.model_preset == model_preset
            and rec.epochs == epochs]


def records_of_runs(records: list[dict], run_ids: Iterable[str]) -> list[dict]:
    """The records whose run ids are given (e.g. a grid's), in the order of ``records``."""
    wanted = set(run_ids)
    return [r for r in records if Record(r).run_id in wanted]


def records_of_methods(records: list[dict], methods: Iterable[str],
                       seeds: Iterable[int] | None = None) -> list[dict]:
    """The records of the given methods without config overrides, optionally of some seeds."""
    names, kept = set(methods), None if seeds is None else set(seeds)
    return [r for r in records if (rec := Record(r)).method in names and not rec.has_overrides
            and (kept is None or rec.seed in kept)]


def records_of_seeds(records: list[dict], seeds: Iterable[int] | None) -> list[dict]:
    """The records of the given training seeds (all records for ``None``)."""
    kept = None if seeds is None else set(seeds)
    return [r for r in records if kept is None or Record(r).seed in kept]


def find_record(records: list[dict], method: str, target_set: str | None = None,
                n_target: int = 0, seed: int = 0) -> dict | None:
    """The record of one run without overrides, or ``None``."""
    for r in records:
        rec = Record(r)
        if (rec.method == method and not rec.has_overrides and rec.seed == seed
                and rec.target_set == (target_set or "") and rec.n_target == n_target):
            return r
    return None


def targeted_pairs(records: list[dict]) -> list[tuple[str, int]]:
    """The ``(target set, N)`` combinations with runs of the paper's targeted table."""
    from calkit.methods import paper_table_methods

    methods = paper_table_methods("targeted")
    found = {(rec.target_set, rec.n_target) for rec in as_records(records)
             if rec.method in methods and not rec.has_overrides}
    return sorted(found)


def ood_sets_of(records: list[dict]) -> list[str]:
    """The OOD sets evaluated in a group of records, in the order of their first record."""
    skip = {col.TRAIN, *col.RANDOM_SPLITS, *col.CLEAN_SPLITS}
    names: list[str] = []
    for rec in as_records(records):
        for name in rec.metrics["ema"]:
            if name not in skip and not name.endswith("_target") and name not in names:
                names.append(name)
    return names


# ------------------------------------------------------------------ records -> long frame
def metrics_frame(records: list[dict], which: Which = "ema") -> pd.DataFrame:
    """Long table: one row per (run, set) with the method key, seed, target and metrics.

    ``which`` is ``"ema"`` (the paper's reported model) or ``"raw"`` (the raw model at the
    selected epoch). A ``validation`` row per run holds the mean over its validation splits.
    """
    rows = []
    for rec in as_records(records):
        for set_name, values in rec.metrics[which].items():
            rows.append({"run_id": rec.run_id, "method": rec.key, "seed": rec.seed,
                         "target_set": rec.target_set, "n_target": rec.n_target,
                         "set": set_name, **values})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    rsplt = frame[frame["set"].isin(col.RANDOM_SPLITS + col.CLEAN_SPLITS)]  # a run has one family
    if len(rsplt):
        keys = ["run_id", "method", "seed", "target_set", "n_target"]
        mean = rsplt.groupby(keys).mean(numeric_only=True).reset_index()
        mean["set"] = VALIDATION
        frame = pd.concat([frame, mean[frame.columns]], ignore_index=True)
    return frame


def seed_summary(records: list[dict], which: Which = "ema", metric: Metric = "loss"
                 ) -> pd.DataFrame:
    """Mean, std and count over seeds of one metric, per method / target / set."""
    frame = metrics_frame(records, which)
    columns = ["method", "target_set", "n_target", "set", "mean", "std", "n"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.groupby(["method", "target_set", "n_target", "set"])[metric]
    out = grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}).reset_index()
    return out[columns]


def summary_stats(summary: pd.DataFrame, run: RunKey, set_name: str
                  ) -> tuple[float, float, int]:
    """Mean, std and seed count of one run kind on one set (NaN, NaN, 0 when absent)."""
    hit = summary[(summary["method"] == run.method) & (summary["set"] == set_name)
                  & (summary["target_set"] == run.target) & (summary["n_target"] == run.n)]
    if not len(hit):
        return np.nan, np.nan, 0
    row = hit.iloc[0]
    return float(row["mean"]), float(row["std"]), int(row["n"])
