from __future__ import annotations

import gzip
import shutil

import pandas as pd
import pytest

from calkit import columns as col
from calkit import data, files

SCHEMA = [col.ID, col.FORMULA, col.COMPOSITION]


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="mp2019") as err:
        data.load_dataset("mp2020")
    assert "unknown data set 'mp2020'" in str(err.value)


def test_standardize_drops_malformed_formulas_with_count():
    raw = pd.DataFrame(
        {"key": ["a", "b", "c", "d"], "formula": ["NaCl", "Xx2O", "NaN", "!!"], "t": [1, 2, 3, 4]}
    )
    with pytest.warns(UserWarning, match="dropped 2 malformed formula"):
        frame = data.standardize_frame(raw, "key", "formula", {"t": "target"})
    assert frame.columns.tolist() == [*SCHEMA, "target"]
    # "NaN" (Na + N) is a real composition, not a missing value.
    assert frame[col.FORMULA].tolist() == ["NaCl", "NaN"]
    assert frame[col.ID].tolist() == ["a", "c"]


def test_standardize_raises_on_malformed_when_asked():
    raw = pd.DataFrame({"key": ["a"], "formula": ["Qq"], "t": [1.0]})
    with pytest.raises(ValueError, match="1 malformed formula.*on_invalid='drop'"):
        data.standardize_frame(raw, "key", "formula", {"t": "target"}, on_invalid="raise")


def test_missing_file_offline_names_file_variable_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(data, "local_data_dir", lambda: tmp_path / "repo-data")
    with pytest.raises(data.DataFileError) as err:
        data.fetch("mp-formation", download=False)
    message = str(err.value)
    assert "mp_2019_roost/mp-formation.csv.gz" in message and data.DATA_ENV in message
    assert data.FILES["mp-formation"].url in message


def test_failed_download_names_file_variable_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(data, "local_data_dir", lambda: tmp_path / "repo-data")

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(data.DataFileError, match="could not be downloaded") as err:
        data.fetch("matbench_phonons")
    assert data.DATA_ENV in str(err.value) and "ml.materialsproject.org" in str(err.value)
    assert not (tmp_path / "repo-data" / "matminer").exists() or not any(
        (tmp_path / "repo-data" / "matminer").iterdir()
    )


def test_corrupted_file_is_an_error_not_silent_use(tmp_path, monkeypatch):
    target = tmp_path / "mp_2019_roost" / "mp-formation.csv.gz"
    target.parent.mkdir(parents=True)
    with gzip.open(target, "wt") as handle:
        handle.write("task_id,composition,formation_energy_per_atom\nmp-1,NaCl,-2.0\n")
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(
        data.DataFileError, match="matches neither the upstream file nor the known mirror"
    ):
        data.fetch("mp-formation")


def test_download_is_hash_checked_and_atomic(tmp_path, monkeypatch):
    payload = b"not the real file"
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(data, "local_data_dir", lambda: tmp_path / "repo-data")

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return payload

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(data.DataFileError, match="sha256"):
        data.fetch("matbench_phonons")
    leftovers = list((tmp_path / "repo-data").rglob("*"))
    assert all(p.is_dir() for p in leftovers), f"partial download left behind: {leftovers}"


@pytest.mark.realdata
def test_mp2019_size_schema_and_sodium_nitride(real_data):
    frame = data.load_dataset("mp2019")
    assert len(frame) == 84_295
    assert frame.columns.tolist() == [*SCHEMA, col.DELTA_E, col.BAND_GAP]
    assert frame[col.ID].is_unique and frame[col.FORMULA].is_unique
    assert frame[[col.DELTA_E, col.BAND_GAP]].notna().all().all()
    assert (
        frame.loc[frame[col.ID] == "mp-1080032", col.FORMULA].item() == "NaN"
    )  # a string, not a missing value
    assert frame[col.DELTA_E].quantile(0.1) == pytest.approx(-2.91, abs=0.01)


@pytest.mark.realdata
def test_piezo_and_phonons(real_data):
    piezo = data.load_dataset("piezo")
    assert len(piezo) == 471
    assert piezo.columns.tolist() == [*SCHEMA, col.DELTA_E, col.BAND_GAP]
    phonons = data.load_dataset("phonons")
    # 1,265 structures; polymorphs averaged into one row per formula (94 duplicates).
    assert len(phonons) == 1171 == data.DATASETS["phonons"].rows
    assert phonons.columns.tolist() == [*SCHEMA, col.PHDOS_PEAK, "n_polymorphs"]
    assert phonons[col.FORMULA].is_unique and phonons["n_polymorphs"].sum() == 1265
    assert phonons[col.PHDOS_PEAK].between(0, 5000).all()
    assert data.DATASETS["mp2019"].rows == 84_295 and data.DATASETS["piezo"].rows == 471


def test_aggregate_formulas_averages_polymorphs_and_keeps_first_id():
    frame = pd.DataFrame({col.ID: ["a", "b", "c"], col.FORMULA: ["SiO2", "NaCl", "SiO2"],
                          col.COMPOSITION: ["SiO2", "NaCl", "Si2O4"], "y": [1.0, 5.0, 3.0]})
    out = data.aggregate_formulas(frame, ("y",))
    assert out[col.ID].tolist() == ["a", "b"]
    assert out["y"].tolist() == [2.0, 5.0] and out["n_polymorphs"].tolist() == [2, 1]


@pytest.mark.realdata
def test_mirror_copy_in_repo_data_folder_is_found(real_data, tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV)
    local = tmp_path / "repo-data"
    (local / "matminer").mkdir(parents=True)
    shutil.copy(real_data / "matminer" / "matbench_phonons.json.gz", local / "matminer")
    monkeypatch.setattr(data, "local_data_dir", lambda: local)
    assert data.fetch("matbench_phonons", download=False).parent == local / "matminer"


def _write_table(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_user_csv_is_a_data_set_with_counted_bad_formulas(tmp_path):
    formulas = ["NaCl", "Fe2O3", "SiO2", "GaAs", "MgO", "TiO2", "Al2O3", "ZnS", "CuO", "LiF"]
    rows = {"formula": [f"{f}" for f in formulas * 12] + ["Xx2O", "not a formula"],
            "band_gap": [float(i % 7) for i in range(122)], "note": ["x"] * 122}
    # 120 valid rows but only 10 distinct formulas: too few after averaging polymorphs.
    with pytest.raises(ValueError, match="10 usable rows.*at least 100"):
        data.user_dataset(_write_table(tmp_path / "few.csv", rows), "band_gap")
    many = [f"Na{i}Cl{i + 1}" for i in range(1, 131)] + ["Xx2O", "not a formula"]
    path = _write_table(tmp_path / "table.csv",
                        {"formula": many, "band_gap": [0.1 * i for i in range(132)],
                         "note": ["x"] * 132})
    with pytest.warns(UserWarning, match=r"dropped 2 malformed formula\(s\) \('Xx2O'"):
        info = data.check_dataset_name(path, "band_gap")
    assert info.rows == 130 and info.default_target == "band_gap" and len(info.sha256) == 64
    frame = data.load_dataset(path, target="band_gap")
    assert frame.columns.tolist()[:4] == [*SCHEMA, "band_gap"] and len(frame) == 130
    assert frame[col.ID].iloc[0] == "row-0"


def test_user_csv_bad_inputs_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*formula column"):
        data.check_dataset_name(str(tmp_path / "missing.csv"), "y")
    path = _write_table(tmp_path / "nof.csv", {"comp": ["NaCl"], "y": [1.0]})
    with pytest.raises(ValueError, match=r"no formula column; its columns are \['comp', 'y'\]"):
        data.check_dataset_name(path, "y")
    path = _write_table(tmp_path / "t.csv", {"formula": ["NaCl", "KCl"], "y": [1.0, 2.0],
                                             "phase": ["a", "b"]})
    with pytest.raises(ValueError, match="no column 'gap'"):
        data.check_dataset_name(path, "gap")
    with pytest.raises(ValueError, match="'phase' of t.csv is not numeric.*Choose a numeric "
                                         "column: y"):
        data.check_dataset_name(path, "phase")
    with pytest.raises(ValueError, match="say which column to learn.*numeric columns: y"):
        data.check_dataset_name(path, None)
    with pytest.raises(ValueError, match="unknown data set 'table.txt'.*CSV"):
        data.check_dataset_name("table.txt")


@pytest.mark.realdata
def test_download_from_a_mirror_url_end_to_end_and_a_corrupted_copy_fails(real_data, tmp_path,
                                                                           monkeypatch):
    """A loopback HTTP server serves the mirror: the download is hash-checked and atomic, and a
    corrupted copy on the server is refused without leaving a file behind."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    (served / "matminer").mkdir(parents=True)
    shutil.copy(real_data / "matminer" / "matbench_phonons.json.gz", served / "matminer")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv(data.DATA_ENV)
    monkeypatch.setenv(data.URL_ENV, f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(data, "local_data_dir", lambda: tmp_path / "downloads")
    try:
        path = data.fetch("matbench_phonons")
        assert path == tmp_path / "downloads" / "matminer" / "matbench_phonons.json.gz"
        assert len(data.load_dataset("phonons")) == 1171
        path.unlink()
        blob = served / "matminer" / "matbench_phonons.json.gz"
        blob.write_bytes(blob.read_bytes()[:-100])  # truncated on the server
        with pytest.raises(data.DataFileError, match="sha256"):
            data.fetch("matbench_phonons")
        assert not [p for p in (tmp_path / "downloads").rglob("*") if p.is_file()]
    finally:
        server.shutdown()


def test_atomic_write_replaces_only_on_success_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "cache" / "values.json"
    with files.atomic_write(target) as tmp:
        tmp.write_text("first")
        assert not target.exists(), "the file appeared before the block ended"
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), files.atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "first", "a failed write replaced the file"
    assert [p.name for p in target.parent.iterdir()] == ["values.json"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_reduced_formulas_are_cached_on_disk_and_match_pymatgen(tmp_path, monkeypatch):
    from pymatgen.core import Composition

    monkeypatch.setenv("CALKIT_CACHE", str(tmp_path))
    formulas = ["Fe4O6", "NaCl", "Xx2", "", "Li2 O1", "H2O"]
    first = data.reduced_formulas(formulas)
    assert first == ["Fe2O3", "NaCl", None, None, "Li2O", "H2O"]
    assert first[0] == Composition("Fe4O6").reduced_formula
    cached = list((tmp_path / "formulas").glob("*.txt.gz"))
    assert len(cached) == 1
    monkeypatch.setattr(data, "_REDUCED_FORMULAS", {})  # a new process: only the disk remains
    monkeypatch.setattr(data, "_reduced_formula", lambda f: pytest.fail("parsed again"))
    assert data.reduced_formulas(formulas) == first
    # A truncated cache file is not trusted: it is recomputed.
    with gzip.open(cached[0], "wt") as handle:
        handle.write("Fe2O3")
    monkeypatch.setattr(data, "_REDUCED_FORMULAS", {})
    calls = []
    monkeypatch.setattr(data, "_reduced_formula", lambda f: calls.append(f) or "X")
    assert data.reduced_formulas(formulas) == ["X"] * len(formulas) and len(calls) == 6
