"""The ``calkit`` command: ``calkit sweep GRID.yaml [options]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``calkit <command> ...``."""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"sweep": "run a resumable grid of experiments (see `calkit sweep --help`)"}
    if not argv or argv[0] not in commands:
        listing = "\n".join(f"  {name}: {text}" for name, text in commands.items())
        print(f"usage: calkit <command> [options]\ncommands:\n{listing}", file=sys.stderr)
        return 2
    from calkit import sweep

    return sweep.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
