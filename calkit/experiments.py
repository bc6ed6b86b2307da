"""Profiles and the data pipeline shared by notebooks, the sweep and the estimators.

``prepare_data`` is the one place where a data set becomes model inputs:
load -> (profile subsample) -> 145 features -> OOD sets -> scaler fitted on the training
rows. Every step below it is cached, so notebooks can call it freely.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from calkit import columns as col
from calkit.data import (
    DATASETS,
    cache_dir,
    check_dataset_name,
    load_dataset,
    relation_ids,
    repo_root,
)
from calkit.features import FeatureScaler, featurize, scale_features
from calkit.splits import SplitConfig, build_sets, embed_2d, save_sets, standardize_all


@dataclass(frozen=True)
class Profile:
    """A named budget: how much data and compute a run may use.

    Attributes:
        name: ``smoke`` (CI), ``cpu`` (full data, small model) or ``paper`` (GPU).
        max_rows: Seeded subsample of the data table; ``None`` keeps every row.
        figure_rows: Rows in the supervised UMAP figure (its 200-neighbour graph is costly).
        description: One line for the book.
    """

    name: str
    max_rows: int | None
    figure_rows: int
    description: str
    model_preset: str = "cpu"
    cal_preset: str = "cpu"
    train_overrides: tuple[tuple[str, object], ...] = ()
    cal_overrides: tuple[tuple[str, object], ...] = ()


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        3000,
        1500,
        "CI: 3,000-row subsample, 4 epochs, CPU model",
        model_preset="cpu",
        cal_preset="cpu",
        train_overrides=(("epochs", 4), ("patience", 4), ("ema_start_epoch", 1)),
        cal_overrides=(
            ("epochs", 4),
            ("pre_adv_epochs", 2),
            ("patience", 4),
            ("ema_start_epoch", 1),
        ),
    ),
    "cpu": Profile(
        "cpu",
        None,
        20_000,
        "full data, the 512-256-128 CPU IR-net, 60-epoch budgets",
        model_preset="cpu",
        cal_preset="cpu",
        train_overrides=(("epochs", 60), ("patience", 20), ("ema_start_epoch", 10)),
    ),
    "paper": Profile(
        "paper",
        None,
        20_000,
        "the paper's model and CAL settings; meant for a GPU",
        model_preset="paper",
        cal_preset="paper",
        train_overrides=(("epochs", 500), ("patience", 100), ("ema_start_epoch", 20)),
    ),
}

TARGETED_DATASETS = tuple(name for name, info in DATASETS.items() if col.DELTA_E in info.targets)


def check_profile(name: str) -> Profile:
    """Return the profile called ``name`` or raise with the valid names."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}. Valid profiles: {', '.join(PROFILES)}.")
    return PROFILES[name]


@dataclass
class DataBundle:
    """Everything a model run needs, aligned row by row.

    Attributes:
        dataset: Data set name.
        profile: Profile name.
        frame: The calkit frame (id, formula, composition, targets).
        raw_features: Unscaled 145 features.
        X: Scaled float32 features (scaler fitted per ``fit_on``).
        y: float32 ``delta_e`` in eV/atom.
        sets: Boolean frame of set flags (paper names) with a ``train`` column.
        scaler: The fitted :class:`~calkit.features.FeatureScaler`.
        split_config: The parameters the sets were built with.
        fit_on: ``"train"`` or ``"all"``.
    """

    dataset: str
    profile: str
    frame: pd.DataFrame
    raw_features: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    sets: pd.DataFrame
    scaler: FeatureScaler
    split_config: SplitConfig
    fit_on: str

    @property
    def feature_names(self) -> list[str]:
        """The 145 feature names."""
        return list(self.raw_features.columns)

    def masks(self) -> dict[str, np.ndarray]:
        """Set flags as a ``name -> bool array`` dict, the form training code takes."""
        return {name: self.sets[name].to_numpy() for name in self.sets.columns}


def subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """Seeded subsample of ``max_rows`` rows (all rows when ``None`` or fewer)."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def figure_sample(n_rows: int, k: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of ``k`` row indices for figures.

    The stream is derived from ``(seed, "figure")`` rather than ``seed`` alone: with the same
    generator seed, ``choice(n, 20000)`` would begin with the rows of the first random split
    and over-represent them in the figure.
    """
    rng = np.random.default_rng([seed, 0xF16])
    return np.sort(rng.choice(n_rows, min(k, n_rows), replace=False))


def _sets_cache_path(frame: pd.DataFrame, config: SplitConfig, dataset: str):
    digest = hashlib.sha256()
    digest.update("\n".join(frame[col.ID]).encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    return cache_dir("sets") / f"{dataset}-{digest.hexdigest()[:16]}.csv.gz"


def prepare_data(
    dataset: str = "mp2019",
    profile: str = "cpu",
    seed: int = 0,
    split_config: SplitConfig | None = None,
    fit_on: str = "train",
    clip: float | None = 10.0,
    progress: bool = True,
) -> DataBundle:
    """Load, featurise, split and scale a data set for the given profile.

    Args:
        dataset: A data set with ``delta_e`` (``mp2019`` or ``mp_nostruct_20181018``).
        profile: ``smoke``, ``cpu`` or ``paper``.
        seed: Seed of the subsample (smoke) and, unless ``split_config`` is given, the sets.
            The paper used one fixed set of splits; calkit keeps the splits of seed 0 for
            every model seed by default (pass ``split_config`` to vary them).
        split_config: Parameters of the OOD sets; ``SplitConfig(seed=0)`` by default.
        fit_on: Scaler fitted on ``"train"`` rows (default) or ``"all"`` rows (paper).
        clip: Bound on scaled values (the near-constant-feature guard); ``None`` disables it.
        progress: Show progress bars.

    Returns:
        A :class:`DataBundle`.
    """
    check_dataset_name(dataset)
    if dataset not in TARGETED_DATASETS:
        raise ValueError(
            f"OOD sets need formation energies; data set {dataset!r} has none. "
            f"Use one of: {', '.join(TARGETED_DATASETS)}."
        )
    prof = check_profile(profile)
    split_config = split_config or SplitConfig()
    frame = subsample(load_dataset(dataset), prof.max_rows, seed=0)
    raw = featurize(frame[col.COMPOSITION].tolist(), progress=progress)
    if raw.isna().any(axis=1).any():
        keep = ~raw.isna().any(axis=1).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        raw = raw[keep].reset_index(drop=True)

    path = _sets_cache_path(frame, split_config, dataset)
    if path.is_file():
        sets = pd.read_csv(path).astype(bool)
    else:
        ids = relation_ids() if dataset in ("mp2019", "mp_nostruct_20181018") else None
        sets = build_sets(frame, raw.to_numpy(), split_config, relation_ids=ids)
        save_sets(sets, split_config, path)
    X, scaler = scale_features(raw.to_numpy(), sets[col.TRAIN].to_numpy(), fit_on=fit_on, clip=clip)
    y = frame[col.DELTA_E].to_numpy(dtype=np.float32)
    return DataBundle(dataset, profile, frame, raw, X, y, sets, scaler, split_config, fit_on)


def covariate_embedding(bundle: DataBundle) -> np.ndarray:
    """The (cached) unsupervised 2-D embedding the covariate set was cut from."""
    cfg = bundle.split_config
    return embed_2d(
        standardize_all(bundle.raw_features.to_numpy()),
        method=cfg.covariate_embedding,
        seed=cfg.seed,
        n_neighbors=cfg.umap_neighbors,
        min_dist=cfg.umap_min_dist,
    )


# ---------------------------------------------------------------------------- runs
METHODS = ("baseline", "cal", "targeted", "finetune", "pg_first", "pg_last", "aa", "ps", "irnet3")
"""Run methods: plain IR-net, CAL, targeted CAL, fine-tuning and the paper's ablations."""

TARGETED_METHODS = ("targeted", "finetune")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run's numbers (``device`` aside).

    Attributes:
        method: One of :data:`METHODS`.
        dataset: Data set name.
        profile: Profile name (sets the model, budgets and data size).
        seed: Seed of the model initialisation and of every draw during training.
        target_set: OOD set (name or alias) for ``targeted`` and ``finetune``.
        n_target: Number of target rows for ``targeted`` and ``finetune``.
        model_preset: Override of the profile's model preset.
        epochs: Override of the profile's epoch budget.
        device: ``auto`` (cuda when present), ``cpu`` or ``cuda``; not part of the run id.
        overrides: Further ``(field, value)`` overrides of the training/CAL config.
    """

    method: str = "baseline"
    dataset: str = "mp2019"
    profile: str = "cpu"
    seed: int = 0
    target_set: str | None = None
    n_target: int = 0
    model_preset: str | None = None
    epochs: int | None = None
    device: str = "auto"
    overrides: tuple[tuple[str, object], ...] = ()

    def validate(self) -> RunConfig:
        """Check every field; raise ``ValueError`` naming the bad value and the valid ones."""
        from calkit.models import PRESETS

        if self.method not in METHODS:
            raise ValueError(
                f"unknown method {self.method!r}. Valid methods: {', '.join(METHODS)}."
            )
        check_dataset_name(self.dataset)
        if self.dataset not in TARGETED_DATASETS:
            raise ValueError(
                f"data set {self.dataset!r} has no delta_e; use {', '.join(TARGETED_DATASETS)}."
            )
        check_profile(self.profile)
        if self.model_preset is not None and self.model_preset not in PRESETS:
            raise ValueError(
                f"unknown model preset {self.model_preset!r}. Valid presets: {', '.join(PRESETS)}."
            )
        if self.method in TARGETED_METHODS:
            if not self.target_set or self.n_target < 1:
                raise ValueError(
                    f"method {self.method!r} needs target_set (e.g. 'relation', 'prior', "
                    f"'covariate') and n_target >= 1; got {self.target_set!r}, {self.n_target}."
                )
            col.resolve_set_name(self.target_set)
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {self.device!r}")
        return self

    def canonical(self) -> dict:
        """The fields that define the run, with aliases resolved (no device)."""
        out = dataclasses.asdict(self)
        out.pop("device")
        out["overrides"] = sorted([list(kv) for kv in self.overrides])
        if self.target_set is not None:
            out["target_set"] = col.resolve_set_name(self.target_set)
        return out

    @property
    def run_id(self) -> str:
        """``<method>-<hash of the canonical config>``: the record's file name."""
        digest = hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode())
        return f"{self.method}-{digest.hexdigest()[:12]}"

    def model_name(self) -> str:
        """The model preset: the override, IRnet-3 for that ablation, or the profile's."""
        if self.model_preset is not None:
            return self.model_preset
        return "irnet3" if self.method == "irnet3" else check_profile(self.profile).model_preset

    def baseline(self) -> RunConfig:
        """The plain baseline run that fine-tuning starts from."""
        return dataclasses.replace(self, method="baseline", target_set=None, n_target=0)


RESULTS_ENV = "CALKIT_RESULTS"


def results_dir(profile: str, root: str | Path | None = None) -> Path:
    """``<root>/<profile>``; root is ``$CALKIT_RESULTS`` or the repository's ``results/``."""
    if root is None:
        root = os.environ.get(RESULTS_ENV) or (
            (repo_root() or Path.home() / ".cache" / "calkit") / "results"
        )
    return Path(root) / profile


def record_path(config: RunConfig, root: str | Path | None = None) -> Path:
    """Where the record of ``config`` lives."""
    return results_dir(config.profile, root) / "runs" / f"{config.run_id}.json"


def _checkpoint_path(config: RunConfig, root: str | Path | None) -> Path:
    return results_dir(config.profile, root) / "checkpoints" / f"{config.run_id}.pt"


def training_config(config: RunConfig):
    """The :class:`~calkit.training.TrainConfig` or :class:`~calkit.cal.CALConfig` of a run."""
    from calkit.cal import ABLATIONS, cal_config
    from calkit.training import TrainConfig

    prof = check_profile(config.profile)
    fields: dict = {"seed": config.seed, "device": config.device}
    if config.epochs is not None:
        fields["epochs"] = config.epochs
    if config.method in ("baseline", "finetune"):
        merged = {**dict(prof.train_overrides), **fields, **dict(config.overrides)}
        valid = {f.name for f in dataclasses.fields(TrainConfig)}
        bad = sorted(set(merged) - valid)
        if bad:
            raise ValueError(
                f"unknown TrainConfig field(s) {bad}; valid: {', '.join(sorted(valid))}."
            )
        return TrainConfig(**merged)
    ablation = ABLATIONS.get(config.method, {})
    if config.method == "targeted":
        # Targeting trades in-distribution accuracy for the target set, so the random-split
        # rule tends to keep a warm-up epoch and discard the targeting; the final state is
        # used instead (the N target rows are never evaluated, so nothing is tuned on them).
        fields["selection"] = "last"
    merged = {**dict(prof.cal_overrides), **ablation, **fields, **dict(config.overrides)}
    return cal_config(prof.cal_preset, **merged)


def environment_info(device: str) -> dict:
    """Hardware, package versions and the git commit, stored with every record."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for package in (
        "calkit",
        "torch",
        "numpy",
        "pandas",
        "scikit-learn",
        "matminer",
        "pymatgen",
        "umap-learn",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    commit, dirty = None, None
    root = repo_root()
    if root is not None:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
            dirty = bool(
                subprocess.run(
                    ["git", "status", "--porcelain", "--untracked-files=no", "calkit"],
                    cwd=root,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            )
        except (OSError, subprocess.CalledProcessError):
            pass
    from calkit.utils import select_device

    resolved = select_device(device)
    return {
        "git_commit": commit,
        "git_dirty_calkit": dirty,
        "versions": {"python": platform.python_version(), **versions},
        "hardware": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(resolved),
            "gpu": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else None,
        },
    }


def _atomic_write_json(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(payload, tmp, indent=1, default=_json_default)
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates 0600; records are shared files
    os.replace(tmp.name, path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def _metrics_dict(table: pd.DataFrame) -> dict:
    return {name: {k: float(v) for k, v in row.items()} for name, row in table.iterrows()}


def _predictions(model, bundle: DataBundle, masks: dict[str, np.ndarray], names: list[str]) -> dict:
    from calkit.metrics import predict

    out = {}
    for name in names:
        if name not in masks or not masks[name].any():
            continue
        rows = np.flatnonzero(masks[name])
        out[name] = {
            "id": bundle.frame[col.ID].to_numpy()[rows].tolist(),
            "y": bundle.y[rows].round(5).tolist(),
            "pred": np.asarray(predict(model, bundle.X[rows])).round(5).tolist(),
        }
    return out


def _baseline_models(config: RunConfig, bundle: DataBundle, root, progress: bool):
    """The baseline's (best, EMA) models: from its checkpoint, or trained (and recorded) now."""
    import torch

    from calkit.models import build_model

    base = config.baseline()
    ckpt = _checkpoint_path(base, root)
    if not ckpt.is_file():
        run_experiment(base, root=root, progress=progress, bundle=bundle)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    models = []
    for key in ("model", "ema_model"):
        model = build_model(base.model_name(), bundle.X.shape[1])
        model.load_state_dict(state[key])
        model.eval()
        models.append(model)
    return models


def run_experiment(
    config: RunConfig,
    root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    bundle: DataBundle | None = None,
) -> dict:
    """Run one configuration and write its record, or return the record if it exists.

    The record (JSON, under ``results/<profile>/runs/<run_id>.json``) holds the config, the
    training config actually used, per-set metrics of the raw best and the EMA model, the
    per-epoch history, predictions on the relation and target sets, the seed, the git
    commit, package versions, hardware and wall time. It is written atomically, so an
    interrupted run leaves no record and is simply run again.

    Args:
        config: The run.
        root: Results root (default ``$CALKIT_RESULTS`` or the repository's ``results/``).
        force: Recompute even if a record exists.
        progress: Show progress bars.
        bundle: A prepared data bundle to reuse (must match the config's data set/profile).

    Returns:
        The record as a dict.
    """
    import torch

    from calkit.cal import FineTuneConfig, fine_tune_on_set, fit_cal
    from calkit.metrics import evaluate_sets
    from calkit.models import build_model, parameter_count
    from calkit.training import train
    from calkit.utils import seed_everything

    config.validate()
    path = record_path(config, root)
    if path.is_file() and not force:
        return load_record(path)
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if bundle is None or (bundle.dataset, bundle.profile) != (config.dataset, config.profile):
        bundle = prepare_data(config.dataset, config.profile, progress=progress)
    masks = bundle.masks()
    train_cfg = training_config(config)
    train_cfg.progress = progress
    preset = config.model_name()
    extra: dict = {}
    eval_masks = masks
    if config.method == "finetune":
        _, base_ema = _baseline_models(config, bundle, root, progress)
        ft_cfg = FineTuneConfig(seed=config.seed, device=config.device)
        result, target_idx, eval_masks = fine_tune_on_set(
            base_ema, bundle.X, bundle.y, masks, config.target_set, config.n_target, ft_cfg
        )
        best_model = ema_model = result.model
        extra.update(
            target_set=col.resolve_set_name(config.target_set),
            target_indices=target_idx.tolist(),
            finetune={
                "lr": result.lr,
                "epochs": result.epochs,
                "heldout_loss": result.heldout_loss,
                "baseline_heldout_loss": result.baseline_heldout_loss,
                "note": result.note,
                "grid": result.grid.to_dict(orient="records"),
            },
        )
        history = pd.DataFrame()
        run_info: dict = {}
        n_params = parameter_count(best_model)
    else:
        seed_everything(config.seed)
        model = build_model(preset, bundle.X.shape[1])
        n_params = parameter_count(model)
        if config.method == "baseline":
            result = train(model, bundle.X, bundle.y, masks, train_cfg)
        else:
            result = fit_cal(
                model,
                bundle.X,
                bundle.y,
                masks,
                train_cfg,
                target_set=config.target_set if config.method == "targeted" else None,
                n_target=config.n_target,
            )
            eval_masks = result.sets
            extra.update(
                w_final=np.asarray(result.w).round(6).tolist(),
                w_frozen=int(np.asarray(result.frozen).sum()),
                selected_in_warmup=bool(result.selected_in_warmup),
            )
            if result.target_set is not None:
                extra.update(
                    target_set=result.target_set, target_indices=result.target_indices.tolist()
                )
        best_model, ema_model = result.model, result.ema_model
        history = result.history
        run_info = {
            "best_epoch": int(result.best_epoch),
            "epochs_run": int(result.epochs_run),
            "stopped_early": bool(result.stopped_early),
            "diverged": bool(result.diverged),
            "diverged_epoch": result.diverged_epoch,
        }
        if config.method == "baseline":
            ckpt = _checkpoint_path(config, root)
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {"model": best_model.state_dict(), "ema_model": ema_model.state_dict()}, ckpt
            )
    eval_masks = {k: np.asarray(v, bool) for k, v in dict(eval_masks).items()}
    pred_sets = [col.RELATION] + ([extra["target_set"]] if "target_set" in extra else [])
    record = {
        "run_id": config.run_id,
        "config": config.canonical(),
        "train_config": dataclasses.asdict(train_cfg),
        "model_preset": preset,
        "n_parameters": n_params,
        "seed": config.seed,
        "metrics": {
            "best": _metrics_dict(evaluate_sets(best_model, bundle.X, bundle.y, eval_masks)),
            "ema": _metrics_dict(evaluate_sets(ema_model, bundle.X, bundle.y, eval_masks)),
        },
        "predictions": _predictions(ema_model, bundle, eval_masks, sorted(set(pred_sets))),
        **run_info,
        **extra,
        "history": {k: list(v.values()) for k, v in json.loads(history.to_json()).items()},
        "data": {
            "dataset": bundle.dataset,
            "rows": len(bundle.frame),
            "fit_on": bundle.fit_on,
            "split_config": bundle.split_config.to_dict(),
        },
        **environment_info(config.device),
        "started_at": started_at,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    _atomic_write_json(record, path)
    return record


def load_record(path: str | Path) -> dict:
    """Read one run record."""
    with open(path) as handle:
        return json.load(handle)


def load_records(profile: str, root: str | Path | None = None) -> list[dict]:
    """Every run record of a profile (an empty list if there are none)."""
    folder = results_dir(profile, root) / "runs"
    return [load_record(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def method_key(config: dict) -> str:
    """``method`` plus its config overrides, e.g. ``cal[supervised_on_all=False]``."""
    overrides = config.get("overrides") or []
    if not overrides:
        return config["method"]
    return config["method"] + "[" + ",".join(f"{k}={v}" for k, v in overrides) + "]"


def metrics_frame(records: list[dict], which: str = "ema") -> pd.DataFrame:
    """Long table: one row per (run, set) with the method, seed, target and metrics.

    Runs with config overrides are kept apart: their ``method`` is :func:`method_key`.
    """
    rows = []
    for rec in records:
        cfg = rec["config"]
        for set_name, values in rec["metrics"][which].items():
            rows.append(
                {
                    "run_id": rec["run_id"],
                    "method": method_key(cfg),
                    "seed": cfg["seed"],
                    "target_set": cfg.get("target_set"),
                    "n_target": cfg.get("n_target", 0),
                    "set": set_name,
                    **values,
                }
            )
    return pd.DataFrame(rows)
