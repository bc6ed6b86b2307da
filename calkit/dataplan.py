"""The data decisions of a run, made once: which file, which rows, which target, which sets.

:func:`plan_data` turns a request (data set, profile, target, protocol, set construction) into
a :class:`DataPlan`. The run resolver (:mod:`calkit.runs`) hashes the plan into the run id and
hands the same plan to :func:`calkit.pipeline.prepare_plan`, which carries it out, so the two
can never disagree about the row cap or whether the shipped set file applies.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from calkit import columns as col
from calkit.data import FILES, DatasetInfo, check_dataset_name
from calkit.profiles import check_profile
from calkit.splits import SplitConfig, set_file_meta, shipped_sets_path

SUBSAMPLE_SEED = 0
"""Seed of a profile's row subsample (the same rows for every model seed)."""
FIT_ON: Literal["train", "all"] = "train"
"""Rows the feature scaler is fitted on in recorded runs (the paper used ``"all"``)."""
CLIP = 10.0
"""Bound on standardised feature values in recorded runs (the near-constant-feature guard)."""
TARGET_SCALING = "standardise on the training rows (formation energy: none)"
"""The rule of :func:`calkit.pipeline.target_scale`, named in the run id of every run it
applies to."""

SetsRequest = Literal["shipped", "compute"]
"""Where a caller asks the sets to come from: the shipped file where one exists, or computed."""
SetsSource = Literal["shipped", "computed"]
"""Where a plan's sets come from."""


def effective_max_rows(info: DatasetInfo, max_rows: int | None) -> int | None:
    """A profile's row cap as it applies to this data set (``None`` when it has fewer rows)."""
    if max_rows is None or (info.rows is not None and info.rows <= max_rows):
        return None
    return max_rows


def ood_set_names(info: DatasetInfo, target: str,
                  split_config: SplitConfig | None = None) -> tuple[str, ...]:
    """The OOD sets a data set offers for a target under a set construction.

    Covariate, prior (one tail, or both) and extreme always; the band-gap sets where a band gap
    exists (and is not the target); the piezo relation set on the Materials Project tables; the
    element and cluster hold-outs where the construction has them (the benchmark tasks).
    """
    config = split_config or info.split_config
    priors = ([col.tail_prior_set(target, "lower"), col.tail_prior_set(target, "upper")]
              if config.prior_tail == "both" else [col.prior_set(target)])
    names = [col.COVARIATE, *priors, col.extreme_set(target)]
    if col.BAND_GAP in info.targets and target != col.BAND_GAP:
        names += [col.HIGH_GAP, col.GAP_PRIOR]
    if info.relation:
        names.append(col.RELATION)
    names += [col.element_set(element) for element in config.element_holdouts]
    if config.cluster_k:
        names.append(col.CLUSTER)
    return tuple(names)


def uses_shipped_sets(info: DatasetInfo, target: str, split_config: SplitConfig,
                      max_rows: int | None) -> bool:
    """Whether the package's fixed set file defines this data set's sets."""
    if info.sha256 or target != info.default_target or split_config != info.split_config:
        return False  # user files, other targets and other constructions are computed
    return shipped_sets_path(info.name, effective_max_rows(info, max_rows)).is_file()


@dataclass(frozen=True)
class DataPlan:
    """Every data decision of a run, ready to be carried out and hashed.

    Attributes:
        dataset: The data set as requested (a registered name or a user file's path).
        info: Its registry entry (or the user file's description).
        target: The target column learned.
        profile: The profile whose row cap applies.
        row_cap: The profile's row cap (``None``: every row).
        split_config: How the sets are constructed (when computed).
        protocol: The validation protocol.
        sets_request: ``"shipped"``: the package's set file where one applies (see
            :attr:`sets_source`); ``"compute"``: always build the sets here.
        fit_on: Rows the feature scaler is fitted on.
        clip: Bound on standardised feature values (``None``: no guard).
    """

    dataset: str
    info: DatasetInfo
    target: str
    profile: str
    row_cap: int | None
    split_config: SplitConfig
    protocol: col.Protocol
    sets_request: SetsRequest
    fit_on: Literal["train", "all"] = FIT_ON
    clip: float | None = CLIP

    @property
    def max_rows(self) -> int | None:
        """The row cap as it applies to this data set (``None`` when it has fewer rows)."""
        return effective_max_rows(self.info, self.row_cap)

    @functools.cached_property
    def sets_source(self) -> SetsSource:
        """``"shipped"`` when the package's set file defines the sets, else ``"computed"``.

        The shipped file applies to a registered data set's default target, the default set
        construction and a row cap for which a file ships (:func:`uses_shipped_sets`).
        """
        if self.sets_request == "shipped" and uses_shipped_sets(
                self.info, self.target, self.split_config, self.row_cap):
            return "shipped"
        return "computed"

    @property
    def ood_sets(self) -> tuple[str, ...]:
        """The OOD sets this data set offers for the plan's target (:func:`ood_set_names`)."""
        return ood_set_names(self.info, self.target, self.split_config)

    @property
    def shipped_file(self) -> Path | None:
        """The shipped set file the sets are read from (``None`` when computed)."""
        if self.sets_source != "shipped":
            return None
        return shipped_sets_path(self.info.name, self.max_rows)

    def data_identity(self) -> dict[str, Any]:
        """The data files (by their sha256), the subsample and the target the run reads.

        The target and its scaling appear only for targets other than ``delta_e``, so the ids
        of the formation-energy runs recorded before targets became a parameter stay put.
        """
        info = self.info
        if info.sha256:  # a user's table: known by its bytes, not by where it lies
            out: dict[str, Any] = {"dataset": "user file", "file_sha256": info.sha256}
        else:
            files = set(info.files) | ({"piezoelectric_tensor"} if info.relation else set())
            out = {"dataset": info.name,
                   "files": {k: FILES[k].sha256[0] for k in sorted(files)}}
        out.update({"max_rows": self.max_rows, "subsample_seed": SUBSAMPLE_SEED})
        if self.target != col.DELTA_E:
            out.update({"target": self.target, "target_scaling": TARGET_SCALING})
        return out

    def sets_identity(self) -> dict[str, Any]:
        """What the run's sets are: the shipped file (by hash) or a machine-local computation."""
        path = self.shipped_file
        if path is not None:
            return {"source": "shipped", "file": path.name,
                    "sha256": set_file_meta(path)["sha256"]}
        return {"source": "computed", "split_config": self.split_config.to_dict()}


def plan_data(dataset: str = "mp2019", profile: str = "cpu", target: str | None = None,
              protocol: col.Protocol = "clean", split_config: SplitConfig | None = None,
              sets: SetsRequest = "shipped", fit_on: Literal["train", "all"] = FIT_ON,
              clip: float | None = CLIP, sets_seed: int = 0) -> DataPlan:
    """Decide a run's data: the one place where the row cap and the set source are chosen.

    Args:
        dataset: A registered data set or the path of a CSV with a formula column.
        profile: The profile whose row cap applies.
        target: The property to learn; ``None`` takes the data set's default.
        protocol: ``"clean"`` or ``"paper"``.
        split_config: How to construct the sets; by default the data set's own construction
            (:attr:`calkit.data.DatasetInfo.split_config`) with seed ``sets_seed``.
        sets: ``"shipped"`` reads the package's set file where one exists for this data set,
            target, construction and row cap; ``"compute"`` always builds the sets here.
        fit_on: Rows the feature scaler is fitted on (``"train"`` or ``"all"``).
        clip: Bound on standardised feature values; ``None`` disables the guard.
        sets_seed: Seed of the default set construction (ignored with ``split_config``).

    Returns:
        The :class:`DataPlan`.

    Raises:
        ValueError: An unknown data set, target, profile, protocol or set source.
    """
    if sets not in ("shipped", "compute"):
        raise ValueError(f"sets_source must be 'shipped' or 'compute', got {sets!r}.")
    if protocol not in col.PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}. "
                         f"Valid protocols: {', '.join(col.PROTOCOLS)}.")
    row_cap = check_profile(profile).max_rows
    info = check_dataset_name(dataset, target)
    split_config = split_config or dataclasses.replace(info.split_config, seed=sets_seed)
    return DataPlan(str(dataset), info, info.check_target(target), profile, row_cap,
                    split_config, protocol, sets, fit_on, clip)
