"""No result number is typed by hand in the book's prose: results come from the records.

A result number here is a decimal with three or more digits after the point (losses, MAEs) or
a percentage with a decimal (relative changes). In ``book/*.md`` and the notebooks' markdown,
each must be a ``{glue}`` reference, unless its line quotes the paper or another source (it
names the paper, the authors or matbench) or it is a documented constant listed below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_NUMBER = re.compile(r"(?<![\w.])[+\-−]?\d+\.\d+\s?%|(?<![\w.])\d+\.\d{3,}(?![\w.])")
QUOTING = re.compile(r"paper|authors|matbench|their (table|log|code)|research code|"
                     r"quoted section", re.I)
CONSTANTS = {"0.999"}  # the EMA decay, a setting
GLUE = re.compile(r"\{glue(:text)?\}`[^`]*`")


def _under_headings(where: str, text: str) -> list[tuple[str, int, str]]:
    """Lines with their section: a section whose heading quotes a source quotes throughout."""
    out, quoting = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            quoting = bool(QUOTING.search(line))
        out.append((where, i, "(quoted section) " + line if quoting else line))
    return out


def prose_lines() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted((ROOT / "book").glob("*.md")):
        out += _under_headings(path.name, path.read_text())
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for k, cell in enumerate(cells):
            if cell["cell_type"] == "markdown":
                out += _under_headings(f"{path.name} cell {k}", "".join(cell["source"]))
    return out


def hand_typed(line: str) -> list[str]:
    """Result-like numbers of a prose line that are neither glued, quoted nor constants."""
    if QUOTING.search(line):
        return []
    return [m for m in RESULT_NUMBER.findall(GLUE.sub("", line)) if m not in CONSTANTS]


def test_the_detector_flags_typed_results_and_passes_glue_and_quotes():
    assert hand_typed("CAL's loss is 0.0931 on the covariate set") == ["0.0931"]
    assert hand_typed("a change of +7.8 % against the IR-net") == ["+7.8 %"]
    assert hand_typed("a change of {glue}`04_results.ipynb::cal_change` against it") == []
    assert hand_typed("the paper reports 0.1176 on the target set") == []
    assert hand_typed("EMA decay 0.999 from epoch 20, 15 % of rows, 2.91 eV/atom") == []


def test_no_result_number_is_typed_by_hand_in_the_book():
    found = [f"{where}:{i}: {nums} in {line.strip()[:90]!r}"
             for where, i, line in prose_lines() if (nums := hand_typed(line))]
    assert not found, "type these through glue (or quote their source):\n" + "\n".join(found)
