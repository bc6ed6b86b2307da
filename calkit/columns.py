"""Named column keys and OOD set names shared by every calkit module.

Keeping the strings in one place (as matbench-discovery does) means a typo is an
``AttributeError`` at import time rather than a silent ``KeyError`` deep in a run.
"""

from __future__ import annotations

from typing import Literal

# Columns of every data set frame returned by :func:`calkit.data.load_dataset`.
ID = "id"
FORMULA = "formula"
COMPOSITION = "composition"
DELTA_E = "delta_e"
BAND_GAP = "band_gap"
PHDOS_PEAK = "last_phdos_peak"

# Boolean set flags produced by :mod:`calkit.splits` (the paper's names).
TRAIN = "train"
COVARIATE = "Xshift_umap"
COVARIATE_TSNE = "Xshift_tsne"
PRIOR = "infoY_delta_e"
EXTREME = "statY_delta_e"
HIGH_GAP = "statY_bandgap"
GAP_PRIOR = "infoY_bandgap"
RELATION = "piezo"
RANDOM_SPLITS = tuple(f"Rsplt{i}" for i in range(1, 6))
"""The paper's validation splits: random 15 % subsets of all rows (they hold OOD rows too)."""
CLEAN_SPLITS = tuple(f"Csplt{i}" for i in range(1, 6))
"""The clean protocol's validation splits: drawn only from rows in no OOD set."""
Tail = Literal["upper", "lower"]
"""Which tail of a target forms a prior-shift set."""
Protocol = Literal["clean", "paper"]
"""A validation protocol's name."""
PROTOCOLS: dict[Protocol, tuple[str, ...]] = {"paper": RANDOM_SPLITS, "clean": CLEAN_SPLITS}
"""Validation protocol -> its validation splits (model selection and early stopping)."""

OOD_SETS = (COVARIATE, PRIOR, EXTREME, HIGH_GAP, GAP_PRIOR, RELATION)

# Friendly aliases accepted wherever a set name is a parameter.
SET_ALIASES = {
    "covariate": COVARIATE,
    "covariate_tsne": COVARIATE_TSNE,
    "prior": PRIOR,
    "extreme": EXTREME,
    "high_gap": HIGH_GAP,
    "gap_prior": GAP_PRIOR,
    "relation": RELATION,
}

# Human-readable labels used in tables and figures.
SET_LABELS = {
    TRAIN: "training",
    COVARIATE: "covariate (UMAP sparse)",
    COVARIATE_TSNE: "covariate (t-SNE sparse)",
    PRIOR: "prior (low delta_e)",
    EXTREME: "extreme delta_e",
    HIGH_GAP: "high band gap",
    GAP_PRIOR: "band-gap prior",
    RELATION: "relation (piezo)",
    **{name: f"random split {name[-1]}" for name in RANDOM_SPLITS},
    **{name: f"clean split {name[-1]}" for name in CLEAN_SPLITS},
}


def prior_set(target: str = DELTA_E) -> str:
    """Name of the prior-shift set (a 10 % tail) of a target column: ``infoY_<target>``."""
    return f"infoY_{target}"


def extreme_set(target: str = DELTA_E) -> str:
    """Name of the extreme set (outside the 5-95th percentiles) of a target: ``statY_<target>``."""
    return f"statY_{target}"


def tail_prior_set(target: str, tail: Tail) -> str:
    """Name of one tail's prior set where both tails are held out (``infoY_<target>_<tail>``)."""
    return f"infoY_{target}_{tail}"


ELEMENT_PREFIX = "element_"
CLUSTER_PREFIX = "cluster_"


def element_set(element: str) -> str:
    """Name of a leave-one-element-out set: every compound containing ``element``."""
    return f"{ELEMENT_PREFIX}{element}"


CLUSTER = f"{CLUSTER_PREFIX}kmeans"
"""The leave-one-cluster-out set: the rows of one k-means cluster of the features."""


def is_ood_set(name: str) -> bool:
    """Whether a set name is an OOD set of some data set (the target-named sets included)."""
    return name in OOD_SETS or name.startswith(("infoY_", "statY_", ELEMENT_PREFIX,
                                                CLUSTER_PREFIX))


def shift_kind(name: str) -> str:
    """The family of an OOD set: covariate, prior, extreme, element, cluster or relation."""
    for prefix, kind in (("infoY_", "prior"), ("statY_", "extreme"), (ELEMENT_PREFIX, "element"),
                         (CLUSTER_PREFIX, "cluster"), ("Xshift_", "covariate")):
        if name.startswith(prefix):
            return kind
    return {RELATION: "relation"}.get(name, name)


OWN_ROWS_SUFFIX = "_target"
"""Suffix of the set that holds a targeted run's N drawn rows (its *own rows*)."""


def own_rows(set_name: str) -> str:
    """The name of the set of the N rows a targeted run draws from ``set_name``."""
    return set_name + OWN_ROWS_SUFFIX


def set_label(name: str) -> str:
    """Readable label of a set, including the target-named sets of any data set."""
    if name in SET_LABELS:
        return SET_LABELS[name]
    if name.endswith(OWN_ROWS_SUFFIX):
        return f"the N target rows of {set_label(name.removesuffix(OWN_ROWS_SUFFIX))}"
    if name.startswith("infoY_") and name.endswith(("_lower", "_upper")):
        target, tail = name[len("infoY_"):].rsplit("_", 1)
        return f"prior, {'low' if tail == 'lower' else 'high'} tail ({target})"
    if name.startswith(ELEMENT_PREFIX):
        return f"{name[len(ELEMENT_PREFIX):]} compounds (element hold-out)"
    if name.startswith(CLUSTER_PREFIX):
        return "k-means cluster (cluster hold-out)"
    for prefix, what in (("infoY_", "prior"), ("statY_", "extreme")):
        if name.startswith(prefix):
            return f"{what} ({name[len(prefix):]})"
    return name


def resolve_set_name(name: str, available: tuple[str, ...] | list[str] | None = None,
                     target: str = DELTA_E) -> str:
    """Map an alias such as ``"prior"`` to the canonical set name.

    Args:
        name: A canonical set name (``"infoY_delta_e"``) or an alias (``"prior"``).
        available: If given, the names that exist in the caller's context.
        target: The data set's target column: ``"prior"`` and ``"extreme"`` name its sets
            (``infoY_<target>``, ``statY_<target>``).

    Returns:
        The canonical set name.

    Raises:
        ValueError: If the name is neither an alias nor a known (or available) set.
    """
    aliases = {**SET_ALIASES, "prior": prior_set(target), "extreme": extreme_set(target),
               "prior_lower": tail_prior_set(target, "lower"),
               "prior_upper": tail_prior_set(target, "upper")}
    canonical = aliases.get(name, name)
    valid = (
        tuple(available)
        if available is not None
        else (TRAIN, COVARIATE_TSNE, *OOD_SETS, prior_set(target), extreme_set(target),
              tail_prior_set(target, "lower"), tail_prior_set(target, "upper"),
              *RANDOM_SPLITS, *CLEAN_SPLITS)
    )
    hold_out = available is None and canonical.startswith((ELEMENT_PREFIX, CLUSTER_PREFIX))
    if canonical not in valid and not hold_out:
        shown = ", ".join(f"{k}->{v}" for k, v in aliases.items() if v in valid)
        raise ValueError(
            f"unknown set name {name!r}. Valid names: {', '.join(valid)}; aliases: {shown}."
        )
    return canonical
