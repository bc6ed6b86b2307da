"""Chemistry hold-outs: leave-one-element-out and leave-one-cluster-out sets.

A random split of a composition table puts close relatives of every test compound into the
training rows. The two hold-outs here remove whole chemistries instead, as MatFold (Witman &
Schindler 2025) and the leave-one-element-out study of Li et al. (Commun. Mater. 2025) do:
every compound that contains an element, or every row of one k-means cluster of the features.
Whether such a set is really out of distribution is measured, not assumed
(:func:`calkit.splits.distance_to_training`): Li et al. found that many element hold-outs are not.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
from sklearn.cluster import KMeans

ELEMENT_SHARE = (0.03, 0.12)
"""Shares of a table's formulas an element's compounds may hold to be an element hold-out.

Below 3 % a set is too small to score at five seeds on the smaller tasks; above 12 % (oxygen holds
20-86 % of the matbench tasks' formulas) the hold-out would take most of the training rows with
it, because every shift of a benchmark task is held out from one training set at once."""
CLUSTER_SHARE = (0.03, 0.15)
"""Shares of the rows a k-means cluster may hold to be the cluster hold-out."""

_ELEMENT = re.compile(r"[A-Z][a-z]?")


def elements_of(formula: str) -> frozenset[str]:
    """The element symbols of a formula string (``"Fe0.6Cr0.2Ni0.2"`` -> Cr, Fe, Ni)."""
    return frozenset(_ELEMENT.findall(formula))


def contains_element(formulas: Iterable[str], element: str) -> np.ndarray:
    """Mask of the formulas that contain ``element``."""
    return np.array([element in elements_of(f) for f in formulas], dtype=bool)


def holdout_elements(formulas: Iterable[str], n: int = 3,
                     share: tuple[float, float] = ELEMENT_SHARE) -> tuple[str, ...]:
    """The ``n`` most common elements whose compounds hold a ``share`` of the formulas.

    Ties are broken alphabetically, so the choice depends on the table only.

    Args:
        formulas: One formula per row (one row per formula).
        n: How many elements to hold out.
        share: Lowest and highest share of the formulas an element may appear in.

    Returns:
        Element symbols, most common first (fewer than ``n`` when fewer qualify).
    """
    formulas = list(formulas)
    counts = Counter(e for f in formulas for e in elements_of(f))
    low, high = share[0] * len(formulas), share[1] * len(formulas)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(e for e, count in ranked if low <= count <= high)[:n]


def cluster_holdout(features: np.ndarray, k: int, seed: int = 0,
                    share: tuple[float, float] = CLUSTER_SHARE) -> np.ndarray:
    """Mask of the rows of the most distinct k-means cluster of standardised features.

    Among the clusters that hold a ``share`` of the rows, the one whose centre lies farthest
    from the mean of all rows (the origin of standardised features); when none qualifies, the
    cluster whose size is nearest the middle of ``share``.

    Args:
        features: Standardised features, rows x features.
        k: Number of clusters.
        seed: Seed of k-means.
        share: Lowest and highest share of the rows the held-out cluster may hold.

    Returns:
        Boolean mask of the held-out cluster's rows.
    """
    model = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(features)
    sizes = np.bincount(model.labels_, minlength=k) / len(features)
    distance = np.linalg.norm(model.cluster_centers_ - features.mean(axis=0), axis=1)
    eligible = (sizes >= share[0]) & (sizes <= share[1])
    if eligible.any():
        chosen = int(np.argmax(np.where(eligible, distance, -np.inf)))
    else:
        chosen = int(np.argmin(np.abs(sizes - sum(share) / 2)))
    return model.labels_ == chosen
