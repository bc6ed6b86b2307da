"""A vectorised featuriser for the paper's 145 composition features, equal to matminer's.

:func:`featurize_fast` computes the ``paper145`` preset of :mod:`calkit.features`
(``Stoichiometry()``, ``ElementProperty.from_preset("magpie")``,
``ValenceOrbital(props=["avg"])`` and ``IonProperty(fast=True)``) with numpy instead of one
matminer call per composition. Each formula is parsed once by pymatgen; the statistics are
then computed for all compositions with the same number of elements at once, from element
tables built from the data matminer itself reads:

* the Magpie ``*.table`` files shipped with matminer, with missing values replaced by the
  mean over elements 1-118, as ``MagpieData(impute_nan=True)`` does;
* pymatgen's Pauling electronegativity (missing values replaced by the mean over all
  elements) and common oxidation states, as ``PymatgenData(impute_nan=True)`` gives them
  to ``IonProperty``.

Only "compound possible" needs a search per composition (is there a choice of one common
oxidation state per element with zero total charge?); it is a small set-based search over
partial charge sums, which answers the same question as matminer's loop over the product
of all oxidation-state choices.

Rows that matminer cannot featurise (unparsable formulas, no atoms, dummy species such as
``"Xx"``) are NaN. The rare compositions outside what the vectorised path covers (species
with oxidation states, amounts so large that sums overflow) are handed to matminer itself.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calkit.matminer_features import featurize_chunk

N_FEATURES = 145

STOICHIOMETRY_P = (0, 2, 3, 5, 7, 10)
MAGPIE_PROPERTIES = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
)
MAGPIE_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
ORBITALS = ("s", "p", "d", "f")

# np.isclose's defaults, which matminer uses for mode ties and for the charge-neutrality test.
_RTOL, _ATOL = 1e-5, 1e-8
# Above this amount, weighted sums may overflow where matminer's own order of operations
# would not (or the other way round); such rows go to matminer.
_MAX_AMOUNT = 1e200
# Column offsets of the four featurizers' blocks.
_MAGPIE = len(STOICHIOMETRY_P)
_VALENCE = _MAGPIE + len(MAGPIE_PROPERTIES) * len(MAGPIE_STATS)
_ION = _VALENCE + len(ORBITALS)
# Rows per vectorised block: bounds the (rows, elements, 22) temporaries to a few MB.
_BLOCK = 8192


def feature_labels() -> list[str]:
    """Names of the 145 features, in column order (identical to matminer's labels)."""
    return (
        [f"{p}-norm" for p in STOICHIOMETRY_P]
        + [f"MagpieData {stat} {prop}" for prop in MAGPIE_PROPERTIES for stat in MAGPIE_STATS]
        + [f"avg {orbital} valence electrons" for orbital in ORBITALS]
        + ["compound possible", "max ionic char", "avg ionic char"]
    )


@dataclass(frozen=True)
class ElementTables:
    """Per-element data, indexed by atomic number minus one (pymatgen's 118 elements).

    Attributes:
        magpie: Imputed Magpie properties, shape ``(118, 22)``, columns in
            :data:`MAGPIE_PROPERTIES` order.
        electronegativity: Imputed Pauling electronegativity from pymatgen, shape ``(118,)``.
        oxidation_states: Common oxidation states of each element (possibly empty).
    """

    magpie: np.ndarray
    electronegativity: np.ndarray
    oxidation_states: tuple[tuple[int, ...], ...]


def magpie_data_dir() -> Path:
    """Folder of matminer's Magpie element tables (found without importing matminer)."""
    spec = importlib.util.find_spec("matminer")
    if spec is None or spec.origin is None:
        raise ImportError("matminer is not installed; its Magpie data files are needed")
    return Path(spec.origin).parent / "utils" / "data_files" / "magpie_elementdata"


def _read_magpie_table(path: Path) -> np.ndarray:
    # MagpieData: line Z holds element Z; a missing or unparsable line is NaN, and NaN is
    # replaced by the mean over elements 1-118.
    lines = path.read_text().splitlines()
    values = np.full(118, np.nan)
    for z in range(1, 119):
        try:
            values[z - 1] = float(lines[z - 1])
        except (ValueError, IndexError):
            pass
    return np.where(np.isnan(values), np.nanmean(values), values)


@functools.cache
def element_tables() -> ElementTables:
    """Build (once per process) the element tables the features are computed from."""
    from pymatgen.core import Element

    elements = list(Element)
    if [e.Z for e in elements] != list(range(1, 119)):
        raise RuntimeError("expected pymatgen's Element to list Z = 1..118 in order")
    folder = magpie_data_dir()
    magpie = np.stack([_read_magpie_table(folder / f"{p}.table") for p in MAGPIE_PROPERTIES], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for every element without an X
        x = np.array([e.X if e.X else np.nan for e in elements], dtype=np.float64)
    # PymatgenData replaces a value that is falsy or NaN by the mean over all elements.
    x = np.where(np.isnan(x), np.nanmean(x), x)
    oxidation = tuple(tuple(int(o) for o in e.common_oxidation_states) for e in elements)
    return ElementTables(magpie=magpie, electronegativity=x, oxidation_states=oxidation)


def _neutral_possible(states: Sequence[tuple[int, ...]], amounts: Sequence[float]) -> bool:
    """Whether one oxidation state per element gives a total charge within 1e-8 of zero.

    matminer tests ``np.isclose(np.dot(ox, amounts), 0)`` for every member of the product
    of the oxidation-state lists. Collecting the distinct partial sums element by element
    reaches every such dot product while merging the many choices with equal partial
    charges. With integer amounts (every composition of the project's data sets) all sums
    are exact, so the answer is matminer's; with fractional amounts a sum may differ from
    ``np.dot``'s in the last bit, which matters only for a charge within rounding of 1e-8.
    """
    sums = {0.0}
    for ox, amount in zip(states, amounts, strict=True):
        sums = {s + o * amount for s in sums for o in ox}
        if not sums:  # an element without common oxidation states
            return False
    return any(abs(s) <= _ATOL for s in sums)


def _group_features(index: np.ndarray, amount: np.ndarray, tables: ElementTables) -> np.ndarray:
    """Features of ``m`` compositions with ``k`` elements each: ``(m, k)`` inputs."""
    m, k = index.shape
    out = np.empty((m, N_FEATURES))
    total = amount.sum(1)

    # Stoichiometry: p-norms of the atomic fractions; the 0-norm counts the elements.
    fraction = amount / total[:, None]
    out[:, 0] = k
    for col, p in enumerate(STOICHIOMETRY_P[1:], start=1):
        out[:, col] = (fraction**p).sum(1) ** (1.0 / p)

    # Magpie statistics, weighted by the amounts as np.average does.
    values = tables.magpie[index]  # (m, k, 22)
    weights = amount[:, :, None]
    mean = (values * weights).sum(1) / total[:, None]
    avg_dev = (np.abs(values - mean[:, None, :]) * weights).sum(1) / total[:, None]
    lo, hi = values.min(1), values.max(1)
    # Mode: the smallest value among the elements whose amount is close to the largest one.
    largest = amount.max(1, keepdims=True)
    tied = np.abs(amount - largest) <= _ATOL + _RTOL * np.abs(largest)
    mode = np.where(tied[:, :, None], values, np.inf).min(1)
    magpie = np.stack([lo, hi, hi - lo, mean, avg_dev, mode], axis=2)  # (m, 22, 6)
    out[:, _MAGPIE:_VALENCE] = magpie.reshape(m, _VALENCE - _MAGPIE)

    # ValenceOrbital's averages are the Magpie means of the N{s,p,d,f}Valence columns.
    valence = [MAGPIE_PROPERTIES.index(f"N{o}Valence") for o in ORBITALS]
    out[:, _VALENCE:_ION] = mean[:, valence]

    # IonProperty: ionic character 1 - exp(-(dX)^2 / 4) of every pair of elements; it grows
    # with |dX|, so its maximum is that of the largest difference.
    x = tables.electronegativity[index]
    if k == 1:
        out[:, _ION:] = (1.0, 0.0, 0.0)
        return out
    out[:, _ION + 1] = 1.0 - np.exp(-0.25 * (x.max(1) - x.min(1)) ** 2)
    pair_char = 1.0 - np.exp(-0.25 * (x[:, :, None] - x[:, None, :]) ** 2)
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    pair_weight = fraction[:, :, None] * fraction[:, None, :]
    out[:, _ION + 2] = (pair_weight * pair_char)[:, upper].sum(1)
    states = tables.oxidation_states
    out[:, _ION] = [
        _neutral_possible([states[z] for z in row], amounts)
        for row, amounts in zip(index.tolist(), amount.tolist(), strict=True)
    ]
    return out


def _matminer_rows(compositions: Sequence[str]) -> np.ndarray:
    """Features from matminer itself, for the few compositions the vectorised path leaves out."""
    return featurize_chunk(list(compositions))


def featurize_fast(compositions: Sequence[str]) -> np.ndarray:
    """Compute the 145 paper features of many compositions with numpy.

    Equals matminer's ``paper145`` features (:func:`calkit.features.featurize`) to about
    1e-12 and is tens of times faster. Repeated formulas are computed once.

    Args:
        compositions: Chemical formulas, e.g. ``["Fe2O3", "NaCl", "Fe0.5Ni0.5"]``.

    Returns:
        A float64 array of shape ``(len(compositions), 145)`` with columns in the order of
        :func:`feature_labels`. Rows whose formula matminer cannot featurise are all NaN.

    Example:
        >>> featurize_fast(["NaCl"])[0, :2]  # doctest: +SKIP
        array([2.        , 0.70710678])
    """
    from pymatgen.core import Composition, DummySpecies, Element

    texts = [str(c) for c in compositions]
    unique: dict[str, int] = {}
    inverse = np.array([unique.setdefault(t, len(unique)) for t in texts], dtype=np.intp)
    tables = element_tables()

    parsed: dict[int, list[tuple[int, list[int], list[float]]]] = {}  # k -> rows
    leftover: list[int] = []
    for row, text in enumerate(unique):
        try:
            comp = Composition(text)
        except Exception:  # unparsable: NaN, as in matminer's path
            continue
        # Composition.items() reads the dict directly; values() would look up every key.
        keys, amounts = list(comp), [amount for _, amount in comp.items()]
        if not keys or any(isinstance(key, DummySpecies) for key in keys):
            continue  # no atoms, or no element data for a dummy species: matminer fails too
        if not all(isinstance(key, Element) for key in keys) or max(amounts) > _MAX_AMOUNT:
            leftover.append(row)
            continue
        parsed.setdefault(len(keys), []).append((row, [key.Z - 1 for key in keys], amounts))

    values = np.full((len(unique), N_FEATURES), np.nan)
    for group in parsed.values():
        for start in range(0, len(group), _BLOCK):
            block = group[start : start + _BLOCK]
            rows = np.array([r for r, _, _ in block], dtype=np.intp)
            index = np.array([z for _, z, _ in block], dtype=np.intp)
            amount = np.array([a for _, _, a in block], dtype=np.float64)
            values[rows] = _group_features(index, amount, tables)
    if leftover:
        names = list(unique)
        values[leftover] = _matminer_rows([names[r] for r in leftover])
    return values[inverse]
