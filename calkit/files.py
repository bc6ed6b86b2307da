"""File helpers every module may use: the checkout, the caches, atomic writes, file hashes.

Light on purpose (standard library only), so the engine, the store and the feature cache can
import it without pulling in pymatgen.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "CALKIT_CACHE"


def repo_root() -> Path | None:
    """Return the repository checkout that holds this package, if there is one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def local_data_dir() -> Path:
    """Folder where downloads are stored: ``<repo>/data`` or ``~/.cache/calkit/data``."""
    root = repo_root()
    return root / "data" if root else Path.home() / ".cache" / "calkit" / "data"


def cache_dir(kind: str) -> Path:
    """Folder for derived artefacts (features, embeddings, splits) of one kind.

    ``$CALKIT_CACHE`` wins; otherwise ``<repo>/.cache`` or ``~/.cache/calkit``.
    """
    base = os.environ.get(CACHE_ENV)
    if base:
        path = Path(base)
    elif (root := repo_root()) is not None:
        path = root / ".cache"
    else:
        path = Path.home() / ".cache" / "calkit"
    path = path / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only if the block succeeds.

    Readers see the old file or the whole new one, never half a file: what lets two
    processes (sweep workers, notebooks built side by side) share caches, records and
    checkpoints, and a killed run leave nothing corrupt behind.

    Args:
        path: The file to write.

    Yields:
        The temporary path to write to, in the same folder. Writers that append a suffix
        to a bare name (``np.save``) must be given an open file instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A ".tmp" name, so that no reader globbing for the real suffix picks up half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                     suffix=".tmp", delete=False) as handle:
        tmp = Path(handle.name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # NamedTemporaryFile creates 0600; these are shared files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
