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
leaderboard values; ``--out FILE.json`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from calkit.matbench import LEADERBOARD
from calkit.matbench import TASKS as _TASKS

MATBENCH_SEED = 18012019
"""matbench's KFold seed for its regression tasks (v0.1)."""

TASKS = {task.name: task.column for task in _TASKS}
"""The benchmark's composition regression tasks (:data:`calkit.matbench.TASKS`), with the target
column of matbench's table."""

MODELS = ("IRNetRegressor", "CALRegressor", "random forest")


def load_task(task: str) -> tuple[list[str], np.ndarray]:
    """Compositions and targets of a matbench composition task, in matbench's order."""
    root = os.environ.get("CALKIT_DATA")
    path = Path(root or "data") / "matbench_composition" / f"matbench_{task}.csv.gz"
    if not path.is_file():
        sys.exit(f"no {path}: set CALKIT_DATA to the folder that holds "
                 "matbench_composition/matbench_<task>.csv.gz")
    frame = pd.read_csv(path, keep_default_na=False)
    return frame["composition"].astype(str).tolist(), frame[TASKS[task]].to_numpy(np.float64)


def make_model(name: str, seed: int, epochs: int | None):
    """A model with its defaults (``epochs`` shortens the networks for a quick look)."""
    from sklearn.ensemble import RandomForestRegressor

    from calkit.estimators import CALRegressor, IRNetRegressor
    from calkit.methods.baselines import BaselineConfig

    if name == "random forest":
        cfg = BaselineConfig()
        return RandomForestRegressor(n_estimators=cfg.rf_n_estimators,
                                     max_features=cfg.rf_max_features[0], n_jobs=1,
                                     random_state=seed)
    cls = {"IRNetRegressor": IRNetRegressor, "CALRegressor": CALRegressor}[name]
    return cls(seed=seed, device="cpu", **({} if epochs is None else {"epochs": epochs}))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and optionally write the table."""
    from sklearn.model_selection import KFold

    from calkit.features import featurize
    from calkit.provenance import torch_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None, help="shorter network budgets")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    rows = []
    with torch_threads(1):
        for task in args.tasks:
            compositions, y = load_task(task)
            X = featurize(compositions, progress=False, on_error="ignore").to_numpy(np.float32)
            usable = np.isfinite(X).all(axis=1)
            folds = list(KFold(5, shuffle=True, random_state=MATBENCH_SEED).split(X))
            for fold in args.folds:
                fit_rows, test_rows = folds[fold]
                fit_rows = fit_rows[usable[fit_rows]]
                for name in args.models:
                    start = time.perf_counter()
                    model = make_model(name, fold, args.epochs).fit(X[fit_rows], y[fit_rows])
                    pred = np.full(len(test_rows), np.nan)
                    ok = usable[test_rows]
                    pred[ok] = model.predict(X[test_rows][ok])
                    # A row without features gets the training mean (matbench scores every row).
                    pred[~ok] = y[fit_rows].mean()
                    mae = float(np.abs(pred - y[test_rows]).mean())
                    rows.append({"task": task, "model": name, "fold": fold, "mae": mae,
                                 "seconds": round(time.perf_counter() - start, 1),
                                 "rows_without_features": int((~ok).sum())})
                    print(f"{task} fold {fold} {name}: MAE {mae:.4f} "
                          f"({rows[-1]['seconds']} s)", flush=True)
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
