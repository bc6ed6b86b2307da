"""Write the Colab bootstrap cell of every notebook and the intro's badges from one setting.

The setting is the repository URL in _config.yml (``repository.url``, which the book's launch
buttons read too).

    python tools/sync_colab.py          # rewrite what differs
    python tools/sync_colab.py --check  # exit 1 naming what differs (the tests run this)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

BOOTSTRAP = '''\
# Colab bootstrap (tools/sync_colab.py writes this cell from _config.yml's repository.url): on
# Google Colab, or wherever CALKIT_BOOTSTRAP=1, clone the repository (its committed run records and
# grids come with it), install calkit with the book's extras and run from the clone's notebooks/
# folder; the data download themselves, hash-checked. Elsewhere this cell does nothing.
import os
import sys

if "google.colab" in sys.modules or os.environ.get("CALKIT_BOOTSTRAP") == "1":
    import importlib
    import subprocess

    REPO = os.environ.get("CALKIT_REPO", "{repo}")
    CLONE = os.path.abspath("calkit")
    if not os.path.isdir(os.path.join(CLONE, ".git")):
        subprocess.run(["git", "clone", "--depth", "1", REPO, CLONE], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE + "[book]"],
                   check=True)
    sys.path.insert(0, CLONE)
    importlib.invalidate_caches()
    os.chdir(os.path.join(CLONE, "notebooks"))'''

BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/")


def repository_url() -> str:
    """The repository URL: the one setting (``_config.yml``'s ``repository.url``)."""
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def bootstrap_cell() -> str:
    """The bootstrap cell's source for this repository."""
    return BOOTSTRAP.replace("{repo}", repository_url())


def sync(check: bool) -> list[str]:
    """Rewrite (or, with ``check``, list) the notebooks and pages that differ."""
    differs = []
    cell = bootstrap_cell()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        if "".join(first["source"]) != cell:
            differs.append(str(path.relative_to(ROOT)))
            if not check:
                first["source"] = cell.splitlines(keepends=True)
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    slug = repository_url().removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{slug}/blob/main/"
    intro = ROOT / "book" / "intro.md"
    text = intro.read_text()
    new = BADGE.sub(badge, text)
    if new != text:
        differs.append(str(intro.relative_to(ROOT)))
        if not check:
            intro.write_text(new)
    return differs


def main() -> int:
    """Sync, or with ``--check`` report; exit 1 when checking finds a difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what differs")
    check = parser.parse_args().check
    differs = sync(check)
    for name in differs:
        print(f"{name}: Colab bootstrap or badge differs from _config.yml's repository.url")
    return 1 if differs and check else 0


if __name__ == "__main__":
    sys.exit(main())
