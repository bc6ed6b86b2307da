from __future__ import annotations

import numpy as np
import pytest

from calkit import columns as col
from calkit import splits


def _blobs(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    core = rng.normal(0, 1, size=(n, 2))
    core[: n // 20] += 8  # a sparse outlying cluster
    return core


def test_kernel_density_ranks_outliers_lowest():
    points = _blobs()
    density = splits.kernel_density_2d(points)
    sparse = splits.lowest_fraction(density, 0.05)
    assert sparse[:100].mean() > 0.5  # most of the far cluster is picked
    assert sparse[100:].mean() < 0.05


def test_build_sets_flags_sizes_and_training_rule(small_frame):
    feats = np.random.default_rng(1).normal(size=(len(small_frame), 5))
    emb = _blobs(len(small_frame))
    sets = splits.build_sets(
        small_frame, feats, splits.SplitConfig(seed=3), relation_ids={"x-1", "x-2"}, embedding=emb
    )
    n = len(small_frame)
    assert sets[col.COVARIATE].sum() == round(0.15 * n)
    assert sets[col.PRIOR].sum() == round(0.10 * n)
    assert sets[col.RELATION].sum() == 2
    for name in col.RANDOM_SPLITS:
        assert sets[name].sum() == round(0.15 * n)
    others = sets.drop(columns=col.TRAIN)
    assert (sets[col.TRAIN] == ~others.any(axis=1)).all()
    # prior = lowest delta_e: every prior row is below every non-prior row.
    de = small_frame[col.DELTA_E]
    assert de[sets[col.PRIOR]].max() <= de[~sets[col.PRIOR]].min()
    gap = small_frame[col.BAND_GAP]
    assert gap[sets[col.GAP_PRIOR]].min() >= gap[~sets[col.GAP_PRIOR]].max()


def test_same_seed_same_sets_other_seed_other_splits(small_frame):
    feats = np.zeros((len(small_frame), 3))
    emb = _blobs(len(small_frame))
    a = splits.build_sets(small_frame, feats, splits.SplitConfig(seed=5), embedding=emb)
    b = splits.build_sets(small_frame, feats, splits.SplitConfig(seed=5), embedding=emb)
    c = splits.build_sets(small_frame, feats, splits.SplitConfig(seed=6), embedding=emb)
    assert a.equals(b)
    assert not a["Rsplt1"].equals(c["Rsplt1"])


def test_split_config_rejects_bad_values():
    with pytest.raises(ValueError, match="gap_prior_tail"):
        splits.SplitConfig(gap_prior_tail="middle")
    with pytest.raises(ValueError, match="covariate_fraction"):
        splits.SplitConfig(covariate_fraction=1.5)


def test_distance_to_training_detects_a_shifted_set(small_frame):
    rng = np.random.default_rng(0)
    n = len(small_frame)
    feats = rng.normal(size=(n, 4)).astype(np.float32)
    sets = splits.build_sets(small_frame, feats, splits.SplitConfig(seed=0), embedding=_blobs(n))
    shifted = sets[col.PRIOR].to_numpy()
    feats[shifted] += 4.0
    table = splits.distance_to_training(feats, sets, k=5)
    assert table.loc[col.TRAIN, "ratio_to_train"] == pytest.approx(1.0)
    assert table.loc[col.PRIOR, "ratio_to_train"] > 2.0
    assert table.loc["Rsplt1", "ratio_to_train"] < table.loc[col.PRIOR, "ratio_to_train"]


def test_size_table_has_paper_column(small_frame):
    sets = splits.build_sets(
        small_frame, np.zeros((len(small_frame), 2)), embedding=_blobs(len(small_frame))
    )
    table = splits.size_table(sets)
    assert table.loc[col.PRIOR, "paper n"] == 8_381
    assert table.loc[col.TRAIN, "n"] == sets[col.TRAIN].sum()


def test_save_sets_writes_flags_and_parameters(tmp_path, small_frame):
    sets = splits.build_sets(
        small_frame, np.zeros((len(small_frame), 2)), embedding=_blobs(len(small_frame))
    )
    path = tmp_path / "sets.csv.gz"
    splits.save_sets(sets, splits.SplitConfig(), path)
    assert path.is_file() and path.with_suffix(".json").is_file()
