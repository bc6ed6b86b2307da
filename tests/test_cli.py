"""The command line: help, version, and a train / predict round trip on a composition CSV."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from calkit import __version__
from calkit.cli import main

ELEMENTS = ["Li", "Na", "Mg", "Al", "Si", "Ti", "Fe", "Ni", "Cu", "Zn", "O", "S", "N", "Cl"]


def composition_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Binary and ternary formulas with a property that depends on what they contain."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        picks = rng.choice(len(ELEMENTS), size=rng.integers(2, 4), replace=False)
        counts = rng.integers(1, 5, size=len(picks))
        formula = "".join(f"{ELEMENTS[p]}{c}" for p, c in zip(picks, counts, strict=True))
        value = float(np.dot(counts, picks) / counts.sum()) + 0.1 * rng.normal()
        rows.append({"formula": formula, "band_gap": value})
    return pd.DataFrame(rows).drop_duplicates("formula")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "calkit.cli", *args], capture_output=True,
                          text=True)


def test_help_and_version_exit_zero_on_stdout():
    helped = run("--help")
    assert helped.returncode == 0 and "train" in helped.stdout and "predict" in helped.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"calkit-ood {__version__}"
    assert run().returncode == 2  # no command: the usage, on stderr


def test_train_predict_round_trip_with_an_ensemble(tmp_path):
    table = composition_table()
    table.to_csv(tmp_path / "train.csv", index=False)
    new = composition_table(40, seed=1)[["formula"]]
    new.to_csv(tmp_path / "new.csv", index=False)
    model = tmp_path / "model.calkit"
    assert main(["train", str(tmp_path / "train.csv"), "--target", "band_gap", "--method",
                 "baseline", "--epochs", "5", "--n-models", "2", "-o", str(model),
                 "--quiet"]) == 0
    assert main(["predict", str(model), str(tmp_path / "new.csv"), "-o",
                 str(tmp_path / "pred.csv"), "--quiet"]) == 0
    out = pd.read_csv(tmp_path / "pred.csv")
    assert list(out.columns) == ["formula", "prediction", "prediction_std"]
    assert len(out) == len(new) and out["prediction"].notna().all()
    assert (out["prediction_std"] > 0).all()


@pytest.mark.parametrize("args, message", [
    (["--target", "gap"], "has no column 'gap'"),
    (["--target", "band_gap", "--method", "svm"], "unknown method 'svm'; valid: baseline, cal"),
    (["--target", "band_gap", "--formula-col", "name"], "no formula column"),
])
def test_train_errors_say_what_to_change(tmp_path, capsys, args, message):
    composition_table(120).to_csv(tmp_path / "t.csv", index=False)
    assert main(["train", str(tmp_path / "t.csv"), "-o", str(tmp_path / "m"), *args]) == 2
    assert message in capsys.readouterr().err


def test_malformed_formulas_stop_training_and_prediction_unless_asked(tmp_path, capsys):
    table = composition_table(150)
    table.loc[[4, 9], "formula"] = ["Xx3O", "not a formula"]
    table.to_csv(tmp_path / "t.csv", index=False)
    model = tmp_path / "m.calkit"
    base = ["train", str(tmp_path / "t.csv"), "--target", "band_gap", "--method", "baseline",
            "--epochs", "2", "-o", str(model), "--quiet"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "2 formula(s) could not be featurised" in err and "--drop-invalid" in err
    assert main([*base, "--drop-invalid"]) == 0
    assert main(["predict", str(model), str(tmp_path / "t.csv"), "-o",
                 str(tmp_path / "p.csv"), "--quiet"]) == 2
    assert "--on-invalid nan" in capsys.readouterr().err
    assert main(["predict", str(model), str(tmp_path / "t.csv"), "-o", str(tmp_path / "p.csv"),
                 "--quiet", "--on-invalid", "nan"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv", keep_default_na=True)["prediction"]
    assert pred.isna().sum() == 2 and pred.notna().sum() == len(table) - 2
