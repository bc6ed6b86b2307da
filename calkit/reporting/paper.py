"""The paper's reported values: one tidy table, read once from the package's resources."""

from __future__ import annotations

from functools import cache
from importlib import resources

import pandas as pd

from calkit import columns as col
from calkit.methods import method_label, paper_table_methods


@cache
def _paper_values() -> pd.DataFrame:
    with resources.files("calkit").joinpath("resources/paper_values.csv").open() as handle:
        frame = pd.read_csv(handle, keep_default_na=False, na_values={"n_target": [""]})
    frame["n_target"] = frame["n_target"].astype("Int64")
    return frame


def paper_values() -> pd.DataFrame:
    """The paper's reported numbers, one row each (smooth-L1 loss of the EMA model).

    Columns: ``table`` (``base``, ``targeted``, ``ablation``), ``set``, ``method``,
    ``target_set`` (empty for untargeted rows), ``n_target`` (``<NA>`` where the paper does
    not state N), ``metric`` and ``value``.
    """
    return _paper_values().copy()


def paper_value(method: str, set_name: str, target_set: str = "",
                n_target: int | None = None) -> float:
    """One reported value (NaN if the paper has none); an unstated N matches any N."""
    pv = _paper_values()
    hit = pv[(pv["method"] == method) & (pv["set"] == set_name) & (pv["target_set"] == target_set)]
    if target_set:
        hit = hit[hit["n_target"].isna() | (hit["n_target"] == n_target)]
    return float(hit["value"].iloc[0]) if len(hit) else float("nan")


def paper_change(reference: str, subject: str, set_name: str, target_set: str = "",
                 n_target: int | None = None) -> float:
    """The paper's relative change of ``subject``'s loss against ``reference``'s (NaN if none)."""
    return (paper_value(subject, set_name, target_set, n_target)
            / paper_value(reference, set_name, target_set, n_target) - 1)


def paper_base_means() -> pd.DataFrame:
    """The paper's base-table losses, wide: rows = set labels, columns = ``<method> (paper)``.

    The methods are the registry's base-table methods (:attr:`Method.paper_rows`) that the
    paper reports.
    """
    reported = _paper_values().query("table == 'base'").pivot(index="set", columns="method",
                                                               values="value")
    reported = reported[[m for m in paper_table_methods("base") if m in reported.columns]]
    return reported.rename(index=col.SET_LABELS).rename(
        columns=lambda m: method_label(m) + " (paper)")
