"""The README's "own data" example runs as written (on a small synthetic table)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd


def test_readme_own_data_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example saves its model in the working directory
    readme = Path(__file__).resolve().parents[1] / "README.md"
    block = re.search(r"```python\n(.*?)```", readme.read_text(), re.S).group(1)
    rng = np.random.default_rng(0)
    formulas = ["NaCl", "KCl", "MgO", "CaO", "SrO", "BaO", "LiF", "NaF", "KBr", "RbI"] * 12
    my_table = pd.DataFrame(
        {"id": [f"m{i}" for i in range(len(formulas))], "formula": formulas,
         "y": rng.normal(size=len(formulas))}
    )
    block = block.replace("epochs=60", "epochs=2")
    namespace = {"my_table": my_table}
    exec(compile(block, "README.md", "exec"), namespace)
    predictions = namespace["model"].predict(namespace["X"])
    assert predictions.shape == (len(formulas),) and np.isfinite(predictions).all()
    assert (tmp_path / "model.calkit").is_file()


def test_start_page_three_line_example_runs():
    intro = Path(__file__).resolve().parents[1] / "book" / "intro.md"
    block = re.search(r"three lines.*?```python\n(.*?)```", intro.read_text(), re.S).group(1)
    assert len(block.strip().splitlines()) == 3
    rng = np.random.default_rng(0)
    formulas = ["NaCl", "KCl", "MgO", "CaO", "SrO", "BaO", "LiF", "NaF", "KBr", "RbI"] * 12
    namespace = {"my_table": pd.DataFrame({"formula": formulas, "y": rng.normal(size=120)})}
    exec(compile(block.replace("epochs=60", "epochs=2"), "intro.md", "exec"), namespace)
    predictions = namespace["model"].predict(namespace["X"])
    assert predictions.shape == (120,) and np.isfinite(predictions).all()
