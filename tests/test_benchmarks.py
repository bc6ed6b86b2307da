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

ROOT = Path(__file__).resolve().parents[1]


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
    assert len(efficiencies) == 2 and all(0 < e <= 100 for e in efficiencies)
    assert "where the time goes" in out and "ceiling:" in out
    for name in ("plain", "CAL adversarial"):
        line = re.search(rf"^{name}: matmuls alone at ([\d.]+)% .*ceiling ([\d.]+)%, "
                         rf"measured ([\d.]+)%: (.+)$", out, re.M)
        assert line is not None, out
        ceiling = float(line.group(2))
        assert 0 < ceiling <= 100
        assert ("out of reach" in line.group(4)) == (ceiling < 70)
