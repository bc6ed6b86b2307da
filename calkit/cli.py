"""The ``calkit`` command: ``calkit sweep GRID.yaml [options]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``calkit <command> ...``."""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"sweep": "run a resumable grid of experiments (see `calkit sweep --help`)",
                "sets": "recompute the shipped OOD-set files (see `calkit sets --help`)"}
    if not argv or argv[0] not in commands:
        listing = "\n".join(f"  {name}: {text}" for name, text in commands.items())
        print(f"usage: calkit <command> [options]\ncommands:\n{listing}", file=sys.stderr)
        return 2
    if argv[0] == "sets":
        return sets_main(argv[1:])
    from calkit import sweep

    return sweep.main(argv[1:])


def sets_main(argv: list[str]) -> int:
    """``calkit sets``: rebuild the package's shipped set files on this machine."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="calkit sets", description="Compute the OOD sets of a data set on this machine and "
        "write them as the shipped set file (the sets every machine then uses).")
    parser.add_argument("--dataset", default="mp2019")
    parser.add_argument("--profile", action="append", default=None,
                        help="profile(s) whose subsample to write (default: smoke and cpu)")
    args = parser.parse_args(argv)
    from calkit.pipeline import write_shipped_sets

    for profile in args.profile or ["smoke", "cpu"]:
        print(write_shipped_sets(args.dataset, profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
