"""Where a record comes from: the code's commit, the packages, the hardware and its speed.

Also the thread setting a run is computed under, so that every entry point (runs, cross
validation, benchmarks) measures and records it the same way.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterator
from typing import Any

from calkit.files import repo_root


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (restored afterwards)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _git_state() -> tuple[str | None, bool | None]:
    """The repository's commit and whether ``calkit/`` has uncommitted changes."""
    root = repo_root()
    if root is None:
        return None, None
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run([*git, "status", "--porcelain", "--untracked-files=no",
                                     "calkit"], capture_output=True, text=True,
                                    check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, dirty


CODE_STATE = _git_state()
"""Commit and dirty flag read when this code was imported: a long sweep worker keeps the code it
loaded even if the checkout moves on, so the record must name that commit, not today's."""


def environment_info(device: str) -> dict[str, Any]:
    """Hardware, package versions and the git commit of the running code, for every record."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from calkit.utils import cpu_model, run_matmul_gflops, select_device

    versions: dict[str, str | None] = {}
    for package in ("calkit", "torch", "numpy", "pandas", "scikit-learn", "matminer",
                    "pymatgen", "umap-learn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    commit, dirty = CODE_STATE
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
            "cpu": cpu_model(),
            # The run's own yardstick (same device and thread count): machines differ ~3x.
            "matmul_gflops": run_matmul_gflops(str(resolved), torch.get_num_threads()),
        },
    }
