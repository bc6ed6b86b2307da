"""Uncertainty as an OOD flag: does a model's spread tell OOD rows from in-distribution ones?

Used with the deep ensemble's member spread (:mod:`calkit.methods.baselines`): a useful
uncertainty is larger on OOD rows than on random-split rows (:func:`ood_flag_auroc`) and
larger where the error is larger (:func:`risk_coverage`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def ood_flag_auroc(spread_ood: np.ndarray, spread_random: np.ndarray) -> float:
    """AUROC of flagging OOD rows by their spread (OOD = positive class).

    Args:
        spread_ood: Uncertainty of the rows of an OOD set.
        spread_random: Uncertainty of in-distribution rows (a random or clean split).

    Returns:
        The probability that a random OOD row has a larger spread than a random
        in-distribution row (ties count half); 0.5 is chance. NaN if either side is empty.
    """
    ood = np.asarray(spread_ood, np.float64).reshape(-1)
    rnd = np.asarray(spread_random, np.float64).reshape(-1)
    if not len(ood) or not len(rnd):
        return float("nan")
    labels = np.r_[np.ones(len(ood)), np.zeros(len(rnd))]
    return float(roc_auc_score(labels, np.r_[ood, rnd]))


def risk_coverage(errors: np.ndarray, spread: np.ndarray) -> dict[str, Any]:
    """Error as a function of how many of the most confident rows are kept.

    Rows are sorted by ascending spread (most confident first; ties keep the input order).

    Args:
        errors: Per-row absolute errors.
        spread: Per-row uncertainty.

    Returns:
        ``confident_half``: mean error of the ``ceil(n/2)`` lowest-spread rows;
        ``uncertain_half``: mean error of the rest; ``coverage``: ``k/n`` for ``k = 1..n``;
        ``risk``: mean error of the ``k`` lowest-spread rows; ``aurc``: the mean of ``risk``
        (area under the risk-coverage curve; lower is better).
    """
    err = np.asarray(errors, np.float64).reshape(-1)
    unc = np.asarray(spread, np.float64).reshape(-1)
    if err.shape != unc.shape:
        raise ValueError(f"errors and spread must have the same length; got {err.shape} and "
                         f"{unc.shape}.")
    n = len(err)
    if n == 0:
        return {"confident_half": float("nan"), "uncertain_half": float("nan"),
                "coverage": np.zeros(0), "risk": np.zeros(0), "aurc": float("nan")}
    sorted_err = err[np.argsort(unc, kind="stable")]
    k = np.arange(1, n + 1)
    risk = np.cumsum(sorted_err) / k
    half = (n + 1) // 2
    return {"confident_half": float(sorted_err[:half].mean()),
            "uncertain_half": float(sorted_err[half:].mean()) if n > half else float("nan"),
            "coverage": k / n, "risk": risk, "aurc": float(risk.mean())}
