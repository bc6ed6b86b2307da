"""The answer-first sentences (calkit.answer): numbers from the tables, in the README and intro."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calkit import answer
from calkit import columns as col

ROOT = Path(__file__).resolve().parents[1]
README_BLOCK = re.compile(r"<!-- answer:.*?-->\n(.*?)\n<!-- /answer -->", re.S)


# ------------------------------------------------------------------ doctored tables
def _headline() -> pd.DataFrame:
    """A headline claims table shaped like calkit.reporting.claims_table's."""
    rows = [
        ("CAL vs IR-net on covariate (UMAP sparse)", 0.018, 0.016, 0.008, 0.024, "holds", ""),
        ("CAL vs IR-net on prior (low delta_e)", -0.024, 0.228, 0.167, 0.292, "reversed", ""),
        ("CAL vs IR-net on relation (piezo)", -0.070, 0.080, 0.033, 0.129, "reversed", ""),
        ("CAL vs IR-net on validation", 0.025, 0.012, -0.01, 0.03, "not resolved", ""),
        ("targeted CAL vs fine-tuning on covariate (UMAP sparse), N=1024", -0.12, -0.069,
         -0.093, -0.044, "holds", ""),
        ("targeted CAL vs fine-tuning on prior (low delta_e), N=1024", -0.38, 179.7, 163.5,
         197.5, "withdrawn", "targeted CAL did not learn its 1,024 target rows in 10 of 10 seeds"),
    ]
    table = pd.DataFrame(rows, columns=["claim", "paper_change", "estimate", "low", "high",
                                        "verdict", "withdrawn"]).set_index("claim")
    table["n"] = 10
    return table


def _versus() -> pd.DataFrame:
    """A versus-baseline table shaped like calkit.reporting.versus_baseline_table's."""
    rows = []
    for set_name in (col.PRIOR, col.RELATION, "validation"):
        rows.append({"set": set_name, "method": "baseline", "rel": np.nan, "rel_low": np.nan,
                     "rel_high": np.nan, "p_value": np.nan, "n_pairs": np.nan})
        for method, rel, p in (("cal", 0.2, 0.001), ("balanced", -0.075, 0.0001),
                               ("ensemble", -0.01, 0.4)):
            low, high = (rel - 0.02, rel + 0.02) if p < 0.05 else (rel - 0.05, rel + 0.05)
            rows.append({"set": set_name, "method": method, "rel": rel, "rel_low": low,
                         "rel_high": high, "p_value": p, "n_pairs": 5.0})
    return pd.DataFrame(rows).set_index(["set", "method"])


def _flags() -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples([("ensemble", col.PRIOR), ("ensemble", col.RELATION),
                                       ("ensemble", "val")], names=["method", "set"])
    return pd.DataFrame({"auroc mean": [0.66, 0.71, np.nan],
                         "confident half MAE mean": [0.3, 0.1, 0.05],
                         "uncertain half MAE mean": [0.4, 0.2, 0.1]}, index=index)


def _number(pattern: str, text: str) -> int:
    """The count matched by ``pattern``'s group ``(\\d+)``, where "none" (or "None") is 0."""
    match = re.search(pattern.replace(r"(\d+)", r"(\d+|[Nn]one)"), text)
    assert match, (pattern, text)
    return 0 if match.group(1).lower() == "none" else int(match.group(1))


def _assert_counts_match(sentences: dict[str, str], headline: pd.DataFrame) -> None:
    counts = headline["verdict"].value_counts()
    assert _number(r"Of the paper's (\d+) headline claims", sentences["holds"]) == len(headline)
    assert _number(r"(\d+) holds?\b", sentences["holds"]) == counts.get("holds", 0)
    assert _number(r"^(\d+) (?:is|are) reversed", sentences["reversed"]) == \
        counts.get("reversed", 0)
    if counts.get("withdrawn", 0):
        assert _number(r"^(\d+) (?:is|are) withdrawn", sentences["withdrawn"]) == \
            counts["withdrawn"]
    else:
        assert sentences["withdrawn"].startswith("None is withdrawn")
    if counts.get("not resolved", 0):
        assert _number(r"(\d+) (?:is|are) not resolved", sentences["withdrawn"]) == \
            counts["not resolved"]
    # Every judged claim's estimate is quoted in the sentence of its verdict.
    for claim, row in headline.iterrows():
        if row["verdict"] in ("holds", "reversed"):
            assert answer._change(row["estimate"]) in sentences[row["verdict"]], claim


def test_sentences_quote_the_tables_counts_and_estimates():
    headline = _headline()
    sentences = answer.claims_sentences(headline)
    assert set(sentences) == {"holds", "reversed", "withdrawn"}
    _assert_counts_match(sentences, headline)
    assert "2 hold:" in sentences["holds"] and "+1.6 %" in sentences["holds"]
    assert "covariate with 1,024 target rows (-6.9 %)" in sentences["holds"]
    assert sentences["reversed"].startswith("2 are reversed: base CAL's loss is higher than the "
                                            "plain IR-net's on prior (+22.8 %) and relation")
    assert "where the paper reports it lower" in sentences["reversed"]
    assert "did not learn its 1,024 target rows" in sentences["withdrawn"]
    assert "1 is not resolved" in sentences["withdrawn"]
    assert all(s.endswith(".") and (s[0].isupper() or s[0].isdigit()) for s in sentences.values())


def test_a_method_name_ending_in_a_parenthesis_reads_as_the_loss_of_it():
    headline = _headline().rename(index={
        "targeted CAL vs fine-tuning on covariate (UMAP sparse), N=1024":
            "targeted CAL (recipe chosen on held-out rows) vs fine-tuning on covariate "
            "(UMAP sparse), N=1024"})
    sentences = answer.claims_sentences(headline)
    _assert_counts_match(sentences, headline)
    text = " ".join(sentences.values())
    assert ")'s" not in text
    assert "the loss of targeted CAL (recipe chosen on held-out rows) is" in text


def test_a_changed_verdict_changes_the_sentences():
    before = answer.claims_sentences(_headline())
    doctored = _headline()
    doctored.loc["CAL vs IR-net on prior (low delta_e)", "verdict"] = "holds"
    after = answer.claims_sentences(doctored)
    assert after["holds"] != before["holds"] and after["reversed"] != before["reversed"]
    _assert_counts_match(after, doctored)
    assert "3 hold:" in after["holds"] and "prior (+22.8 %)" in after["holds"]
    assert after["reversed"].startswith("1 is reversed") and "prior" not in after["reversed"]
    doctored.loc[doctored["verdict"] == "withdrawn", ["verdict", "withdrawn"]] = ["holds", ""]
    assert answer.claims_sentences(doctored)["withdrawn"] == "None is withdrawn; 1 is not resolved."
    doctored = doctored.assign(verdict="not resolved")
    nothing = answer.claims_sentences(doctored)
    assert nothing["holds"].endswith("none holds.") and nothing["reversed"] == "None is reversed."
    _assert_counts_match(nothing, doctored)


def test_instead_names_the_methods_resolved_lower_on_an_ood_set():
    text = answer.instead_sentences(_versus(), _flags())["instead"]
    assert text.startswith("To lower the loss out of distribution, use Balanced MSE: its loss is "
                           "lower than the plain IR-net's on prior (-7.5 %) and relation (-7.5 %)")
    assert "validation" not in text.split(".")[0].split("(5 paired")[0]
    assert "Holm over 9 comparisons" in text and "(base CAL included)" in text
    assert "deep ensemble's spread" in text and "AUROC of 0.66 to 0.71" in text
    # Set labels (as notebook 06 shows its flag table) give the same sentence.
    labelled = _flags().rename(index=col.set_label, level=1)
    assert answer.instead_sentences(_versus(), labelled)["instead"] == text


def test_instead_ignores_validation_rows_and_a_spread_no_better_than_chance():
    flags = _flags()
    flags.loc[("ensemble", "val"), ["confident half MAE mean", "uncertain half MAE mean"]] = [1, 0]
    assert "confident half" not in answer.instead_sentences(_versus(), flags)["instead"]
    flags.loc[("ensemble", col.PRIOR), "auroc mean"] = 0.45
    text = answer.instead_sentences(_versus(), flags)["instead"]
    assert "better than chance" in text and "use the deep ensemble" not in text


def test_instead_follows_the_p_values_through_holm():
    doctored = _versus()
    doctored.loc[(slice(None), "balanced"), "p_value"] = 0.5
    text = answer.instead_sentences(doctored, pd.DataFrame())["instead"]
    assert text.startswith("No method of the baselines chapter (CAL, Balanced MSE and deep "
                           "ensemble) has a lower loss")
    assert "spread" not in text


def test_empty_tables_still_give_every_key():
    got = answer.answer_from_tables(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    assert set(got) == set(answer.ANSWER_KEYS) and all(got.values())


def test_glue_answer_glues_exactly_the_intros_keys(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda k, v, display=True: glued.__setitem__(k, v))
    out = answer.glue_answer(headline=_headline())
    assert tuple(out) == answer.GLUE_KEYS["04_results"] and glued == out
    glued.clear()
    out = answer.glue_answer(versus=_versus(), flags=_flags())
    assert tuple(out) == answer.GLUE_KEYS["06_baselines"] and glued == out
    assert all(isinstance(v, str) for v in glued.values())


def test_intro_opens_with_the_glued_answer():
    intro = (ROOT / "book" / "intro.md").read_text()
    first = intro.split(":::{admonition}", 1)[0]  # before the counts
    refs = re.findall(r"\{glue:text\}`\.\./notebooks/(\w+)\.ipynb::(answer_\w+):s`", first)
    expected = [(nb, key) for nb, keys in answer.GLUE_KEYS.items() for key in keys]
    assert sorted(refs) == sorted(expected)
    assert [key for _, key in refs] == [answer.GLUE_PREFIX + k for k in answer.ANSWER_KEYS]


# ------------------------------------------------------------------ the committed records
@pytest.fixture(scope="module")
def committed():
    if not os.environ.get("CALKIT_DATA"):
        pytest.skip("CALKIT_DATA is not set to the data mirror")
    tables = answer.committed_tables("cpu", results_root=ROOT / "results",
                                     grids_dir=ROOT / "grids")
    if tables.headline.empty:
        pytest.skip("no committed cpu records")
    return tables


def test_committed_answer_numbers_equal_the_claims_tables(committed):
    sentences = answer.answer_from_tables(committed.headline, committed.versus, committed.flags)
    _assert_counts_match(sentences, committed.headline)
    lower = committed.versus.dropna(subset=["rel"])
    resolved = (lower["p_holm"] < 0.05) & ((lower["rel_high"] < 0) | (lower["rel_low"] > 0))
    best = lower[resolved & (lower["rel"] < 0)
                 & (lower.index.get_level_values("set") != "validation")]
    for (set_name, _method), row in best.iterrows():  # every resolved-lower OOD cell is quoted
        assert answer._change(row["rel"]) in sentences["instead"], set_name


def test_readme_opens_with_the_committed_answer(committed):
    readme = (ROOT / "README.md").read_text()
    title, rest = readme.split("\n", 1)
    assert title.startswith("# ") and rest.lstrip().startswith("<!-- answer:")
    block = README_BLOCK.search(readme)
    assert block, "README.md lost its <!-- answer: ... --> block"
    paragraphs = block.group(1).split("\n\n")
    got = tuple(" ".join(p.split()) for p in paragraphs)
    assert got == answer.readme_paragraphs(committed), (
        "README.md's answer is stale: run `python -m calkit.answer` to rewrite it from the "
        "committed records")


def test_rewrite_readme_replaces_only_the_answer_block():
    tables = answer.AnswerTables(_headline(), _headline(), _versus(), _flags())
    readme = "# title\n<!-- answer: x -->\nold words\n<!-- /answer -->\n\nthe rest\n"
    new = answer.rewrite_readme(readme, tables, width=60)
    assert new.startswith("# title\n<!-- answer: x -->\n**Does CAL work")
    assert new.endswith("\n<!-- /answer -->\n\nthe rest\n") and "old words" not in new
    block = README_BLOCK.search(new).group(1)
    assert all(len(line) <= 60 for line in block.splitlines())
    assert tuple(" ".join(p.split()) for p in block.split("\n\n")) == \
        answer.readme_paragraphs(tables)
    assert answer.rewrite_readme(new, tables, width=60) == new
    with pytest.raises(ValueError, match="no <!-- answer"):
        answer.rewrite_readme("# title\nno block\n", tables)
