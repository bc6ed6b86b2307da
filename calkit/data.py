"""Data sets: a registry, a hash-checked file lookup and one frame schema.

Every loader returns a :class:`pandas.DataFrame` with the columns
``id, formula, composition`` followed by the data set's target column(s) (see
:mod:`calkit.columns`). Files are found, in this order, under ``$CALKIT_DATA``, under
the git-ignored ``data/`` folder of the repository (or ``~/.cache/calkit/data`` for an
installed package), and otherwise downloaded from their upstream URL. Every file's
sha256 must match either the upstream bytes or the known offline mirror, so a truncated
or altered file is an error, never silently used.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition

from calkit import columns as col
from calkit.columns import Tail
from calkit.files import atomic_write, cache_dir, local_data_dir, sha256_of
from calkit.matbench import TASKS, MatbenchTask
from calkit.splits import SplitConfig

DATA_ENV = "CALKIT_DATA"
URL_ENV = "CALKIT_DATA_URL"
"""Base URL of a mirror laid out like the data folder (``<base>/<relpath>``); downloads use it
instead of the upstream URLs when set. Every download is hash-checked either way."""


class DataFileError(RuntimeError):
    """A data file is missing, cannot be downloaded, or fails its hash check."""


@dataclass(frozen=True)
class DataFile:
    """One file of a data set, where it lives upstream and which bytes are valid.

    Attributes:
        relpath: Path below the data folder, e.g. ``mp_2019_roost/mp-formation.csv.gz``.
        url: Upstream URL.
        sha256: Accepted sha256 digests of the file bytes (upstream and known mirrors).
        upstream_name: File name of the upstream download when it differs from ``relpath``
            (the mirror gzips a plain upstream CSV).
    """

    relpath: str
    url: str
    sha256: tuple[str, ...]
    upstream_name: str | None = None


_AVIARY = (
    "https://raw.githubusercontent.com/CompRhys/aviary/553aeb3883508e26bf1972faaed23fba8a5d8907"
)

FILES: dict[str, DataFile] = {
    "mp-formation": DataFile(
        relpath="mp_2019_roost/mp-formation.csv.gz",
        url=f"{_AVIARY}/data/datasets/mp-formation.csv",
        sha256=(
            "92ba6fd2a0777261ba78bf72a0244875a78f05a5902993d9440c18255802a644",  # upstream CSV
            "99d6a913b89c2f5b2fae9a7ad7c58099bb4663bc60bed35e26a38aefdf97cb25",  # gzipped mirror
        ),
        upstream_name="mp_2019_roost/mp-formation.csv",
    ),
    "mp-bandgaps": DataFile(
        relpath="mp_2019_roost/mp-bandgaps.csv.gz",
        url=f"{_AVIARY}/data/datasets/mp-bandgaps.csv",
        sha256=(
            "075ad199379dfbe8946bf33282b5972af658209f904d18d52d8468b2c86cdfde",
            "466e481b5cfcc438cf0feba9c99bb9a22201985480b9c5927889e4452bd7c746",
        ),
        upstream_name="mp_2019_roost/mp-bandgaps.csv",
    ),
    "piezoelectric_tensor": DataFile(
        relpath="matminer/piezoelectric_tensor.json.gz",
        url="https://ndownloader.figshare.com/files/13220621",
        sha256=(
            "dc9d04836f7f91ecb4ef6dc23e42468571be857f0fccafdfb51a5a40f19db898",  # matminer
            "1c16a4d78d36e09fb1619a0963ba4a585fe3e02847c86b4789c3f13af6322760",  # mirror
        ),
    ),
    "matbench_phonons": DataFile(
        relpath="matminer/matbench_phonons.json.gz",
        url="https://ml.materialsproject.org/projects/matbench_phonons.json.gz",
        sha256=("4db551f21ec5f577e6202725f10e34dfc509aa7df3a6bdaac497da7f6dbbb9b3",),
    ),
    "mp_nostruct_20181018": DataFile(
        relpath="matminer/mp_nostruct_20181018.json.gz",
        url="https://ndownloader.figshare.com/files/13309253",
        sha256=("48481abc390e0772defbbfa68d7db3b9bdef2519d407b82a581f2298f7df080f",),
    ),
    **{task.file_key: DataFile(relpath=task.relpath, url=task.url, sha256=(task.sha256,))
       for task in TASKS},
}


def _candidates(spec: DataFile) -> list[Path]:
    names = [spec.relpath] + ([spec.upstream_name] if spec.upstream_name else [])
    roots: list[Path] = []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]).expanduser())
    roots.append(local_data_dir())
    return [root / name for root in roots for name in names]


def _check_hash(path: Path, spec: DataFile) -> Path:
    digest = sha256_of(path)
    if digest not in spec.sha256:
        raise DataFileError(
            f"{path} has sha256 {digest}, which matches neither the upstream file nor the known "
            f"mirror ({', '.join(h[:12] + '...' for h in spec.sha256)}). The file is corrupted, "
            f"truncated or a different version. Delete it and let calkit download {spec.url}, "
            f"or point {DATA_ENV} at a verified mirror."
        )
    return path


def download_url(spec: DataFile) -> str:
    """Where a file is downloaded from: ``$CALKIT_DATA_URL/<relpath>`` or the upstream URL."""
    base = os.environ.get(URL_ENV)
    return f"{base.rstrip('/')}/{spec.relpath}" if base else spec.url


def _download(spec: DataFile) -> Path:
    url = download_url(spec)
    # A mirror holds the bytes of the relpath; upstream may serve another name (a plain CSV).
    name = spec.relpath if url != spec.url else (spec.upstream_name or spec.relpath)
    dest = local_data_dir() / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            payload = response.read()
    except OSError as exc:
        raise DataFileError(
            f"data file {spec.relpath} was not found and could not be downloaded from {url} "
            f"({exc}). Set {DATA_ENV} to a folder holding {spec.relpath} (a local mirror), or "
            f"download the URL into {local_data_dir() / (spec.upstream_name or spec.relpath)}."
        ) from exc
    # Write to a temporary file first so an interrupted download never leaves a partial file
    # that a later run would mistake for the real one.
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(payload)
    tmp_path = Path(tmp.name)
    try:
        _check_hash(tmp_path, spec)
    except DataFileError:
        tmp_path.unlink(missing_ok=True)
        raise
    shutil.move(tmp_path, dest)
    return dest


def fetch(file_key: str, download: bool = True) -> Path:
    """Return a verified local path of a registered file, downloading it if needed.

    Args:
        file_key: A key of :data:`FILES`.
        download: Whether to download when no local copy exists.

    Returns:
        Path to a file whose sha256 matches the upstream or mirror hash.

    Raises:
        DataFileError: Missing and not downloadable, or a hash mismatch.
        KeyError: Unknown file key.
    """
    if file_key not in FILES:
        raise KeyError(f"unknown data file {file_key!r}; known files: {', '.join(FILES)}")
    spec = FILES[file_key]
    for path in _candidates(spec):
        if path.is_file():
            return _check_hash(path, spec)
    if not download:
        looked = ", ".join(map(str, _candidates(spec)))
        raise DataFileError(
            f"data file {spec.relpath} not found (looked in {looked}). "
            f"Set {DATA_ENV} to a folder holding it, or allow the download from {spec.url}."
        )
    return _download(spec)


def _read_csv(path: Path) -> pd.DataFrame:
    # keep_default_na=False: the formula "NaN" (sodium nitride) is a real compound.
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def read_split_json(path: Path, fields: list[str]) -> pd.DataFrame:
    """Read chosen columns of a pandas ``orient="split"`` JSON file (matminer's format)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        payload = json.load(handle)
    cols = payload["columns"]
    keep = [cols.index(name) for name in fields]
    return pd.DataFrame([[row[i] for i in keep] for row in payload["data"]], columns=fields)


_REDUCED_FORMULAS: dict[str, list[str | None]] = {}


def _reduced_formula(formula: str) -> str | None:
    try:
        comp = Composition(formula)
        if comp.num_atoms <= 0 or not comp.valid:
            raise ValueError("no atoms or dummy species")
        return comp.reduced_formula
    except Exception:  # pymatgen raises several types for bad formulas
        return None


def reduced_formulas(formulas: list[str]) -> list[str | None]:
    """The reduced formula of each formula (``None`` where pymatgen cannot parse it), cached.

    Parsing is most of the time it takes to load a table (several seconds for mp2019's 84k
    rows, in every process that loads it), so the result is kept in memory and on disk under
    ``<cache>/formulas``, keyed by the formulas and pymatgen's version.

    Args:
        formulas: Formula strings, e.g. ``["Fe2O3", "NaCl"]``.

    Returns:
        The reduced formulas, in order.
    """
    digest = hashlib.sha256(f"pymatgen {version('pymatgen')}\n".encode())
    digest.update("\n".join(formulas).encode())
    key = digest.hexdigest()[:24]
    if key in _REDUCED_FORMULAS:
        return _REDUCED_FORMULAS[key]
    path = cache_dir("formulas") / f"{key}.txt.gz"
    reduced: list[str | None] | None = None
    if path.is_file():
        with gzip.open(path, "rt") as handle:
            lines = handle.read().split("\n")
        if len(lines) == len(formulas):  # a truncated cache is ignored and rewritten
            reduced = [line or None for line in lines]
    if reduced is None:
        reduced = [_reduced_formula(f) for f in formulas]
        with atomic_write(path) as tmp, gzip.open(tmp, "wt") as handle:
            handle.write("\n".join(r or "" for r in reduced))
    _REDUCED_FORMULAS[key] = reduced
    return reduced


def _parse_formulas(formulas: pd.Series, on_invalid: str) -> tuple[pd.Series, pd.Series]:
    """Parse formulas, returning reduced formulas and a mask of the valid rows."""
    reduced = reduced_formulas(formulas.astype(str).tolist())
    result = pd.Series(reduced, index=formulas.index, dtype=object)
    valid = result.notna()
    n_bad = int((~valid).sum())
    if n_bad:
        examples = ", ".join(repr(f) for f in formulas[~valid].head(5))
        message = f"{n_bad} malformed formula(s) ({examples}{', ...' if n_bad > 5 else ''})"
        if on_invalid == "raise":
            raise ValueError(f"{message}. Fix them, or pass on_invalid='drop' to skip those rows.")
        warnings.warn(f"dropped {message}", stacklevel=3)
    return result, valid


def standardize_frame(
    frame: pd.DataFrame,
    id_col: str,
    composition_col: str,
    targets: dict[str, str],
    on_invalid: str = "drop",
) -> pd.DataFrame:
    """Bring a raw table into the calkit schema ``id, formula, composition, targets...``.

    Use it for your own data: any table with an id, a composition string and targets.

    Args:
        frame: The raw table.
        id_col: Column with a unique identifier.
        composition_col: Column with a chemical formula, e.g. ``"Fe2O3"``.
        targets: Mapping from the raw target column names to calkit's names.
        on_invalid: ``"drop"`` malformed formulas with a warning that counts them, or ``"raise"``.

    Returns:
        A new frame in the calkit schema with a fresh ``RangeIndex``.
    """
    if on_invalid not in ("drop", "raise"):
        raise ValueError(f"on_invalid must be 'drop' or 'raise', got {on_invalid!r}")
    missing = [c for c in (id_col, composition_col, *targets) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(frame.columns)}")
    reduced, valid = _parse_formulas(frame[composition_col], on_invalid)
    out = pd.DataFrame(
        {
            col.ID: frame[id_col].astype(str),
            col.FORMULA: reduced,
            col.COMPOSITION: frame[composition_col].astype(str),
        }
    )
    for raw, name in targets.items():
        out[name] = pd.to_numeric(frame[raw], errors="coerce").astype(float)
    return out[valid].reset_index(drop=True)


def _load_mp2019(on_invalid: str) -> pd.DataFrame:
    formation = _read_csv(fetch("mp-formation"))
    gaps = _read_csv(fetch("mp-bandgaps"))
    merged = formation.merge(
        gaps[["task_id", "band_gap"]], on="task_id", how="left", validate="1:1"
    )
    return standardize_frame(
        merged,
        "task_id",
        "composition",
        {"formation_energy_per_atom": col.DELTA_E, "band_gap": col.BAND_GAP},
        on_invalid,
    )


def relation_ids() -> set[str]:
    """Materials Project ids of the piezoelectric (relation-shift) entries."""
    return set(read_split_json(fetch("piezoelectric_tensor"), ["material_id"])["material_id"])


def _load_piezo(on_invalid: str) -> pd.DataFrame:
    mp = load_dataset("mp2019", on_invalid=on_invalid)
    joined = mp[mp[col.ID].isin(relation_ids())]
    # mp2019 holds one entry per reduced formula; keep that invariant explicitly.
    return joined.drop_duplicates(col.FORMULA).reset_index(drop=True)


def _load_phonons(on_invalid: str) -> pd.DataFrame:
    raw = read_split_json(fetch("matbench_phonons"), ["structure", "last phdos peak"])
    formulas = [_structure_formula(s) for s in raw["structure"]]
    frame = pd.DataFrame(
        {
            "id": [f"mb-phonons-{i + 1:04d}" for i in range(len(raw))],
            "composition": formulas,
            "peak": raw["last phdos peak"],
        }
    )
    out = standardize_frame(frame, "id", "composition", {"peak": col.PHDOS_PEAK}, on_invalid)
    return aggregate_formulas(out, (col.PHDOS_PEAK,))


def aggregate_formulas(frame: pd.DataFrame, targets: tuple[str, ...]) -> pd.DataFrame:
    """One row per reduced formula: polymorphs' targets averaged, the first row's id kept.

    A composition model sees polymorphs as one input, so keeping them apart would let the same
    formula sit in the training rows and in a test set at once.
    """
    if not frame[col.FORMULA].duplicated().any():
        return frame
    first = frame.groupby(col.FORMULA, sort=False).first()
    first[list(targets)] = frame.groupby(col.FORMULA, sort=False)[list(targets)].mean()
    first["n_polymorphs"] = frame.groupby(col.FORMULA, sort=False).size()
    return first.reset_index()[[*frame.columns, "n_polymorphs"]]


def _structure_formula(structure: dict) -> str:
    counts: dict[str, float] = {}
    for site in structure["sites"]:
        for species in site["species"]:
            counts[species["element"]] = counts.get(species["element"], 0.0) + species["occu"]
    return Composition(counts).formula


def matbench_artifact(task: MatbenchTask) -> pd.DataFrame:
    """A matbench task's hash-checked artifact as it is: one row per entry, matbench's order."""
    with bz2.open(fetch(task.file_key), "rt") as handle:
        return pd.DataFrame(json.load(handle))  # {column: {row: value}}


def _load_matbench_task(task: MatbenchTask, on_invalid: str) -> pd.DataFrame:
    raw = matbench_artifact(task)
    frame = standardize_frame(raw, "mbid", "composition", {task.column: task.target}, on_invalid)
    return aggregate_formulas(frame, (task.target,))


def _load_mp_nostruct(on_invalid: str) -> pd.DataFrame:
    path = fetch("mp_nostruct_20181018")
    raw = read_split_json(path, ["mpid", "formula", "e_form", "gap pbe"])
    return standardize_frame(
        raw, "mpid", "formula", {"e_form": col.DELTA_E, "gap pbe": col.BAND_GAP}, on_invalid
    )


@dataclass(frozen=True)
class DatasetInfo:
    """A data set: a registered one or a user's composition table.

    Attributes:
        name: Registry key, or the path of a user's CSV.
        description: One line for tables in the book.
        targets: Target columns of the returned frame.
        files: Keys of :data:`FILES` the loader reads (none for a user's file).
        loader: Function ``on_invalid -> frame``.
        default_target: The property models learn when no ``target`` is given.
        units: Unit of each target, for tables and axes.
        prior_tail: Tail of each target that forms the prior-shift set: ``"lower"`` (formation
            energy: the most stable compounds, as the paper) or ``"upper"`` (phonon peaks:
            the highest frequencies, the discovery direction).
        relation: Whether the piezoelectric relation-shift set exists (Materials Project ids).
        rows: Rows the loader returns (so a profile's subsample size is known without loading).
        sha256: The user file's digest (empty for registered data sets, whose files carry it).
        split_config: How its OOD sets are built by default (the benchmark tasks add both
            prior tails and the chemistry hold-outs to the paper's sets).
    """

    name: str
    description: str
    targets: tuple[str, ...]
    files: tuple[str, ...]
    loader: Callable[[str], pd.DataFrame]
    default_target: str
    units: dict[str, str]
    prior_tail: dict[str, Tail]
    relation: bool = False
    rows: int | None = None
    sha256: str = ""
    split_config: SplitConfig = field(default_factory=SplitConfig)

    def check_target(self, target: str | None) -> str:
        """The target column to learn (``None``: the default), or a clear error."""
        target = target or self.default_target
        if target not in self.targets:
            raise ValueError(f"data set {self.name!r} has no target {target!r}; its targets are "
                             f"{', '.join(self.targets)}.")
        return target


_MP_UNITS = {col.DELTA_E: "eV/atom", col.BAND_GAP: "eV"}
_MP_TAILS: dict[str, Tail] = {col.DELTA_E: "lower", col.BAND_GAP: "upper"}

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "mp2019",
            "Materials Project c. 2019 (Roost data): 84,295 compositions, formation energy and "
            "PBE band gap; offline stand-in for mp_nostruct_20181018",
            (col.DELTA_E, col.BAND_GAP),
            ("mp-formation", "mp-bandgaps"),
            _load_mp2019, col.DELTA_E, _MP_UNITS, _MP_TAILS, relation=True, rows=84_295,
        ),
        DatasetInfo(
            "piezo",
            "piezoelectric_tensor (de Jong 2015) entries found in mp2019 by material id",
            (col.DELTA_E, col.BAND_GAP),
            ("piezoelectric_tensor", "mp-formation", "mp-bandgaps"),
            _load_piezo, col.DELTA_E, _MP_UNITS, _MP_TAILS, rows=471,
        ),
        DatasetInfo(
            "phonons",
            "matbench_phonons: composition and last phonon DOS peak (cm^-1); 1,265 structures, "
            "1,171 formulas after averaging polymorphs",
            (col.PHDOS_PEAK,),
            ("matbench_phonons",),
            _load_phonons, col.PHDOS_PEAK, {col.PHDOS_PEAK: "cm^-1"}, {col.PHDOS_PEAK: "upper"},
            rows=1_171,
        ),
        DatasetInfo(
            "mp_nostruct_20181018",
            "the paper's own set (matminer; downloaded, needs internet)",
            (col.DELTA_E, col.BAND_GAP),
            ("mp_nostruct_20181018",),
            _load_mp_nostruct, col.DELTA_E, _MP_UNITS, _MP_TAILS, relation=True,
        ),
        *(DatasetInfo(
            task.dataset,
            f"matbench_{task.name} (Matbench v0.1): {task.label} ({task.unit or 'unitless'}), "
            f"{task.rows:,} formulas after averaging polymorphs",
            (task.target,), (task.file_key,), partial(_load_matbench_task, task), task.target,
            {task.target: task.unit}, {task.target: "upper"}, rows=task.rows,
            split_config=task.split_config,
        ) for task in TASKS),
    )
}

USER_FILE_SUFFIXES = (".csv", ".csv.gz")
FORMULA_COLUMNS = ("formula", "composition", "Formula", "Composition", "reduced_formula")
MIN_ROWS = 100
"""Fewest rows a user's table may have: the sets take 10-15 % tails and five validation splits
are drawn from what is left."""


def is_user_file(name: str) -> bool:
    """Whether ``name`` names a CSV file rather than a registered data set."""
    return str(name).endswith(USER_FILE_SUFFIXES)


def _read_user_table(path: Path) -> pd.DataFrame:
    try:
        return _read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValueError(f"{path} could not be read as a CSV ({exc}). Pass a comma-separated "
                         "file (optionally gzipped) with a header row.") from exc


_USER_DATASETS: dict[tuple, DatasetInfo] = {}


def user_dataset(path: str | Path, target: str | None = None) -> DatasetInfo:
    """Describe a user's composition table (CSV or CSV.GZ) as a data set.

    The table needs a formula column (``formula`` or ``composition``) and a numeric property
    column, named by ``target``; an ``id`` column is used when present (else ``row-<i>``).
    Duplicated formulas are averaged (:func:`aggregate_formulas`), malformed formulas are
    dropped with a warning that counts them.

    Raises:
        ValueError: Missing file, no formula column, no or non-numeric target, too few rows.
    """
    path = Path(path).expanduser().resolve()
    if path.is_file():  # memoised: run ids resolve the data set often
        key = (str(path), path.stat().st_mtime_ns, path.stat().st_size, target)
        if key in _USER_DATASETS:
            return _USER_DATASETS[key]
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist. Give the path of a CSV "
                         f"(or CSV.GZ) with a formula column, or a registered data set: "
                         f"{', '.join(DATASETS)}.")
    header = _read_user_table(path)
    formula = next((c for c in FORMULA_COLUMNS if c in header.columns), None)
    if formula is None:
        raise ValueError(f"{path.name} has no formula column; its columns are "
                         f"{list(header.columns)}. Name the column of chemical formulas "
                         "'formula' (e.g. Fe2O3).")
    numeric = [c for c in header.columns if c not in (formula, col.ID)
               and pd.api.types.is_numeric_dtype(header[c])]
    if target is None:
        raise ValueError(f"{path.name}: say which column to learn with the parameter target "
                         f"(numeric columns: {', '.join(numeric) or 'none'}).")
    if target not in header.columns:
        raise ValueError(f"{path.name} has no column {target!r}; its columns are "
                         f"{list(header.columns)}.")
    if target not in numeric:
        values = pd.to_numeric(header[target], errors="coerce")
        bad = header.loc[values.isna() & header[target].notna(), target].head(3).tolist()
        raise ValueError(f"column {target!r} of {path.name} is not numeric (values such as "
                         f"{bad}). Choose a numeric column: {', '.join(numeric) or 'none'}.")
    digest = sha256_of(path)

    parsed: dict[str, pd.DataFrame] = {}  # the file is read and its formulas parsed once

    def loader(on_invalid: str) -> pd.DataFrame:
        if on_invalid not in parsed:
            table = _read_user_table(path)
            table = table[table[target].notna()].reset_index(drop=True)
            if col.ID not in table.columns:
                table[col.ID] = [f"row-{i}" for i in range(len(table))]
            frame = standardize_frame(table, col.ID, formula, {target: target}, on_invalid)
            parsed[on_invalid] = aggregate_formulas(frame, (target,))
        return parsed[on_invalid].copy()

    rows = len(loader("drop"))
    if rows < MIN_ROWS:
        raise ValueError(f"{path.name} has {rows} usable rows (valid formula, numeric {target!r}, "
                         f"one per formula); the OOD sets and validation splits need at least "
                         f"{MIN_ROWS}.")
    info = DatasetInfo(str(path), f"user table {path.name} ({rows:,} formulas), target {target}",
                       (target,), (), loader, target, {target: ""}, {target: "upper"},
                       rows=rows, sha256=digest)
    _USER_DATASETS[key] = info
    return info


def check_dataset_name(name: str, target: str | None = None) -> DatasetInfo:
    """Return the data set ``name`` (registered, or a CSV path) or raise with the valid names."""
    if name in DATASETS:
        return DATASETS[name]
    if is_user_file(name):
        return user_dataset(name, target)
    raise ValueError(f"unknown data set {name!r}. Valid names: {', '.join(DATASETS)}, or the "
                     "path of a CSV / CSV.GZ file with a formula column.")


def load_dataset(name: str, on_invalid: str = "drop", target: str | None = None) -> pd.DataFrame:
    """Load a data set in the calkit schema.

    Args:
        name: One of :data:`DATASETS` (``mp2019``, ``piezo``, ``phonons``,
            ``mp_nostruct_20181018``) or the path of a CSV (:func:`user_dataset`).
        on_invalid: ``"drop"`` malformed formulas with a counting warning, or ``"raise"``.
        target: A user table's property column (registered data sets hold all their targets).

    Returns:
        A frame with columns ``id, formula, composition`` and the data set's targets.

    Example:
        >>> frame = load_dataset("mp2019")  # doctest: +SKIP
        >>> frame.columns.tolist()  # doctest: +SKIP
        ['id', 'formula', 'composition', 'delta_e', 'band_gap']
    """
    info = check_dataset_name(name, target)
    return info.loader(on_invalid)


def describe_files() -> pd.DataFrame:
    """Tabulate where each registered file is found and whether its hash checks out.

    The location is named by the folder it was found in (``$CALKIT_DATA`` or the download
    folder), never by this machine's absolute path, so the table can go on a public page.
    """
    rows = []
    env = os.environ.get(DATA_ENV)
    folders = ([(Path(env).expanduser(), f"${DATA_ENV}")] if env else []) + [
        (local_data_dir(), "download folder")]
    for spec in FILES.values():
        found = next((p for p in _candidates(spec) if p.is_file()), None)
        status, where = "missing (will download)", "-"
        if found is not None:
            status = "ok" if sha256_of(found) in spec.sha256 else "HASH MISMATCH"
            where = next((f"{label}/{found.relative_to(folder).as_posix()}"
                          for folder, label in folders if found.is_relative_to(folder)),
                         found.name)
        rows.append({"file": spec.relpath, "found at": where, "status": status})
    return pd.DataFrame(rows)
