"""tools/page_check.py on two hand-written pages: it finds raw TeX and a table wider than the
column, and saves the screenshots it is asked for (skips without Chromium)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from page_check import (  # noqa: E402
    check_book,
    chromium_binary,
    machine_paths_in,
    page_failures,
)

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ margin: 0 }} article.bd-article {{ width: 700px; padding: 0 20px }}</style>
</head><body><main><article class="bd-article">{body}</article></main></body></html>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if chromium_binary() is None:
        pytest.skip("Chromium is not installed: apt-get install -y chromium")
    html = tmp_path_factory.mktemp("html")
    (html / "book").mkdir()
    (html / "notebooks").mkdir()
    wide = "<table><thead><tr>" + "".join(f"<th>column {i} header</th>" for i in range(12)) \
        + "</tr></thead><tbody><tr>" + "<td>1.234567</td>" * 12 + "</tr></tbody></table>"
    narrow = "<table><thead><tr><th>claim</th><th>verdict</th></tr></thead></table>"
    elided = ("<table><thead><tr><th></th><th>theirs</th></tr></thead><tbody>"
              + "".join(f"<tr><th>{h}</th><td>0.1</td></tr>" for h in ("a", "...", "z"))
              + "</tbody></table>")
    (html / "book" / "intro.html").write_text(PAGE.format(
        title="intro", body=r"<p>Inline <span class='math'>\(\frac{a}{b}\)</span> unrendered.</p>"
                            r"<pre>\frac{in code} is fine</pre>"
                            f"<p>read from {ROOT}/results/cpu (a leaked path)</p>"))
    (html / "notebooks" / "04_results.html").write_text(PAGE.format(
        title="results", body=f"<section><h2>Claims</h2>{narrow}{wide}"
                              f"<details><summary>detail</summary>{wide}{elided}</details>"
                              f"</section><section><h2>Replication</h2>{elided}</section>"))
    shots = tmp_path_factory.mktemp("shots")
    return check_book(html, shots, width=1280), shots


def test_raw_tex_outside_code_is_reported(report):
    pages, _ = report
    intro = pages["book/intro.html"]
    assert len(intro["raw_tex"]) == 1 and "frac" in intro["raw_tex"][0]
    assert any(line.startswith("raw TeX visible") for line in page_failures(intro))


def test_a_table_wider_than_the_column_is_reported_with_its_widths(report):
    pages, _ = report
    results = pages["notebooks/04_results.html"]
    assert results["column_width"] == pytest.approx(700, abs=1)
    assert [t["index"] for t in results["wide_tables"]] == [1]  # not the folded one
    assert results["tables"] == 3 and results["folded_tables"] == 2
    wide = results["wide_tables"][0]
    assert wide["width"] > 700 and wide["section"] == "Claims"
    assert wide["header"].startswith("column 0 header | column 1 header")
    line = next(x for x in page_failures(results) if x.startswith("table 1"))
    assert "px wide in a 700 px column" in line


def test_screenshots_of_the_intro_and_results_pages(report):
    pages, shots = report
    saved = sorted(p.name for p in shots.glob("*.png"))
    assert saved == ["book_intro.png", "notebooks_04_results.png"]
    assert all((shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in saved)


def test_an_absolute_path_of_this_machine_is_reported(report):
    pages, _ = report
    intro = pages["book/intro.html"]
    assert len(intro["absolute_paths"]) == 1 and "/results/cpu" in intro["absolute_paths"][0]
    assert any(line.startswith("absolute path") for line in page_failures(intro))
    assert not pages["notebooks/04_results.html"]["absolute_paths"]


def test_a_path_counts_only_as_a_folder():
    assert machine_paths_in("see /root/x and /roots", ["/root"]) == ["see /root/x and /roots"]
    assert machine_paths_in("see /roots only", ["/root"]) == []


def test_a_visible_table_with_elided_rows_is_reported_and_a_folded_one_is_not(report):
    pages, _ = report
    results = pages["notebooks/04_results.html"]
    assert [t["index"] for t in results["elided_tables"]] == [4]
    line = next(x for x in page_failures(results) if "elides rows" in x)
    assert line.startswith("table 4 (theirs") and "section 'Replication'" in line
    assert "display.max_rows" in line
