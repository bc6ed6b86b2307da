"""The epoch-cost benchmark runs and its FLOP counts agree with the layer-shape formulas.

Nothing is timed here (the machine is noisy); the script's own output is checked for
its sections and for numbers that are well formed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.extended
def test_epoch_cost_quick_prints_efficiency_breakdown_and_ceiling():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "benchmarks/epoch_cost.py", "--quick"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    counts = re.search(r"plain ([\d.]+) GFLOP counted \(([\d.]+) analytic\); adversarial "
                       r"([\d.]+) GFLOP counted \(([\d.]+) analytic\)", out)
    plain, plain_formula, adversarial, adversarial_formula = map(float, counts.groups())
    assert abs(plain - plain_formula) <= 0.01 * plain_formula
    # The formula ignores the input gradients nobody needs; within 3 % of the count.
    assert abs(adversarial - adversarial_formula) <= 0.03 * adversarial_formula
    assert adversarial > 10 * plain
    efficiencies = [float(v) for v in re.findall(r"^(?:plain|CAL adversarial).*?([\d.]+)%$",
                                                  out, re.M)]
    # Efficiencies and ceilings are ratios of times measured at different moments: on a busy
    # machine they can pass 100 %, so only their presence and sign are checked here.
    assert len(efficiencies) == 2 and all(e > 0 for e in efficiencies)
    assert "where the time goes" in out and "ceiling:" in out
    for name in ("plain", "CAL adversarial"):
        line = re.search(rf"^{name}: matmuls alone at ([\d.]+)% .*ceiling ([\d.]+)%, "
                         rf"measured ([\d.]+)%: (.+)$", out, re.M)
        assert line is not None, out
        ceiling = float(line.group(2))
        assert ceiling > 0
        assert ("out of reach" in line.group(4)) == (ceiling < 70)


@pytest.mark.extended
def test_gpu_check_dry_run_exercises_every_step_on_cpu(tmp_path):
    """``gpu_check.sh --dry-run``: CPU, tiny sizes, every step (about 20 s here)."""
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path), "PYTHON": sys.executable}
    env.pop("CALKIT_TEST_DEVICE", None)
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [line.split("\t") for line in (tmp_path / "steps.tsv").read_text().splitlines()[1:]]
    assert [(name, rc) for name, rc, _ in steps] == [
        ("gpu_info", "0"), ("device_tests", "0"), ("epoch_time", "0"),
        ("sweep_authors_paper", "0"), ("sweep_paper_short", "0")]
    timing = json.loads((tmp_path / "epoch_time.json").read_text())
    assert timing["device"] == "cpu" and timing["plain_epoch_s"] > 0
    assert timing["cal_adversarial_epoch_s"] > 0
    # Targeted SAL steps take all N target rows: at N = 4 batches an epoch does several CAL
    # epochs' work (about 3.6x measured here; 1.5x leaves room for a noisy machine).
    assert timing["targeted_256_epoch_s"] > 0
    assert timing["targeted_1024_over_cal"] > 1.5
    assert "passed" in (tmp_path / "device_tests.log").read_text()
    assert "todo   cal-" in (tmp_path / "sweep_paper_short.log").read_text()
    # the replication at the paper's network size comes first (results chapter)
    assert "model_preset='paper'" in (tmp_path / "sweep_authors_paper.log").read_text()
    assert (tmp_path / "summary.txt").read_text().rstrip().endswith("gpu_check: OK")


@pytest.mark.extended
@pytest.mark.realdata
def test_matbench_anchor_scores_matbench_folds_beside_the_leaderboard(real_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "anchor.json"
    printed = subprocess.run(
        [sys.executable, "benchmarks/matbench_composition.py", "--tasks", "steels", "--folds", "0",
         "--models", "random forest", "--out", str(out), "--store", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "leaderboard: CrabNet" in printed and "leaderboard: Dummy (mean)" in printed
    import json

    folds = json.loads(out.read_text())["folds"]
    assert [(f["task"], f["model"], f["fold"]) for f in folds] == [("steels", "random forest", 0)]
    # Yield strengths span 1,006-2,510 MPa; the mean predictor averages 229.7 over the folds.
    assert 20 < folds[0]["mae"] < 229.7
    from calkit.anchor import anchor_table, load_anchor
    from calkit.matbench import TASKS

    steels = [t for t in TASKS if t.name == "steels"]
    table = anchor_table(load_anchor(tmp_path, steels), steels)
    assert table.loc["steels (MPa)", ("calkit", "forest")] == pytest.approx(folds[0]["mae"])
