from __future__ import annotations

import gzip
import shutil

import pandas as pd
import pytest

from calkit import columns as col
from calkit import data

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
    assert len(phonons) == 1265
    assert phonons.columns.tolist() == [*SCHEMA, col.PHDOS_PEAK]
    assert phonons[col.PHDOS_PEAK].between(0, 5000).all()


@pytest.mark.realdata
def test_mirror_copy_in_repo_data_folder_is_found(real_data, tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV)
    local = tmp_path / "repo-data"
    (local / "matminer").mkdir(parents=True)
    shutil.copy(real_data / "matminer" / "matbench_phonons.json.gz", local / "matminer")
    monkeypatch.setattr(data, "local_data_dir", lambda: local)
    assert data.fetch("matbench_phonons", download=False).parent == local / "matminer"
