"""The estimators on matbench's own folds: IR-net, CAL and a random forest beside its leaderboard.

Matbench v0.1 scores a regression task by 5-fold cross-validation over the data set in matbench's
order, with ``KFold(n_splits=5, shuffle=True, random_state=18012019)``; this script uses exactly
those folds, over matbench's rows as they are (polymorphs not averaged). Every model is fitted on
the training folds only and keeps its defaults, which were chosen without matbench's test folds: the
networks stop early on a random 15 % of the training folds (their internal validation), the forest
has calkit's fixed baseline settings. The leaderboard values are matbench's own results files
(:data:`calkit.matbench.LEADERBOARD`: CrabNet, matbench's random forest and the mean predictor).

    CALKIT_DATA=/path/to/data python benchmarks/matbench_composition.py --tasks expt_gap steels
    python benchmarks/matbench_composition.py --tasks steels --folds 0 --epochs 3   # a quick look

It prints one line per task, model and fold, then a table of fold MAEs, their mean and the
leaderboard values; ``--out FILE.json`` also writes them, and ``--store results`` stores each
task's scores where the benchmark chapter reads them (:func:`calkit.anchor.anchor_path`). The
folds, the models and the scoring are :mod:`calkit.anchor`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from calkit.anchor import MODELS, anchor_path, score_task, write_anchor
from calkit.matbench import LEADERBOARD, TASKS

TASK_NAMES = [task.name for task in TASKS]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and optionally write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASK_NAMES, choices=TASK_NAMES)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="shorter network budgets")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--store", default=None,
                        help="results folder: store each task's scores under <store>/anchor/")
    args = parser.parse_args(argv)

    def report(row: dict) -> None:
        print(f"{row['task']} fold {row['fold']} {row['model']}: MAE {row['mae']:.4f} "
              f"({row['seconds']} s)", flush=True)

    rows = []
    for task in (t for t in TASKS if t.name in args.tasks):
        scored = score_task(task, args.models, args.folds, args.epochs, report)
        if args.store:
            print(f"stored {write_anchor(scored, anchor_path(args.store, task), args.epochs)}")
        rows += scored
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["task", "model"], columns="fold", values="mae")
    wide.columns = [f"fold {c}" for c in wide.columns]
    wide["mean"] = wide.mean(axis=1)
    for task, board in LEADERBOARD.items():
        for name, value in board.items():
            if task in args.tasks:
                wide.loc[(task, f"leaderboard: {name}"), "mean"] = value
    print(wide.round(4).to_string())
    if args.out:
        Path(args.out).write_text(json.dumps({"folds": rows, "leaderboard": LEADERBOARD},
                                             indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
