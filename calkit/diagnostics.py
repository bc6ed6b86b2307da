"""Did a run do what its method is for? Checks read from a stored record's history.

A targeted method is handed N rows of a target set and trains on them; if its loss on those
rows (its *own rows*, history key ``<target>_target/loss``) never falls below where it stood
during the plain warm-up, the run did not target anything, and a comparison built on it says
nothing about the method. :func:`own_row_learning` makes that check for one record and
:func:`own_rows_table` for a group; the results chapter withdraws a verdict that rests on runs
that fail it (:func:`unlearned_runs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from calkit import columns as col

OWN_ROWS_LOSS_SUFFIX = col.OWN_ROWS_SUFFIX + "/loss"
"""History key suffix of the loss on a targeted run's own N rows."""


def method_key(request: dict) -> str:
    """``method`` plus its config overrides, e.g. ``cal[supervised_on_all=False]``."""
    overrides = request.get("overrides") or []
    if not overrides:
        return request["method"]
    return request["method"] + "[" + ",".join(f"{k}={v}" for k, v in overrides) + "]"


@dataclass(frozen=True)
class OwnRowLearning:
    """The own-row check of one targeted run.

    Attributes:
        final: Loss on the N rows after the last epoch.
        warmup_best: Its lowest value during the plain warm-up (``phase == 0``).
        ratio: ``final / warmup_best``: below 1, the adversarial phase taught the rows.
        curve: The own-row loss per epoch.
        warmup_epochs: Number of warm-up epochs in the history.
        adversarial_epochs: Number of adversarial epochs (0: the run never targeted, e.g. a
            ``targeted_select`` run whose held-out rows chose a warm-up epoch; the check then
            does not apply).
    """

    final: float
    warmup_best: float
    ratio: float
    curve: np.ndarray
    warmup_epochs: int
    adversarial_epochs: int = 0

    @property
    def applies(self) -> bool:
        """Whether the run reached its adversarial phase, so that it could learn its rows."""
        return self.adversarial_epochs > 0

    @property
    def learned(self) -> bool:
        """Whether the run ended below its warm-up best on its own rows."""
        return bool(self.ratio < 1.0)

    @property
    def failed(self) -> bool:
        """Whether the run targeted its rows and did not learn them (what withdraws a verdict)."""
        return self.applies and not self.learned


def own_row_learning(record: dict) -> OwnRowLearning | None:
    """The own-row check of a record, or ``None`` when it has no own rows or no warm-up."""
    history = record.get("history") or {}
    keys = [k for k in history if k.endswith(OWN_ROWS_LOSS_SUFFIX)]
    if not keys or "phase" not in history:
        return None
    curve = np.asarray(history[keys[0]], float)
    warmup = np.asarray(history["phase"], float) == 0
    if not warmup.any() or not np.isfinite(curve[warmup]).any():
        return None
    best = float(np.nanmin(curve[warmup]))
    final = float(curve[-1])
    return OwnRowLearning(final, best, final / best if best > 0 else np.inf, curve,
                          int(warmup.sum()), int((~warmup).sum()))


def _checked_runs(records: list[dict]) -> Iterator[tuple[dict, dict[str, Any], OwnRowLearning]]:
    """``(record, run kind, own-row check)`` of every record that has the check."""
    for rec in records:
        check = own_row_learning(rec)
        if check is not None:
            req = rec["request"]
            kind = {"run": method_key(req), "target_set": req.get("target_set") or "",
                    "n_target": int(req.get("n_target") or 0)}
            yield rec, kind, check


def unlearned_runs(records: list[dict], key: str, target: str, n_target: int) -> tuple[int, int]:
    """``(runs that did not learn their rows, runs checked)`` of one run kind in ``records``.

    A run that never reached its adversarial phase (its held-out rows chose a warm-up epoch) is
    not checked: it chose not to target, which is the method's answer, not a failure.
    """
    wanted = {"run": key, "target_set": target, "n_target": n_target}
    checked = [check for _, kind, check in _checked_runs(records)
               if kind == wanted and check.applies]
    return sum(c.failed for c in checked), len(checked)


def own_rows_table(records: list[dict]) -> pd.DataFrame:
    """Per targeted run kind: seeds, median own-row loss (final and warm-up best), their ratio.

    Columns: ``run, target_set, n_target, profile, seeds, final, warmup_best, ratio,
    not_learned`` (runs whose own-row loss ended at or above its warm-up best: flagged) and
    ``warmup_chosen`` (runs that never reached the adversarial phase: a ``targeted_select``
    run whose held-out rows chose a warm-up epoch; not flagged).
    """
    rows = [{**kind, "profile": rec["request"].get("profile", ""), "final": check.final,
             "warmup_best": check.warmup_best, "ratio": check.ratio,
             "not_learned": check.failed, "warmup_chosen": not check.applies}
            for rec, kind, check in _checked_runs(records)]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    keys = ["run", "target_set", "n_target", "profile"]
    out = frame.groupby(keys, sort=False).agg(
        seeds=("final", "size"), final=("final", "median"),
        warmup_best=("warmup_best", "median"), ratio=("ratio", "median"),
        not_learned=("not_learned", "sum"), warmup_chosen=("warmup_chosen", "sum")
    ).reset_index()
    out[["not_learned", "warmup_chosen"]] = out[["not_learned", "warmup_chosen"]].astype(int)
    return out


def select_choices_table(records: list[dict]) -> pd.DataFrame:
    """Which candidate recipe and epoch the held-out rows chose, per ``targeted_select`` target.

    Columns: ``target_set, n_target, seeds``, one count per candidate
    (:data:`~calkit.methods.targeted_select.TARGETED_CANDIDATE_LABELS`), ``epochs`` (the
    median chosen epoch count, warm-up included) and ``warmup_chosen`` (runs whose chosen epoch
    lies in the warm-up, so they never targeted). Runs with overrides (the controls) are left out.
    """
    # Late: importing calkit.methods registers every method (and loads torch); the record
    # checks above need neither.
    from calkit.methods.targeted_select import TARGETED_CANDIDATE_LABELS, candidate_label

    rows = []
    for rec in records:
        req, choice = rec["request"], rec.get("selection") or {}
        if req["method"] != "targeted_select" or req.get("overrides") or "candidate" not in choice:
            continue
        rows.append({"target_set": req.get("target_set") or "",
                     "n_target": int(req.get("n_target") or 0),
                     "candidate": candidate_label(choice["candidate"]),
                     "epochs": int(choice["epochs"]), "warmup_chosen": bool(choice["in_warmup"])})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    keys = ["target_set", "n_target"]
    counts = (pd.crosstab([frame[k] for k in keys], frame["candidate"])
              .reindex(columns=list(TARGETED_CANDIDATE_LABELS), fill_value=0))
    rest = frame.groupby(keys).agg(seeds=("epochs", "size"), epochs=("epochs", "median"),
                                   warmup_chosen=("warmup_chosen", "sum"))
    out = rest[["seeds"]].join(counts).join(rest[["epochs", "warmup_chosen"]]).reset_index()
    out.columns.name = None
    return out.astype({"warmup_chosen": int})


def refit_horizon_table(records: list[dict]) -> pd.DataFrame:
    """How far each ``targeted_select`` refit departs from the run its held-out rows scored.

    The winning recipe is refitted on all N rows for the chosen number of epochs. Under a
    schedule that spans the budget (:data:`~calkit.config.HORIZON_SCHEDULES`, the cosine) the
    refit's rate then decays over the chosen epochs instead of the search's, so it follows
    another trajectory than the candidate whose held-out loss chose it; under a constant rate it
    repeats that trajectory (on all N rows instead of the fit four fifths), as fine-tuning's
    refit does.

    Columns: ``run`` (:func:`method_key`), ``target_set, n_target, seeds``, ``rescheduled``
    (refits that ran fewer epochs than the search under such a schedule) and ``shortest`` (the
    smallest chosen-over-search epoch fraction among them; NaN when there are none).
    """
    from calkit.config import HORIZON_SCHEDULES

    rows = []
    for rec in records:
        req, choice = rec["request"], rec.get("selection") or {}
        if req["method"] != "targeted_select" or "candidate" not in choice:
            continue
        train = rec["resolved"]["train"]
        schedule = choice["candidate"].get("schedule", train["schedule"])
        spans = train.get("schedule_epochs")  # set: every fit's cosine spans it, the refit's too
        fraction = (spans or int(choice["epochs"])) / (spans or int(train["epochs"]))
        rows.append({"run": method_key(req), "target_set": req.get("target_set") or "",
                     "n_target": int(req.get("n_target") or 0),
                     "fraction": fraction if schedule in HORIZON_SCHEDULES and fraction < 1
                     else np.nan})
    if not rows:
        return pd.DataFrame()
    return (pd.DataFrame(rows).groupby(["run", "target_set", "n_target"])
            .agg(seeds=("fraction", "size"), rescheduled=("fraction", "count"),
                 shortest=("fraction", "min"))
            .reset_index())


def refit_horizon_reading(table: pd.DataFrame) -> str:
    """One sentence from :func:`refit_horizon_table`, per target over all its run kinds.

    E.g. "the refit repeats the scored run in all 20 runs on prior (low delta_e), N=1024; the refit
    decays its cosine over fewer epochs than the search did in 18 of 20 runs on covariate (UMAP
    sparse), N=1024 (the shortest over 0.55 of the search's budget)". Empty for an empty table.
    """
    if table.empty:
        return ""
    parts = []
    for (target, n), group in table.groupby(["target_set", "n_target"], sort=False):
        where = f"{col.set_label(target)}, N={n}"
        runs, moved = int(group["seeds"].sum()), int(group["rescheduled"].sum())
        if moved == 0:
            parts.append(f"the refit repeats the scored run in all {runs} runs on {where}")
        else:
            parts.append(f"the refit decays its cosine over fewer epochs than the search did in "
                         f"{moved} of {runs} runs on {where} (the shortest over "
                         f"{group['shortest'].min():.2f} of the search's budget)")
    return "; ".join(parts)


def same_choices(records: list[dict], variant: str) -> tuple[int, int]:
    """How many ``variant`` runs of ``targeted_select`` chose what their stored twins chose.

    A variant that changes only the refit (e.g. ``targeted_select[schedule_epochs=60]``) runs
    the same search, so on one machine it must choose the same candidate and epoch as the
    ``targeted_select`` run of the same target, N and seed; a mismatch means the searches
    differed and the pair compares more than the refit.

    The twin is the record whose request, rebuilt as a :class:`~calkit.runs.RunConfig`, is the
    variant's without its overrides (as the budget study pairs its runs), so a record of another
    protocol, data set, profile or target draw is never paired.

    Returns:
        ``(same, paired)``: variant runs with a stored twin, and those whose choice matches.
    """
    from dataclasses import replace

    from calkit.runs import RunConfig

    def key(rec: dict) -> Any:
        return replace(RunConfig.from_request(rec["request"]), overrides=())

    def choice(rec: dict) -> tuple[Any, ...]:
        sel = rec.get("selection") or {}
        return tuple(sorted((sel.get("candidate") or {}).items())), sel.get("epochs")

    twins = {key(r): choice(r) for r in records if method_key(r["request"]) == "targeted_select"}
    pairs = [(choice(r), twins[key(r)]) for r in records
             if method_key(r["request"]) == variant and key(r) in twins]
    return sum(a == b for a, b in pairs), len(pairs)


def own_row_curves(records: list[dict]) -> pd.DataFrame:
    """Long table of own-row loss per epoch: ``run, target_set, n_target, seed, epoch, loss``."""
    return pd.DataFrame([{**kind, "seed": rec["request"]["seed"], "epoch": epoch, "loss": loss,
                          "warmup_epochs": check.warmup_epochs}
                         for rec, kind, check in _checked_runs(records)
                         for epoch, loss in enumerate(check.curve)])


FACTOR_WORDS = {
    "supervised_on_all=False": "literal loop",
    "lr=0.0001": "constant 1e-4",
    "research_eval_mode_quirk=True": "eval-mode quirk",
    "theta_lr_schedule=constant": "constant theta rate",
}
"""The factors of the what-breaks-targeting study (``grids/targeting_factors.yaml``), each an
override that sets one setting of the cpu recipe to the authors' value; ``schedule=none``
goes with ``lr=0.0001`` and the budget overrides (``patience``) name no factor."""


def factor_setting_label(key: str) -> str:
    """A study setting's label from its run key, e.g. ``cpu recipe + literal loop``."""
    _, _, variant = key.partition("[")
    words = [FACTOR_WORDS[part] for part in variant.rstrip("]").split(",")
             if part in FACTOR_WORDS]
    if len(words) == len(FACTOR_WORDS):
        return "cpu recipe + all four (the authors' loop and rates)"
    return "cpu recipe" + "".join(f" + {w}" for w in words)


def factor_table(records: list[dict]) -> pd.DataFrame:
    """The what-breaks-targeting study, one row per setting and target.

    Args:
        records: The study's records (the runs of ``grids/targeting_factors.yaml``).

    Returns:
        Columns ``setting, target_set, n_target, seeds, ratio_median, ratio_min, ratio_max,
        learned``
        (seeds whose own-row loss ended below its warm-up best), ``own_final`` (median final
        own-row loss) and ``heldout`` (median loss of the last-epoch raw model on the target
        set minus its N rows).
    """
    rows = []
    for rec, kind, check in _checked_runs(records):
        metrics = rec["metrics"].get("raw_last") or rec["metrics"]["raw"]
        rows.append({"setting": factor_setting_label(kind["run"]),
                     "target_set": kind["target_set"], "n_target": kind["n_target"],
                     "ratio": check.ratio, "learned": check.learned, "own_final": check.final,
                     "heldout": metrics.get(kind["target_set"], {}).get("loss", np.nan)})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    return frame.groupby(["setting", "target_set", "n_target"], sort=False).agg(
        seeds=("ratio", "size"), ratio_median=("ratio", "median"), ratio_min=("ratio", "min"),
        ratio_max=("ratio", "max"),
        learned=("learned", "sum"), own_final=("own_final", "median"),
        heldout=("heldout", "median")).reset_index()


BREAKS_BELOW, CPU_ABOVE = 0.5, 1.0
"""The study's declared reading rule: a factor breaks targeting if setting it alone to the
authors' value brings the own-row ratio below ``BREAKS_BELOW`` in every seed on the prior set
while the cpu recipe's stays above ``CPU_ABOVE`` in every seed."""


def breaking_factors(table: pd.DataFrame, target: str = "infoY_delta_e") -> list[str]:
    """The settings of :func:`factor_table` that meet the declared reading rule on ``target``."""
    if table.empty:
        return []
    part = table[table["target_set"] == target]
    cpu = part[part["setting"] == "cpu recipe"]
    if cpu.empty or not (cpu["ratio_min"] > CPU_ABOVE).all():
        return []
    single = part[(part["setting"] != "cpu recipe") & ~part["setting"].str.contains("all four")]
    return single.loc[single["ratio_max"] < BREAKS_BELOW, "setting"].tolist()


def factor_answer(table: pd.DataFrame, target: str = "infoY_delta_e") -> str:
    """The study's answer on ``target`` in one sentence, from :func:`factor_table`.

    Which single factors meet the declared rule (:func:`breaking_factors`); when none does,
    which single factors let the run learn its rows at all, and whether all four together meet
    the rule (then the cpu recipe fails by an interaction of its settings, not by one of them).
    """
    part = table[table["target_set"] == target] if not table.empty else table
    if part.empty:
        return "no runs of the study yet"
    single = part[(part["setting"] != "cpu recipe") & ~part["setting"].str.contains("all four")]
    short = [name.replace("cpu recipe + ", "") for name in single["setting"]]
    cpu = part[part["setting"] == "cpu recipe"]
    if len(cpu) and (cpu["ratio_max"] < CPU_ABOVE).all():
        failing = [name for name, n in zip(short, single["learned"], strict=True) if n == 0]
        return (f"the cpu recipe learns its rows here (median ratio "
                f"{cpu['ratio_median'].iloc[0]:.2f}); "
                + (f"{' and '.join(failing)} alone {'stops' if len(failing) == 1 else 'stop'} "
                   "it in every seed" if failing else "so does every single-factor setting"))
    breaking = breaking_factors(table, target)
    if breaking:
        return (f"{' and '.join(b.replace('cpu recipe + ', '') for b in breaking)} alone "
                f"{'brings' if len(breaking) == 1 else 'bring'} the own-row ratio below "
                f"{BREAKS_BELOW} in every seed")
    partly = [f"{name} ({int(n)} of {int(k)} seeds)"
              for name, n, k in zip(short, single["learned"], single["seeds"], strict=True)
              if n > 0]
    text = f"no single factor brings the own-row ratio below {BREAKS_BELOW} in every seed"
    if partly:
        text += (f"; alone, only {', '.join(partly)} "
                 f"{'learns' if len(partly) == 1 else 'learn'} the rows at all")
    together = part[part["setting"].str.contains("all four")]
    if len(together) and (together["ratio_max"] < BREAKS_BELOW).all():
        row = together.iloc[0]
        text += (f"; all four together do (median ratio {row['ratio_median']:.2f}, "
                 f"{int(row['learned'])} of {int(row['seeds'])} seeds learned): targeting "
                 "fails under the cpu recipe by an interaction of its settings, not by one")
    return text
