"""pyproject.toml states lower bounds; constraints.txt pins every one of them inside its range."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads TOML")


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
            out[canonicalize_name(name)] = Version(version)
    return out


def test_dependencies_are_ranges_and_constraints_pin_each_inside_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    pinned = pins()
    for req in requirements:
        assert not any(s.operator in ("==", "===") for s in req.specifier), \
            f"{req}: exact pins belong in constraints.txt"
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} has no pin in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), (str(req), pinned[name])
    # The CPU torch wheel and Colab: a platform's own torch satisfies the package's range.
    torch = next(r for r in requirements if r.name == "torch")
    assert torch.specifier.contains("2.6.0") and torch.specifier.contains("2.13.0")
    pandas = next(r for r in requirements if r.name == "pandas")
    assert not pandas.specifier.contains("3.0.0")  # matminer 0.10 needs pandas<3


def test_make_and_conda_install_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -c constraints.txt -e '.[book,test]'" in makefile
    assert re.search(r"^\$\(STAMP\):.*constraints\.txt", makefile, re.M)
    assert "-c constraints.txt" in (ROOT / "environment.yml").read_text()
