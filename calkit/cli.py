"""The ``calkit`` command (also installed as ``calkit-ood``).

``calkit train`` and ``calkit predict`` work on a user's composition table; ``calkit sweep``
runs the book's resumable grids and ``calkit sets`` rebuilds the shipped OOD-set files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMULA_COLUMNS = ("formula", "composition")
"""Column names read as the formula when ``--formula-col`` is not given."""


class CLIError(Exception):
    """A user error: printed as one line that says what to change, exit status 2."""


def _version() -> str:
    from calkit import __version__

    return f"calkit-ood {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``train``, ``predict``, ``sweep``, ``sets``."""
    from calkit.estimators import ESTIMATORS

    parser = argparse.ArgumentParser(
        prog="calkit", description="Crystal Adversarial Learning (CAL) and the plain IR-net on "
        "composition tables: train, predict, and re-run the book's experiments.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train CAL or the IR-net on a CSV of formulas and a property",
        description="Featurise the formulas (the paper's 145 composition features), train, and "
        "save model, scalers and settings to one file.")
    train.add_argument("table", help="CSV (or .csv.gz) with a formula column and the property")
    train.add_argument("--target", required=True, help="the property column to learn")
    train.add_argument("--formula-col", default=None,
                       help=f"formula column (default: the first of {', '.join(FORMULA_COLUMNS)})")
    train.add_argument("--method", default="cal", help=f"one of {', '.join(ESTIMATORS)} "
                       "(baseline: the plain IR-net); default cal")
    train.add_argument("-o", "--output", required=True, help="model file to write, e.g. m.calkit")
    train.add_argument("--epochs", type=int, default=None, help="epoch budget (default: the "
                       "estimator's: 100 for the IR-net, the cpu profile's 60 for CAL)")
    train.add_argument("--n-models", type=int, default=1,
                       help="networks in a deep ensemble (>= 2 gives a std column in predict)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--drop-invalid", action="store_true",
                       help="drop rows whose formula cannot be featurised instead of stopping")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    predict = commands.add_parser(
        "predict", help="predict the property for a CSV of formulas with a trained model",
        description="Writes the input table with a prediction column (and its standard "
        "deviation over the ensemble, for an ensemble).")
    predict.add_argument("model", help="a file written by `calkit train`")
    predict.add_argument("table", help="CSV with a formula column")
    predict.add_argument("-o", "--output", required=True, help="CSV to write")
    predict.add_argument("--formula-col", default=None)
    predict.add_argument("--on-invalid", choices=("raise", "nan"), default="raise",
                         help="formulas that cannot be featurised: stop (default) or write NaN")
    predict.add_argument("--quiet", action="store_true")

    commands.add_parser("sweep", help="run a resumable grid of experiments (calkit sweep --help)",
                        add_help=False)
    commands.add_parser("sets", help="recompute the shipped OOD-set files (calkit sets --help)",
                        add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``calkit <command> ...``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "sweep":
        from calkit import sweep

        return sweep.main(argv[1:])
    if argv and argv[0] == "sets":
        return sets_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return {"train": train_main, "predict": predict_main}[args.command](args)
    except CLIError as exc:
        print(f"calkit {args.command}: {exc}", file=sys.stderr)
        return 2


def _read_table(path: str, formula_col: str | None, needed: tuple[str, ...] = ()):
    import pandas as pd

    if not Path(path).is_file():
        raise CLIError(f"no file {path}.")
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as exc:  # a parser error names the line
        raise CLIError(f"{path} is not a readable CSV ({exc}).") from exc
    column = formula_col or next((c for c in FORMULA_COLUMNS if c in table.columns), None)
    if column is None or column not in table.columns:
        raise CLIError(f"{path} has no formula column {formula_col or FORMULA_COLUMNS}; its "
                       f"columns are {list(table.columns)}. Name it with --formula-col.")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise CLIError(f"{path} has no column {missing[0]!r}; its columns are "
                       f"{list(table.columns)}.")
    return table, column


def _features(formulas, quiet: bool):
    """The 145 features and a mask of the formulas that could not be featurised."""
    import numpy as np

    from calkit.features import featurize

    values = featurize([str(f) for f in formulas], progress=not quiet,
                       on_error="ignore").to_numpy(np.float32)
    return values, ~np.isfinite(values).all(axis=1)


def _bad_formulas(formulas, bad) -> str:
    shown = [str(f) for f in formulas[bad][:5]]
    return f"{int(bad.sum())} formula(s) could not be featurised, e.g. {shown}"


def train_main(args: argparse.Namespace) -> int:
    """``calkit train``: featurise, train, save."""
    import numpy as np
    import pandas as pd

    from calkit.estimators import ESTIMATORS

    if args.method not in ESTIMATORS:
        raise CLIError(f"unknown method {args.method!r}; valid: {', '.join(ESTIMATORS)}.")
    table, column = _read_table(args.table, args.formula_col, (args.target,))
    y = pd.to_numeric(table[args.target], errors="coerce").to_numpy(np.float64)
    if np.isnan(y).any():
        rows = np.flatnonzero(np.isnan(y))[:5].tolist()
        raise CLIError(f"column {args.target!r} has {int(np.isnan(y).sum())} missing or "
                       f"non-numeric value(s) (rows {rows}): fix or drop them.")
    X, bad = _features(table[column].to_numpy(), args.quiet)
    if bad.any() and not args.drop_invalid:
        raise CLIError(f"{_bad_formulas(table[column].to_numpy(), bad)}: fix them, or pass "
                       f"--drop-invalid to train without them.")
    if bad.any():
        print(f"calkit train: dropped {_bad_formulas(table[column].to_numpy(), bad)}.",
              file=sys.stderr)
    X, y = X[~bad], y[~bad]
    params = {"n_models": args.n_models, "seed": args.seed, "progress": not args.quiet}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    try:
        model = ESTIMATORS[args.method](**params).fit(X, y)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    path = model.save(args.output)
    print(f"calkit train: {args.method} on {len(y)} rows of {args.table} "
          f"({args.target}), {args.n_models} network(s); wrote {path}")
    return 0


def predict_main(args: argparse.Namespace) -> int:
    """``calkit predict``: load, featurise, predict, write."""
    import warnings

    from calkit.estimators import load

    try:
        model = load(args.model)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    table, column = _read_table(args.table, args.formula_col)
    X, bad = _features(table[column].to_numpy(), args.quiet)
    if bad.any() and args.on_invalid == "raise":
        raise CLIError(f"{_bad_formulas(table[column].to_numpy(), bad)}: fix them, or pass "
                       f"--on-invalid nan to write NaN for them.")
    model.set_params(on_invalid="nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the count is printed below
        if len(model.models_) > 1:
            mean, std = model.predict(X, return_std=True)
            table["prediction"], table["prediction_std"] = mean, std
        else:
            table["prediction"] = model.predict(X)
    table.to_csv(args.output, index=False)
    note = f", {int(bad.sum())} NaN (formulas that could not be featurised)" if bad.any() else ""
    print(f"calkit predict: {len(table)} rows{note}; wrote {args.output}")
    return 0


def sets_main(argv: list[str]) -> int:
    """``calkit sets``: rebuild the package's shipped set files on this machine."""
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
