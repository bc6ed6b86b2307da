"""A sanity anchor: the plain IR-net on random k-fold splits of a whole data set.

OOD numbers only mean something next to the in-distribution error of the same model. For
phonons, matbench lists composition-only models on random 5-fold splits (RF on Magpie
features 67.6 cm^-1, CrabNet 55.1 cm^-1 MAE); :func:`random_split_cv` gives ours on the same
kind of split, stored like a run record so the book reads it instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from calkit import columns as col
from calkit.data import check_dataset_name
from calkit.features import featurize
from calkit.profiles import check_profile
from calkit.store import load_record, results_dir, write_json

CV_FORMAT = 1
"""Version of what a cross-validation record covers (bump to recompute every stored one)."""


def cv_request(dataset: str, profile: str, folds: int, seed: int,
               target: str | None = None) -> dict:
    """What a cross-validation computes, and its id (the hash of that)."""
    info = check_dataset_name(dataset, target)
    target = info.check_target(target)
    prof = check_profile(profile)
    request = {"format": CV_FORMAT, "dataset": info.name if not info.sha256 else "user file",
               "data_sha256": info.sha256 or None, "target": target, "profile": prof.name,
               "folds": folds, "seed": seed, "model_preset": prof.model_preset,
               "recipe": {"lr": prof.recipe.lr, "epochs": prof.recipe.epochs,
                          "patience": prof.recipe.patience,
                          "batch_size": prof.recipe.batch_size},
               "scaling": "features and target standardised on each training fold"}
    digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
    stem = Path(info.name).name.split(".")[0]
    return {**request, "cv_id": f"cv-{stem}-{digest}"}


def random_split_cv(dataset: str = "phonons", profile: str = "cpu", folds: int = 5,
                    seed: int = 0, target: str | None = None, root: str | Path | None = None,
                    force: bool = False, progress: bool = True) -> dict:
    """The profile's plain IR-net on ``folds`` random folds of every row: MAE per fold.

    The result is stored under ``results/<profile>/cv/`` and returned from there on the
    next call (``force`` recomputes).

    Args:
        dataset: A registered data set or a CSV path.
        profile: The profile whose model and recipe are used.
        folds: Number of folds.
        seed: Seed of the fold split and of each model.
        target: The property (default: the data set's).
        root: Results root (default ``$CALKIT_RESULTS`` or the repository's ``results/``).
        force: Recompute even when stored.
        progress: Show a progress bar over folds.

    Returns:
        A dict with the request, ``fold_mae``, ``mae_mean``, ``mae_std``, the target's mean
        absolute deviation ``mad`` and the environment of the run.
    """
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from tqdm.auto import tqdm

    from calkit.data import load_dataset
    from calkit.estimators import IRNetRegressor
    from calkit.provenance import environment_info, torch_threads

    request = cv_request(dataset, profile, folds, seed, target)
    path = results_dir(profile, root) / "cv" / f"{request['cv_id']}.json"
    if path.is_file() and not force:
        return load_record(path)
    prof = check_profile(profile)
    started = time.perf_counter()
    frame = load_dataset(dataset, target=request["target"])
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    keep = ~raw.isna().any(axis=1).to_numpy()
    X = raw.to_numpy(dtype=np.float32)[keep]
    y = frame[request["target"]].to_numpy(dtype=np.float64)[keep]
    maes = []
    with torch_threads(prof.threads):
        splits = KFold(folds, shuffle=True, random_state=seed).split(X)
        for fold, (fit_rows, test_rows) in enumerate(tqdm(list(splits), desc="folds",
                                                          disable=not progress)):
            net = IRNetRegressor(preset=prof.model_preset, lr=prof.recipe.lr,
                                 epochs=prof.recipe.epochs, patience=prof.recipe.patience,
                                 batch_size=prof.recipe.batch_size, seed=seed + fold,
                                 device="cpu", scale_X=False, scale_y=False)
            model = TransformedTargetRegressor(make_pipeline(StandardScaler(), net),
                                               transformer=StandardScaler())
            model.fit(X[fit_rows], y[fit_rows])
            maes.append(float(np.abs(model.predict(X[test_rows]) - y[test_rows]).mean()))
        environment = environment_info("cpu")
    record = {**request, "rows": int(keep.sum()), "fold_mae": maes,
              "mae_mean": float(np.mean(maes)), "mae_std": float(np.std(maes, ddof=1)),
              "mad": float(np.abs(y - y.mean()).mean()), **environment,
              "wall_seconds": round(time.perf_counter() - started, 2)}
    write_json(record, path)
    return load_record(path)
