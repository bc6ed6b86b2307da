"""The in-distribution anchor: calkit's estimators on matbench's own five folds.

Matbench v0.1 scores a regression task by 5-fold cross-validation over the task's rows in
matbench's order (polymorphs not averaged), with ``KFold(n_splits=5, shuffle=True,
random_state=18012019)``. :func:`score_task` fits calkit's IR-net, CAL and random forest on the
training folds of those splits with their defaults (chosen without matbench's test folds: the
networks stop early on a random 15 % of the training folds, the forest has calkit's fixed baseline
settings) and scores the mean absolute error on each test fold, in the task's unit, beside
matbench's leaderboard (:data:`calkit.matbench.LEADERBOARD`).

Scores are stored per task under ``<results>/anchor/matbench_<task>.json`` with the code's commit,
the packages and the hardware, so the benchmark chapter reads them like any record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from calkit.matbench import LEADERBOARD, TASKS, MatbenchTask

MATBENCH_SEED = 18012019
"""matbench's KFold seed for its regression tasks (v0.1)."""

AnchorModel = Literal["IRNetRegressor", "CALRegressor", "random forest"]
MODELS: tuple[AnchorModel, ...] = ("IRNetRegressor", "CALRegressor", "random forest")
MODEL_LABELS = {"IRNetRegressor": "IR-net", "CALRegressor": "CAL", "random forest": "forest"}
ANCHOR_FORMAT = 1


def matbench_folds(n_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Matbench's five (training, test) index pairs for a task of ``n_rows`` rows."""
    from sklearn.model_selection import KFold

    return list(KFold(5, shuffle=True, random_state=MATBENCH_SEED).split(np.arange(n_rows)))


def task_rows(task: MatbenchTask) -> tuple[list[str], np.ndarray]:
    """The task's compositions and targets in matbench's order, from the hash-checked artifact."""
    from calkit.data import matbench_artifact

    raw = matbench_artifact(task)
    return raw["composition"].astype(str).tolist(), raw[task.column].to_numpy(np.float64)


def make_model(name: AnchorModel, seed: int, epochs: int | None = None) -> Any:
    """An anchor model with its defaults (``epochs`` shortens the networks for a quick look)."""
    if name == "random forest":
        from sklearn.ensemble import RandomForestRegressor

        from calkit.methods.baselines import BaselineConfig

        cfg = BaselineConfig()
        return RandomForestRegressor(n_estimators=cfg.rf_n_estimators,
                                     max_features=cfg.rf_max_features[0], n_jobs=1,
                                     random_state=seed)
    from calkit.estimators import CALRegressor, IRNetRegressor

    if name not in ("IRNetRegressor", "CALRegressor"):
        raise ValueError(f"unknown anchor model {name!r}; choose one of {', '.join(MODELS)}.")
    cls = IRNetRegressor if name == "IRNetRegressor" else CALRegressor
    model = cls(seed=seed, device="cpu")
    return model if epochs is None else model.set_params(epochs=epochs)


def score_task(task: MatbenchTask, models: Sequence[AnchorModel] = MODELS,
               folds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int | None = None,
               report: Callable[[dict], None] | None = None) -> list[dict]:
    """Each model's mean absolute error on each of matbench's test folds of ``task``.

    A row whose composition cannot be featurised gets the training folds' mean (matbench
    scores every row). The fold index seeds the model.

    Returns:
        One dict per (fold, model): ``task``, ``model``, ``fold``, ``mae``, ``seconds`` and
        ``rows_without_features``.
    """
    from calkit.features import featurize
    from calkit.provenance import torch_threads

    compositions, y = task_rows(task)
    X = featurize(compositions, progress=False, on_error="ignore").to_numpy(np.float32)
    usable = np.isfinite(X).all(axis=1)
    splits = matbench_folds(len(y))
    rows = []
    with torch_threads(1):
        for fold in folds:
            fit_rows, test_rows = splits[fold]
            fit_rows = fit_rows[usable[fit_rows]]
            ok = usable[test_rows]
            for name in models:
                start = time.perf_counter()
                model = make_model(name, fold, epochs).fit(X[fit_rows], y[fit_rows])
                pred = np.full(len(test_rows), y[fit_rows].mean())
                pred[ok] = model.predict(X[test_rows][ok])
                rows.append({"task": task.name, "model": name, "fold": int(fold),
                             "mae": float(np.abs(pred - y[test_rows]).mean()),
                             "seconds": round(time.perf_counter() - start, 1),
                             "rows_without_features": int((~ok).sum())})
                if report is not None:
                    report(rows[-1])
    return rows


def anchor_path(results_dir: str | Path, task: MatbenchTask) -> Path:
    """Where the anchor scores of ``task`` are stored."""
    return Path(results_dir) / "anchor" / f"{task.dataset}.json"


def write_anchor(rows: list[dict], path: str | Path, epochs: int | None = None) -> Path:
    """Store anchor scores with the code's commit, the packages and the hardware."""
    from calkit.provenance import environment_info

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": ANCHOR_FORMAT, "epochs": epochs, "folds": rows,
               **environment_info("cpu")}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def load_anchor(results_dir: str | Path, tasks: Sequence[MatbenchTask] = TASKS) -> pd.DataFrame:
    """Stored anchor scores of ``tasks`` run at the models' full defaults (one row per fold)."""
    frames = []
    for task in tasks:
        path = anchor_path(results_dir, task)
        if path.is_file():
            payload = json.loads(path.read_text())
            if payload.get("epochs") is None:
                frames.append(pd.DataFrame(payload["folds"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def anchor_table(scores: pd.DataFrame, tasks: Sequence[MatbenchTask] = TASKS) -> pd.DataFrame:
    """Our estimators' fold MAEs beside matbench's leaderboard, one row per task.

    Rows: ``"<task> (<unit>)"`` for every task of ``tasks``; columns: ``("calkit", model)``, the
    mean MAE over the folds stored (NaN where none is), and ``("leaderboard", entry)`` for the
    entries of :data:`calkit.matbench.LEADERBOARD`, all in the task's unit.
    """
    rows = {}
    for task in tasks:
        mine = scores[scores["task"] == task.name] if len(scores) else scores
        row: dict[tuple[str, str], float] = {}
        for model in MODELS:
            part = mine[mine["model"] == model]["mae"] if len(mine) else pd.Series(dtype=float)
            row[("calkit", MODEL_LABELS[model])] = part.mean() if len(part) else np.nan
        row.update({("leaderboard", name): value
                    for name, value in LEADERBOARD[task.name].items()})
        rows[f"{task.name} ({task.unit or 'unitless'})"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("task")
