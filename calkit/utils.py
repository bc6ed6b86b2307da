"""Seeding, device selection and set-mask helpers shared by the training modules."""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Mapping
from typing import TypeAlias

import numpy as np
import pandas as pd
import torch

from calkit.columns import CLEAN_SPLITS, RANDOM_SPLITS, TRAIN

SetMasks: TypeAlias = Mapping[str, np.ndarray] | pd.DataFrame


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a dedicated CPU generator.

    A dedicated generator (rather than the global one) drives shuffling so that
    adding an unrelated random call elsewhere cannot change the batch order.

    Args:
        seed: Any integer.

    Returns:
        A ``torch.Generator`` seeded with ``seed``.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when present, else CPU.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.

    Returns:
        The ``torch.device`` to use.

    Raises:
        ValueError: If CUDA is requested but not available.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} requested but CUDA is not available; use device='auto' or 'cpu'."
        )
    return dev


def matmul_rate(n: int = 4096, reps: int = 5, device: str | torch.device = "cpu") -> float:
    """Float32 FLOP/s of a square ``torch.mm`` of size ``n`` on ``device`` (best of ``reps``).

    The yardstick every time in calkit is quoted against: the machines that run it differ
    about 3x in speed, so a time means little without the rate of the machine that took it.
    It uses the current torch thread count.
    """
    dev = select_device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dev)
    b = torch.randn(n, n, generator=gen).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    torch.mm(a, b)
    sync()
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


@functools.cache
def run_matmul_gflops(device: str, threads: int) -> float:
    """:func:`matmul_rate` in GFLOP/s (n = 1024), once per process, device and thread count.

    Cheap enough (0.2 s measured on one busy CPU core) to store with every run record, so that a
    record's wall time can be read against the rate of the machine that took it.
    """
    del threads  # part of the cache key: the rate is measured under the caller's thread count
    return round(matmul_rate(1024, reps=3, device=device) / 1e9, 1)


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def as_mask_dict(sets: SetMasks, n_rows: int) -> dict[str, np.ndarray]:
    """Convert a dict or DataFrame of boolean set flags into a dict of bool arrays.

    Args:
        sets: Mapping of set name to boolean mask (length ``n_rows``), or a DataFrame
            whose columns are such masks (non-boolean columns are ignored).
        n_rows: Number of rows of the feature matrix the masks index.

    Returns:
        ``{name: np.ndarray[bool]}`` in the input's order.

    Raises:
        ValueError: If a mask has the wrong length or the training set is missing.
    """
    if isinstance(sets, pd.DataFrame):
        items = [(str(c), sets[c].to_numpy()) for c in sets.columns if sets[c].dtype == bool]
    else:
        items = [(str(k), np.asarray(v)) for k, v in sets.items()]
    out: dict[str, np.ndarray] = {}
    for name, mask in items:
        if mask.dtype != bool:
            raise ValueError(
                f"set {name!r} must be a boolean mask, got dtype {mask.dtype}; "
                "convert with mask.astype(bool) or pass row flags, not indices."
            )
        if mask.shape != (n_rows,):
            raise ValueError(
                f"set {name!r} has shape {mask.shape} but X has {n_rows} rows; "
                "masks must flag every row of X."
            )
        out[name] = mask
    if TRAIN not in out or not out[TRAIN].any():
        raise ValueError(f"sets must contain a non-empty {TRAIN!r} mask; got {list(out)}.")
    return out


def validation_names(sets: Mapping[str, np.ndarray]) -> list[str]:
    """Return the validation splits present: the paper's ``Rsplt*`` or the clean ``Csplt*``.

    Raises:
        ValueError: If none is present (model selection needs them) or both families are.
    """
    paper = [s for s in RANDOM_SPLITS if s in sets and sets[s].any()]
    clean = [s for s in CLEAN_SPLITS if s in sets and sets[s].any()]
    if paper and clean:
        raise ValueError("sets hold both the paper's (Rsplt) and the clean (Csplt) validation "
                         "splits; keep one protocol's (calkit.splits.protocol_sets).")
    if not paper and not clean:
        raise ValueError(
            f"no validation split found; sets must contain at least one of "
            f"{', '.join(RANDOM_SPLITS)} or {', '.join(CLEAN_SPLITS)} (model selection uses "
            "their mean loss).")
    return paper or clean
