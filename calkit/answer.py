"""The answer first: "does CAL work, and what should I use instead?" in plain sentences.

The README and the book's first page open with three to five sentences written here from the
tables of the results and baselines chapters, so that their numbers are the records' and
follow them:

* ``holds``: which of the paper's headline claims hold (:func:`calkit.reporting.claims_table`,
  ``family="headline"``);
* ``reversed``: which are reversed;
* ``withdrawn``: which are withdrawn and why (and how many are not resolved);
* ``instead``: what a user should use out of distribution instead, from the baselines chapter
  (:func:`calkit.reporting.versus_baseline_table` and :func:`calkit.reporting.ood_flag_table`).

The sentence builders are pure functions of those tables (:func:`claims_sentences`,
:func:`instead_sentences`, :func:`answer_from_tables`); :func:`answer_sentences` computes the
tables from records, and :func:`glue_answer` glues the sentences into a notebook for the book
(the keys of :data:`GLUE_KEYS`). Only public names of :mod:`calkit.reporting` are used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit import reporting, stats
from calkit.methods import method_label

ANSWER_KEYS = ("holds", "reversed", "withdrawn", "instead")
"""The keys of an answer, in reading order."""

GLUE_PREFIX = "answer_"
"""The glue key of an answer key is ``GLUE_PREFIX + key`` (``answer_holds``, ...)."""

GLUE_KEYS = {
    "04_results": tuple(f"{GLUE_PREFIX}{k}" for k in ("holds", "reversed", "withdrawn")),
    "06_baselines": (f"{GLUE_PREFIX}instead",),
}
"""Which notebook glues which answer key (the book's first page pastes them from there)."""

_PROSE_NAMES = {"CAL": "base CAL", "IR-net": "the plain IR-net"}
_VALIDATION_ROWS = ("val", "validation", "validation rows", reporting.VALIDATION)
"""Names of the validation rows in :func:`calkit.reporting.ood_flag_table` (raw or as shown)."""
_CLAIM = re.compile(r"^(?P<b>.+?) vs (?P<a>.+?) on (?P<set>.+?)(?:, N=(?P<n>\d+))?$")


class AnswerTables(NamedTuple):
    """The tables the answer is written from.

    Attributes:
        headline: :func:`calkit.reporting.claims_table` with ``family="headline"``.
        claims: :func:`calkit.reporting.claims_table` over all claims (for the counts).
        versus: :func:`calkit.reporting.versus_baseline_table` of the baselines chapter.
        flags: :func:`calkit.reporting.ood_flag_table` of the baselines chapter.
    """

    headline: pd.DataFrame
    claims: pd.DataFrame
    versus: pd.DataFrame
    flags: pd.DataFrame


# ------------------------------------------------------------------ wording helpers
def _change(value: float) -> str:
    """A relative change for a sentence: percent, or the ratio where a percentage explodes."""
    if not np.isfinite(value):
        return "n/a"
    if -0.5 < value < 1.0:
        return f"{value * 100:+.1f} %"
    return f"{1 + value:.3g} times"


def _short_set(label: str) -> str:
    """``"prior (low delta_e)"`` -> ``"prior"``: the set's name without its explanation."""
    return re.sub(r"\s*\([^)]*\)$", "", label).strip()


def _listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _count(n: int, singular: str, plural: str) -> str:
    """``"1 holds"``, ``"3 hold"``; ``"none holds"`` for 0."""
    return f"{n or 'none'} {singular if n <= 1 else plural}"


def _prose(name: str) -> str:
    return _PROSE_NAMES.get(name, name)


def _possessive(name: str) -> str:
    """``"fine-tuning's"``; ``"that of X (...)"`` where a name ends in a parenthesis."""
    prose = _prose(name)
    return f"that of {prose}" if prose.endswith(")") else f"{prose}'s"


def _loss_of(name: str) -> str:
    """``"base CAL's loss"``; ``"the loss of X (...)"`` where a name ends in a parenthesis."""
    prose = _prose(name)
    return f"the loss of {prose}" if prose.endswith(")") else f"{prose}'s loss"


def _seeds(n: pd.Series) -> str:
    low, high = int(n.min()), int(n.max())
    return f"{low} paired seeds" if low == high else f"{low} to {high} paired seeds"


def _parse_claim(claim: str) -> tuple[str, str, str, int | None] | None:
    """``"targeted CAL vs fine-tuning on relation (piezo), N=256"`` -> its parts, or None."""
    match = _CLAIM.match(str(claim))
    if match is None:
        return None
    n = match.group("n")
    return match.group("b"), match.group("a"), _short_set(match.group("set")), \
        int(n) if n else None


def _where(set_name: str, n: int | None) -> str:
    return set_name if n is None else f"{set_name} with {n:,} target rows"


def _claim_groups(table: pd.DataFrame, paper_side: bool) -> str:
    """The claims of ``table`` as clauses grouped by comparison and direction.

    ``"base CAL's loss is higher than the plain IR-net's on prior (+22.8 %) and relation
    (+8.0 %)"``; with ``paper_side``, each clause adds the paper's direction where it differs.
    """
    groups: dict[tuple[str, str, str], list[str]] = {}
    loose: list[str] = []
    for claim, row in table.iterrows():
        parts = _parse_claim(str(claim))
        if parts is None:
            loose.append(f"{claim} ({_change(row['estimate'])})")
            continue
        b, a, set_name, n = parts
        direction = "lower" if row["estimate"] < 0 else "higher"
        groups.setdefault((b, a, direction), []).append(
            f"{_where(set_name, n)} ({_change(row['estimate'])})")
    clauses = []
    for (b, a, direction), items in groups.items():
        clause = f"{_loss_of(b)} is {direction} than {_possessive(a)} on {_listing(items)}"
        if paper_side:
            other = "higher" if direction == "lower" else "lower"
            clause += f", where the paper reports it {other}"
        clauses.append(clause)
    return "; ".join([*clauses, *loose])


# ------------------------------------------------------------------ the sentences
def claims_sentences(headline: pd.DataFrame) -> dict[str, str]:
    """What of the paper's headline claims holds, is reversed and is withdrawn.

    Args:
        headline: :func:`calkit.reporting.claims_table` with ``family="headline"``: index the
            claims (``"CAL vs IR-net on prior (low delta_e)"``), columns ``estimate``, ``n``,
            ``verdict`` and ``withdrawn`` (the reason, or "").

    Returns:
        One sentence each for ``holds``, ``reversed`` and ``withdrawn`` (the last also counts
        the claims that are not resolved), numbers from the table.
    """
    if headline is None or headline.empty:
        return {"holds": "No run records answer the paper's headline claims yet.",
                "reversed": "None is reversed yet.",
                "withdrawn": "None is withdrawn."}
    verdict = headline["verdict"]
    total = len(headline)
    judged = headline[verdict != "withdrawn"]
    seeds = _seeds(judged["n"] if len(judged) else headline["n"])
    holds = headline[verdict == "holds"]
    reversed_ = headline[verdict == "reversed"]
    withdrawn = headline[verdict == "withdrawn"]
    unresolved = int((verdict == "not resolved").sum())

    first = (f"Of the paper's {total} headline claims, tested in our runs on {seeds} with "
             f"Holm's correction over the {total}, {_count(len(holds), 'holds', 'hold')}")
    first += f": {_claim_groups(holds, paper_side=False)}, as the paper reports." if len(holds) \
        else "."
    second = _count(len(reversed_), "is reversed", "are reversed").capitalize()
    second += f": {_claim_groups(reversed_, paper_side=True)}." if len(reversed_) else "."
    if len(withdrawn):
        items = []
        for claim, row in withdrawn.iterrows():
            parts = _parse_claim(str(claim))
            what = (f"{_prose(parts[0])} against {_prose(parts[1])} on "
                    f"{_where(parts[2], parts[3])}" if parts else str(claim))
            reason = str(row.get("withdrawn", "") or "").strip()
            items.append(f"{what}, because {reason}" if reason else what)
        third = (f"{_count(len(withdrawn), 'is', 'are')} withdrawn, not judged: "
                 f"{'; '.join(items)}, so {'it says' if len(items) == 1 else 'they say'} "
                 "nothing about the method")
    else:
        third = "None is withdrawn"
    if unresolved:
        third += f"; {_count(unresolved, 'is', 'are')} not resolved"
    return {"holds": first, "reversed": second, "withdrawn": third[0].upper() + third[1:] + "."}


def _resolved_directions(versus: pd.DataFrame) -> pd.DataFrame:
    """The comparisons of ``versus`` judged by :func:`calkit.stats.directional_verdicts`.

    Holm runs over every compared row of the table (validation included), as in the table.
    """
    compared = versus.dropna(subset=["rel"]).reset_index()
    judged = stats.directional_verdicts(compared.rename(
        columns={"rel": "estimate", "rel_low": "low", "rel_high": "high"}))
    return judged


def instead_sentences(versus: pd.DataFrame, flags: pd.DataFrame) -> dict[str, str]:
    """What a user should use out of distribution instead, from the baselines chapter.

    Args:
        versus: :func:`calkit.reporting.versus_baseline_table`: rows ``(set, method)``,
            columns ``rel``, ``rel_low``, ``rel_high``, ``p_value`` and ``n_pairs``.
        flags: :func:`calkit.reporting.ood_flag_table`: rows ``(method, set)``, columns
            ``auroc mean``, ``confident half MAE mean`` and ``uncertain half MAE mean``.

    Returns:
        ``{"instead": ...}``: one sentence on the methods whose loss is resolved lower than
        the plain IR-net's on an OOD set (Holm over the table, the rule of
        :func:`calkit.stats.directional_verdicts`), and one on the spread that best flags OOD
        rows among the methods never resolved worse than the IR-net on an OOD set.
    """
    if versus is None or versus.empty:
        return {"instead": "The baselines chapter has no records yet, so it recommends nothing."}
    judged = _resolved_directions(versus)
    ood = judged[judged["set"] != reporting.VALIDATION]
    order = list(dict.fromkeys(judged["method"]))
    lower = ood[ood["verdict"] == "lower"]
    higher = ood[ood["verdict"] == "higher"]
    context = f"({_seeds(judged['n_pairs'])}, Holm over {len(judged)} comparisons)"
    if len(lower):
        parts = []
        for method in [m for m in order if m in set(lower["method"])]:
            rows = lower[lower["method"] == method]
            items = [f"{_short_set(col.set_label(s))} ({_change(e)})"
                     for s, e in zip(rows["set"], rows["estimate"], strict=True)]
            worse = higher[higher["method"] == method]
            text = f"{method_label(method)} is lower on {_listing(items)}"
            if len(set(lower["method"])) == 1:
                text = f"its loss is lower than the plain IR-net's on {_listing(items)}"
            if len(worse):
                text += (" but higher on "
                         + _listing([_short_set(col.set_label(s)) for s in worse["set"]]))
            elif len(ood[ood["method"] == method]) > len(rows):
                text += " and higher on no set"
            parts.append(text)
        names = [method_label(m) for m in order if m in set(lower["method"])]
        others = [method_label(m) for m in order if m not in set(lower["method"])]
        against = "" if len(names) == 1 else "against the plain IR-net, "
        loss = (f"To lower the loss out of distribution, use {_listing(names)}: {against}"
                f"{'; '.join(parts)} {context}")
        if others:
            cal = " (base CAL included)" if "cal" in order and "cal" not in set(lower["method"]) \
                else ""
            loss += f", and no other method of the baselines chapter{cal} is lower on any OOD set"
        loss += "."
    else:
        loss = ("No method of the baselines chapter (" + _listing([method_label(m) for m in order])
                + f") has a lower loss than the plain IR-net on any OOD set {context}, so the "
                "plain IR-net is as good a choice as any of them.")
    return {"instead": loss + _flag_sentence(flags, set(higher["method"]))}


def _flag_sentence(flags: pd.DataFrame, worse: set[str]) -> str:
    """`` To tell ...``: the spread that best flags OOD rows, or "" without flags."""
    if flags is None or flags.empty or "auroc mean" not in flags:
        return ""
    candidates = []
    for method, group in flags.groupby(level="method", sort=False):
        auroc = group["auroc mean"].dropna()
        if len(auroc):
            candidates.append((method in worse, -auroc.min(), method, auroc, group))
    if not candidates:
        return ""
    _, _, method, auroc, group = min(candidates, key=lambda c: (c[0], c[1]))
    span = f"an AUROC of {auroc.min():.2f} to {auroc.max():.2f} (0.5 is chance)"
    if auroc.min() <= 0.5:
        return (" No model's spread tells OOD rows from validation rows better than chance on "
                f"every OOD set (the best, the {method_label(method)}'s, has {span}).")
    text = (f" To tell when a prediction is out of distribution, use the {method_label(method)}'s "
            f"spread: it tells OOD rows from validation rows with {span}")
    is_ood = np.array([s not in _VALIDATION_ROWS for _, s in group.index], dtype=bool)
    wrong = group[(group["confident half MAE mean"] > group["uncertain half MAE mean"]).to_numpy()
                  & is_ood]
    if len(wrong):
        sets = _listing([_short_set(col.set_label(s)) for _, s in wrong.index])
        text += f", though on {sets} its most confident half has the larger error"
    return text + "."


def answer_from_tables(headline: pd.DataFrame, versus: pd.DataFrame,
                       flags: pd.DataFrame) -> dict[str, str]:
    """The answer's sentences from the chapters' tables, keyed by :data:`ANSWER_KEYS`."""
    return {**claims_sentences(headline), **instead_sentences(versus, flags)}


def answer_sentences(records: Sequence[dict], baseline_records: Sequence[dict]
                     ) -> dict[str, str]:
    """The answer's sentences from run records.

    Args:
        records: The results chapter's records (current, clean protocol, one data set:
            ``select_records(partition_records(load_records(profile)).current, ...)``).
        baseline_records: The baselines chapter's records (:func:`baselines_chapter_records`).

    Returns:
        One entry per key of :data:`ANSWER_KEYS`, each one or two plain sentences.
    """
    records, baseline_records = list(records), list(baseline_records)
    return answer_from_tables(reporting.claims_table(records, family="headline"),
                              reporting.versus_baseline_table(baseline_records),
                              reporting.ood_flag_table(baseline_records))


def answer_text(answer: Mapping[str, str]) -> str:
    """The answer as one paragraph, in the order of :data:`ANSWER_KEYS`."""
    return " ".join(answer[k] for k in ANSWER_KEYS if answer.get(k))


def counts_sentence(headline: pd.DataFrame, claims: pd.DataFrame) -> str:
    """The verdict counts of both Holm families, for after the answer."""
    def counts(table: pd.DataFrame) -> str:
        found = table["verdict"].value_counts() if len(table) else pd.Series(dtype=int)
        return ", ".join(f"{int(found.get(v, 0))} {w}" for v, w in
                         (("holds", "hold"), ("reversed", "reversed"),
                          ("not resolved", "not resolved"), ("withdrawn", "withdrawn")))

    return (f"In counts: of the {len(headline)} headline claims (Holm over those), "
            f"{counts(headline)}; of all {len(claims)} claims, the paper's ablations included "
            f"(Holm over all of them), {counts(claims)}.")


README_BLOCK = re.compile(r"(<!-- answer:.*?-->\n)(.*?)(\n<!-- /answer -->)", re.S)
"""The README's answer block between its two markers (the text is group 2)."""

README_QUESTION = "**Does CAL work, and what should you use instead?** "


def readme_paragraphs(tables: AnswerTables) -> tuple[str, str]:
    """The README answer block's two paragraphs, unwrapped: the answer and the counts."""
    sentences = answer_from_tables(tables.headline, tables.versus, tables.flags)
    return (README_QUESTION + answer_text(sentences),
            counts_sentence(tables.headline, tables.claims))


def rewrite_readme(readme: str, tables: AnswerTables, width: int = 100) -> str:
    """``readme`` with its answer block rewritten from ``tables``, wrapped at ``width``.

    Raises:
        ValueError: If the README has no ``<!-- answer: ... --> ... <!-- /answer -->`` block.
    """
    import textwrap

    if not README_BLOCK.search(readme):
        raise ValueError("README.md has no <!-- answer: ... --> ... <!-- /answer --> block; "
                         "restore the two markers around the answer, then run this again.")
    text = "\n\n".join(textwrap.fill(p, width, break_on_hyphens=False)
                        for p in readme_paragraphs(tables))
    return README_BLOCK.sub(lambda m: m.group(1) + text + m.group(3), readme, count=1)


# ------------------------------------------------------------------ records and glue
def baselines_chapter_records(current: Sequence[dict], grid: str | Path) -> list[dict]:
    """The records the baselines chapter reads (:func:`calkit.reporting.baseline_records`)."""
    from calkit.sweep import load_grid

    return list(reporting.baseline_records(list(current), {c.seed for c in load_grid(grid)}))


def committed_tables(profile: str = "cpu", results_root: str | Path | None = None,
                     grids_dir: str | Path | None = None, dataset: str = "mp2019"
                     ) -> AnswerTables:
    """The answer's tables from stored records, selected as notebooks 04 and 06 select them.

    Args:
        profile: Whose records (``cpu`` for the committed book).
        results_root: The results folder (default: ``$CALKIT_RESULTS`` or the repository's).
        grids_dir: Where ``baselines.yaml`` lies (default: the repository's ``grids/``).
        dataset: The data set of the results chapter's tables.
    """
    from calkit.store import load_records, partition_records

    current = partition_records(load_records(profile, results_root)).current
    records = reporting.select_records(current, protocol="clean", dataset=dataset)
    grids = Path(grids_dir) if grids_dir else Path(__file__).resolve().parents[1] / "grids"
    chapter = baselines_chapter_records(current, grids / "baselines.yaml")
    return AnswerTables(reporting.claims_table(records, family="headline"),
                        reporting.claims_table(records),
                        reporting.versus_baseline_table(chapter),
                        reporting.ood_flag_table(chapter))


def glue_answer(headline: pd.DataFrame | None = None, versus: pd.DataFrame | None = None,
                flags: pd.DataFrame | None = None) -> dict[str, str]:
    """Glue the answer's sentences into the running notebook for the book's first page.

    Notebook 04 passes its headline claims table (glues ``answer_holds``,
    ``answer_reversed``, ``answer_withdrawn``); notebook 06 its versus-baseline and OOD-flag
    tables (glues ``answer_instead``). The values are plain strings, pasted with
    ``{glue:text}`` so that they read as prose.

    Args:
        headline: :func:`calkit.reporting.claims_table` with ``family="headline"``.
        versus: :func:`calkit.reporting.versus_baseline_table`.
        flags: :func:`calkit.reporting.ood_flag_table`.

    Returns:
        The glued values by glue key.
    """
    from myst_nb import glue

    glued: dict[str, str] = {}
    if headline is not None:
        glued.update(claims_sentences(headline))
    if versus is not None:
        glued.update(instead_sentences(versus, flags if flags is not None else pd.DataFrame()))
    out = {f"{GLUE_PREFIX}{k}": v for k, v in glued.items()}
    for key, value in out.items():
        glue(key, value, display=False)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the README's answer block from the committed ``cpu`` records.

    ``python -m calkit.answer [--check] [README]``; ``--check`` only says whether it is current.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m calkit.answer", description=main.__doc__)
    parser.add_argument("readme", nargs="?", default=str(Path(__file__).resolve().parents[1]
                                                         / "README.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    old = path.read_text()
    new = rewrite_readme(old, committed_tables("cpu"))
    if new == old:
        print(f"{path}: the answer block is current")
        return 0
    if args.check:
        print(f"{path}: the answer block is stale; run python -m calkit.answer to rewrite it")
        return 1
    path.write_text(new)
    print(f"{path}: the answer block rewritten from the committed records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
