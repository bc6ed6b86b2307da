from __future__ import annotations

import pytest

from calkit import columns as col
from calkit import reporting


def _record(method, seed, losses, target=None, n=0):
    sets = {
        name: {"n": 10, "loss": v, "mae": 2 * v, "rmse": 3 * v, "r2": 0.5}
        for name, v in losses.items()
    }
    return {
        "run_id": f"{method}-{seed}-{target}-{n}",
        "config": {"method": method, "seed": seed, "target_set": target, "n_target": n},
        "metrics": {"ema": sets, "best": sets},
    }


def _base_losses(shift):
    out = {
        col.TRAIN: 0.01 + shift,
        col.COVARIATE: 0.1 + shift,
        col.PRIOR: 0.2 + shift,
        col.RELATION: 0.1 + shift,
        col.HIGH_GAP: 0.15 + shift,
    }
    out.update({name: 0.08 + shift for name in col.RANDOM_SPLITS})
    return out


def test_base_table_means_paper_column_and_noise_flag():
    records = [_record("baseline", s, _base_losses(0.001 * s)) for s in range(3)]
    records += [_record("cal", s, _base_losses(0.05 + 0.001 * s)) for s in range(3)]
    table = reporting.base_table(records)
    row = table.loc[col.SET_LABELS[col.PRIOR]]
    assert row["IR-net (ours)"].startswith("0.2010 ± 0.0010")
    assert row["IR-net (paper)"] == pytest.approx(0.1602)
    assert "within noise" not in row["CAL vs IR-net (ours)"]
    assert table.loc["validation", "IR-net (ours)"].startswith("0.0810")


def test_differences_inside_the_seed_spread_are_flagged():
    records = [_record("baseline", s, _base_losses(0.02 * s)) for s in range(3)]
    records += [_record("cal", s, _base_losses(0.001 + 0.02 * s)) for s in range(3)]
    table = reporting.base_table(records)
    assert "within noise" in table.loc[col.SET_LABELS[col.PRIOR], "CAL vs IR-net (ours)"]


def test_targeted_table_pairs_methods_and_paper_values():
    records = []
    for s in range(2):
        records.append(_record("finetune", s, {col.RELATION: 0.10 + 0.001 * s}, col.RELATION, 256))
        records.append(_record("targeted", s, {col.RELATION: 0.05 + 0.001 * s}, col.RELATION, 256))
    table = reporting.targeted_table(records)
    row = table.loc[(col.SET_LABELS[col.RELATION], 256)]
    assert row["improvement (ours)"] == "+49.8%"  # (0.1005 - 0.0505) / 0.1005
    assert row["fine-tune (paper)"] == pytest.approx(0.1176)


def test_ablation_table_has_ours_and_paper_rows():
    records = [_record("ps", s, _base_losses(0.0)) for s in range(2)]
    table = reporting.ablation_table(records)
    assert table.loc[("PS", "paper"), "training"] == "0.0204"
    assert table.loc[("PS", "ours"), "training"].startswith("0.0100")
