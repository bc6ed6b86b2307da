"""Run configs, their resolution into everything a run computes with, and the run identity.

A :class:`RunConfig` is what a user asks for (method, data set, profile, seed, target, a few
overrides). :meth:`RunConfig.resolve` turns it into a :class:`ResolvedRun`: the recipe, SAL
and fine-tuning settings after the profile, the method's registered changes and the
overrides are applied, plus the data files' versions, the feature preset, the set
construction, the model architecture and the thread count. The run id hashes all of that and
:data:`RECORD_FORMAT`, so a stored record whose id differs from what the code resolves today
for the same request is *stale* (:mod:`calkit.store`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from calkit import columns as col
from calkit.config import FineTuneConfig, SALConfig, TrainConfig, split_overrides, with_fields
from calkit.data import check_dataset_name
from calkit.dataplan import DataPlan, plan_data
from calkit.features import feature_identity
from calkit.methods import Method, get_method
from calkit.models import PRESETS
from calkit.profiles import Profile, check_profile

RECORD_FORMAT = 2
"""Version of the record layout and of what the run id covers; bumping it makes every
stored record stale."""

DEVICES_HELP = "'auto', 'cpu' or 'cuda[:i]'"


@dataclass(frozen=True)
class RunConfig:
    """What one run is asked to compute (``device`` aside).

    Attributes:
        method: A registered method (:func:`calkit.methods.method_names`).
        dataset: Data set name, or the path of a CSV with a formula column.
        profile: Profile name (sets the model, recipe, SAL settings and data size).
        seed: Seed of the model initialisation and of every draw during training.
        target_set: OOD set (name or alias) for targeted methods.
        target: The property to learn; ``None`` takes the data set's default (``delta_e`` on
            the Materials Project tables; a user file must name its column).
        n_target: Number of target rows for targeted methods.
        target_seed: Seed of the draw of the target rows (paper 3141; the same rows for
            every targeted method).
        protocol: Validation protocol: ``"clean"`` (validation rows in no OOD set; the
            primary protocol) or ``"paper"`` (random splits over all rows, as the paper).
        sets_seed: Seed of the set construction (UMAP, random splits). 0 uses the shipped
            set file; other seeds build the sets on this machine (a second source of
            variance for the headline comparisons).
        model_preset: Override of the profile's (or method's) model preset.
        epochs: Override of the recipe's epoch budget.
        device: ``auto`` (cuda when present), ``cpu`` or ``cuda``; not part of the run id.
        overrides: Further ``(field, value)`` overrides of the recipe or SAL settings.
    """

    method: str = "baseline"
    dataset: str = "mp2019"
    profile: str = "cpu"
    seed: int = 0
    target_set: str | None = None
    n_target: int = 0
    target: str | None = None
    target_seed: int = 3141
    protocol: col.Protocol = "clean"
    sets_seed: int = 0
    model_preset: str | None = None
    epochs: int | None = None
    device: str = "auto"
    overrides: tuple[tuple[str, Any], ...] = ()

    def validate(self) -> RunConfig:
        """Check every field; raise ``ValueError`` naming the bad value and the valid ones."""
        self.checked()
        return self

    def checked(self) -> tuple[Method, Profile, DataPlan, dict[str, Any], dict[str, Any]]:
        """Check every field and return what the checks decided.

        Returns:
            The registry entry, the profile, the data plan (:func:`calkit.dataplan.plan_data`,
            which checks the data set, target, profile and protocol) and the overrides split
            into recipe and SAL fields.

        Raises:
            ValueError: A bad field, named with the valid values.
        """
        data = plan_data(self.dataset, self.profile, self.target, self.protocol,
                         sets_seed=self.sets_seed)
        prof = check_profile(self.profile)
        method = get_method(self.method)
        if self.model_preset is not None and self.model_preset not in PRESETS:
            raise ValueError(f"unknown model preset {self.model_preset!r}. "
                             f"Valid presets: {', '.join(PRESETS)}.")
        if method.needs_target:
            if not self.target_set or self.n_target < 1:
                raise ValueError(
                    f"method {self.method!r} needs target_set (e.g. 'relation', 'prior', "
                    f"'covariate') and n_target >= 1; got {self.target_set!r}, {self.n_target}.")
            offered = data.ood_sets
            if col.resolve_set_name(self.target_set, target=data.target) not in offered:
                raise ValueError(
                    f"target set {self.target_set!r} does not exist on data set "
                    f"{self.dataset!r} (target {data.target}); it has: {', '.join(offered)} "
                    "(aliases: covariate, prior, extreme).")
        elif self.target_set or self.n_target:
            raise ValueError(f"method {self.method!r} takes no target; drop target_set and "
                             f"n_target (got {self.target_set!r}, {self.n_target}).")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be {DEVICES_HELP}, got {self.device!r}")
        train_over, sal_over = split_overrides(dict(self.overrides))
        return method, prof, data, train_over, sal_over

    def request(self) -> dict[str, Any]:
        """The fields that define the request, with aliases resolved (no device)."""
        return _request(self, self.target_column)

    @property
    def target_column(self) -> str:
        """The target column this run learns (the data set's default when ``target`` is None)."""
        return check_dataset_name(self.dataset, self.target).check_target(self.target)

    @classmethod
    def from_request(cls, request: dict[str, Any], device: str = "auto") -> RunConfig:
        """Rebuild a config from :meth:`request` (as stored in a record)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in request.items() if k in fields}
        values["overrides"] = tuple(tuple(kv) for kv in values.get("overrides", ()))
        return cls(**values, device=device)

    def baseline(self) -> RunConfig:
        """The plain baseline run of the same seed that fine-tuning starts from."""
        return replace(self, method="baseline", target_set=None, n_target=0, target_seed=3141)

    def resolve(self) -> ResolvedRun:
        """Everything the run computes with (see :class:`ResolvedRun`)."""
        return resolve(self)

    @property
    def run_id(self) -> str:
        """``<method>-<hash of the resolved run>``: the record's file name."""
        return self.resolve().run_id


@dataclass(frozen=True)
class ResolvedRun:
    """A run config with every setting resolved.

    Attributes:
        config: The request.
        method: Its registry entry.
        model_preset: The model preset used.
        train: The recipe (profile recipe + method changes + overrides).
        sal: The SAL settings (CAL family), else ``None``.
        finetune: The fine-tuning protocol (fine-tune family), else ``None``.
        threads: torch threads the run is computed with.
        data: The data decisions (:func:`calkit.dataplan.plan_data`), which the runner
            hands to :func:`calkit.pipeline.prepare_plan` as they are.
        request: :meth:`RunConfig.request`, as the record stores it.
        identity: Everything the run id covers.
        run_id: ``<method>-<12 hex digits>``.
    """

    config: RunConfig
    method: Method
    model_preset: str
    train: TrainConfig
    sal: SALConfig | None
    finetune: FineTuneConfig | None
    threads: int
    data: DataPlan
    request: dict[str, Any]
    identity: dict[str, Any]
    run_id: str


def resolve(config: RunConfig) -> ResolvedRun:
    """Compose profile, registry entry and overrides into a :class:`ResolvedRun`.

    Order (later wins): the profile's recipe and SAL settings, the method's registered
    changes, ``epochs``, then ``overrides``; the seed and device are the config's.
    """
    method, prof, data, train_over, sal_over = config.checked()
    if sal_over and method.family != "cal":
        raise ValueError(f"method {config.method!r} has no SAL settings; "
                         f"drop the override(s) {sorted(sal_over)}.")
    epochs = {} if config.epochs is None else {"epochs": config.epochs}
    train = with_fields(prof.recipe, {**method.recipe_changes, **epochs, **train_over,
                                      "seed": config.seed, "device": config.device}).validate()
    sal = with_fields(prof.sal, {**method.sal_changes, **sal_over}).validate() \
        if method.family == "cal" else None
    finetune = prof.finetune.validate() if method.family == "finetune" else None
    preset = config.model_preset or method.model_preset or prof.model_preset
    model = {k: v for k, v in dataclasses.asdict(PRESETS[preset]).items() if k != "note"}
    request = _request(config, data.target)
    target = None
    if method.needs_target:
        target = {"set": request["target_set"], "n": config.n_target, "seed": config.target_seed}
    identity = {
        "format": RECORD_FORMAT,
        "method": method.name,
        "profile": prof.name,
        "seed": config.seed,
        "data": data.data_identity(),
        "features": {**feature_identity(), "fit_on": data.fit_on, "clip": data.clip},
        "sets": data.sets_identity(),
        "protocol": config.protocol,
        "target": target,
        "model": {"preset": preset, **model},
        "train": train.identity(),
        "sal": None if sal is None else sal.identity(),
        "finetune": None if finetune is None else finetune.identity(),
        "baseline": resolve(config.baseline()).run_id if method.needs_baseline else None,
        "threads": prof.threads,
    }
    if method.settings:  # only when present, so the ids of methods without settings stay put
        identity["method_settings"] = dict(method.settings)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode())
    return ResolvedRun(config, method, preset, train, sal, finetune, prof.threads, data,
                       request, identity, f"{method.name}-{digest.hexdigest()[:12]}")


def _request(config: RunConfig, target: str) -> dict[str, Any]:
    """:meth:`RunConfig.request`, with the run's target column already known."""
    out = dataclasses.asdict(config)
    out.pop("device")
    out["overrides"] = sorted([list(kv) for kv in config.overrides])
    if config.target_set is not None:
        out["target_set"] = col.resolve_set_name(config.target_set, target=target)
    return out
