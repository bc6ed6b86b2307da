"""Smoke execution of every notebook (papermill, profile "smoke") and a smoke book build.

This is the check that no notebook can rot: each one runs end to end on a 3,000-row
subsample, and Sphinx builds the book from the executed copies with warnings as errors.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))

pytestmark = [pytest.mark.realdata, pytest.mark.notebooks, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory, _session_cache):
    import os

    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    out = tmp_path_factory.mktemp("book")
    env = {
        **os.environ,
        "CALKIT_RESULTS": str(out / "results"),
        "CALKIT_CACHE": str(_session_cache),
    }
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "build_book.py"),
            "--profile",
            "smoke",
            "--out",
            str(out),
        ],
        check=True,
        env=env,
        cwd=ROOT,
    )
    return out


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    assert NOTEBOOKS == ["01_data", "02_shifts", "03_training", "04_results", "05_phonons",
                         "06_baselines", "07_benchmark"]
    for name in NOTEBOOKS:
        assert f"notebooks/{name}" in toc


def test_source_notebooks_have_no_outputs_and_a_parameters_cell():
    import json

    import nbformat

    for name in NOTEBOOKS:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        # nbformat 4.5 wants a unique id on every cell; reading fills a missing one in silently
        # (with a warning in papermill's runs), so the file itself is checked.
        ids = [cell.get("id") for cell in json.loads(path.read_text())["cells"]]
        assert None not in ids and len(set(ids)) == len(ids), f"{name}: a cell id is missing"
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), name
        assert any("parameters" in c.metadata.get("tags", []) for c in code), name
        assert "google.colab" in code[0].source, (
            f"{name}: first code cell must be the Colab bootstrap"
        )


def test_colab_bootstrap_and_badges_come_from_one_repository_setting():
    """Every notebook's bootstrap cell and every intro badge is written from _config.yml's
    repository.url (tools/sync_colab.py), so the URL is one setting."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_colab.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    import yaml

    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert sum(url in p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")) == \
        len(NOTEBOOKS)


def test_smoke_book_pages_show_figures_and_colab_button(smoke_book):
    html = smoke_book / "html"
    assert (html / "index.html").is_file()
    for name in NOTEBOOKS:
        page = (html / "notebooks" / f"{name}.html").read_text()
        assert "colab.research.google.com/github/" in page, f"{name}: no Colab launch button"
        assert "Traceback" not in page, f"{name}: an error is rendered in the page"
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
        assert images, f"{name}: no figure rendered"
        for src in images:
            assert (html / "notebooks" / src).resolve().is_file(), src
    executed = smoke_book / "src" / "notebooks"
    assert sorted(p.stem for p in executed.glob("*.ipynb")) == NOTEBOOKS


def test_bad_papermill_parameter_fails_in_the_first_cell_with_valid_values(tmp_path):
    import os

    import papermill

    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "03_training.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"method": "adversarial", "profile": "smoke"},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(ROOT / "notebooks"),
        )
    assert "Valid methods: baseline, cal, targeted" in str(err.value)
    # It failed before any data was loaded: the first code cell after the parameters.
    assert err.value.exec_count <= 4


@pytest.mark.extended  # the runner's rebuild is unit-tested in test_runs; this is the notebook run
def test_finetune_notebook_runs_from_a_fresh_clone(tmp_path, _session_cache):
    """The newcomer's first fine-tune: no baseline record or checkpoint exists yet, so the
    baseline is trained first; then fine-tuning runs on the target rows."""
    import os

    import papermill

    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    os.environ["CALKIT_RESULTS"] = str(tmp_path / "results")
    try:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "03_training.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"method": "finetune", "target_set": "relation", "n_target": 16,
                        "profile": "smoke"},
            kernel_name="python3", progress_bar=False, cwd=str(ROOT / "notebooks"))
    finally:
        os.environ.pop("CALKIT_RESULTS")
    runs = sorted(p.name.split("-")[0] for p in (tmp_path / "results" / "smoke" / "runs").iterdir())
    assert runs == ["baseline", "finetune"]


def test_every_page_loads_cleanly_in_a_browser(smoke_book):
    """Headless Chromium opens every page at 1,280 px: no console errors, every image
    decodes, no code input is visible without a click on the notebook pages, MathJax comes
    from the build and leaves no raw TeX visible, no table of the results chapter is wider
    than its column, and the intro and results pages are saved as screenshots
    (``$CALKIT_SCREENSHOTS``, or the smoke build's ``screenshots/``)."""
    import os

    sys.path.insert(0, str(ROOT / "tools"))
    from page_check import SHOT_PAGES, check_book, chromium_binary, page_failures

    if chromium_binary() is None:
        pytest.skip("Chromium is not installed: on Debian run `apt-get install -y chromium` "
                    "(.ci/run does) to check the pages in a browser")
    shots = Path(os.environ.get("CALKIT_SCREENSHOTS") or smoke_book / "screenshots")
    report = check_book(smoke_book / "html", shots, width=1280)
    assert len(report) >= 10
    for page, info in report.items():
        assert not page_failures(info), (page, page_failures(info))
        if page.startswith("notebooks/"):
            assert info["inputs"] > 0 and info["visibleInputs"] == 0, (page, info)
    assert any(info["mathjax"] for info in report.values())  # some page has math
    assert report["notebooks/04_results.html"]["tables"] > 0
    for page in SHOT_PAGES:
        assert Path(report[page]["screenshot"]).stat().st_size > 10_000, page


@pytest.mark.extended  # the CSV paths are unit-tested in test_data; this is the notebook run
def test_training_notebook_runs_on_a_users_csv_and_bad_columns_fail_first(tmp_path):
    """Any composition table is a data set: notebook 03 trains on a CSV the test writes, and a
    wrong target column fails in the first cell with the table's columns."""
    import os

    import pandas as pd
    import papermill

    from calkit.data import load_dataset

    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    mp = load_dataset("mp2019").sample(600, random_state=0)
    table = pd.DataFrame({"formula": [*mp["formula"], "Qq3", "12"],
                          "band_gap": [*mp["band_gap"], 1.0, 2.0]})
    path = tmp_path / "some_table.csv"
    table.to_csv(path, index=False)
    env_before = os.environ.get("CALKIT_RESULTS")
    os.environ["CALKIT_RESULTS"] = str(tmp_path / "results")
    try:
        out = papermill.execute_notebook(
            str(ROOT / "notebooks" / "03_training.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"dataset": str(path), "target": "band_gap", "method": "baseline",
                        "profile": "smoke"},
            kernel_name="python3", progress_bar=False, cwd=str(ROOT / "notebooks"))
        with pytest.raises(papermill.PapermillExecutionError) as err:
            papermill.execute_notebook(
                str(ROOT / "notebooks" / "03_training.ipynb"), str(tmp_path / "bad.ipynb"),
                parameters={"dataset": str(path), "target": "gap", "profile": "smoke"},
                kernel_name="python3", progress_bar=False, cwd=str(ROOT / "notebooks"))
    finally:
        os.environ.pop("CALKIT_RESULTS")
        if env_before is not None:
            os.environ["CALKIT_RESULTS"] = env_before
    text = str(out.cells)
    assert "dropped 2 malformed formula(s)" in text
    runs = list((tmp_path / "results" / "smoke" / "runs").glob("baseline-*.json"))
    assert len(runs) == 1
    assert "has no column 'gap'; its columns are ['formula', 'band_gap']" in str(err.value)
    assert err.value.exec_count <= 4


@pytest.mark.extended
def test_shifts_and_training_notebooks_run_on_phonons(tmp_path):
    """Phonons end to end: its sets (no formation energy needed) and a CAL run, as papermill
    runs them from a fresh clone."""
    import os

    import papermill

    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    before = os.environ.get("CALKIT_RESULTS")
    os.environ["CALKIT_RESULTS"] = str(tmp_path / "results")
    try:
        for name, params in (("02_shifts", {}), ("03_training", {"method": "cal"})):
            papermill.execute_notebook(
                str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                parameters={"dataset": "phonons", "profile": "smoke", **params},
                kernel_name="python3", progress_bar=False, cwd=str(ROOT / "notebooks"))
    finally:
        os.environ.pop("CALKIT_RESULTS")
        if before is not None:
            os.environ["CALKIT_RESULTS"] = before
    # CAL and, for the cadence figure, CAL with the other w cadence.
    runs = list((tmp_path / "results" / "smoke" / "runs").glob("cal-*.json"))
    assert len(runs) == 2 and all('"dataset": "phonons"' in r.read_text() for r in runs)


def _build_book_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book", ROOT / "tools" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_book_build_starts_a_kernel_again_only_when_it_died_at_start(monkeypatch, tmp_path):
    import papermill

    book = _build_book_module()
    monkeypatch.setattr(book, "fold_parameters", lambda path: None)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise RuntimeError(book.KERNEL_DIED_AT_START)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    name, _ = book.execute_notebook(ROOT / "notebooks" / "04_results.ipynb", tmp_path, "smoke")
    assert name == "04_results.ipynb" and len(calls) == 2

    def broken(*args, **kwargs):
        calls.append(args[0])
        raise RuntimeError("Kernel died")  # mid-run: its cells may have written; no retry

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", broken)
    with pytest.raises(RuntimeError, match="Kernel died"):
        book.execute_notebook(ROOT / "notebooks" / "04_results.ipynb", tmp_path, "smoke")
    assert len(calls) == 1

    def always_dead(*args, **kwargs):
        calls.append(args[0])
        raise RuntimeError(book.KERNEL_DIED_AT_START)

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", always_dead)
    with pytest.raises(RuntimeError, match="kernel_info"):
        book.execute_notebook(ROOT / "notebooks" / "04_results.ipynb", tmp_path, "smoke")
    assert len(calls) == book.KERNEL_START_ATTEMPTS
