"""matminer against calkit.fast_features on the same compositions, in one run.

Usage::

    python benchmarks/featurize.py            # a seeded 2,000-row sample of mp2019
    python benchmarks/featurize.py --quick    # 300 rows
    python benchmarks/featurize.py --n 10000 --repeat 3

Needs ``CALKIT_DATA`` (or the data in the repository's ``data/`` folder). matminer runs in
one process as :func:`calkit.matminer_features.featurize_chunk` does (``set_n_jobs(1)``, featurizer
built per call). Both paths are warmed up first (imports, element tables); before every
timed call pymatgen's formula-parsing cache is emptied (neither side profits from the
other's parsing) and the garbage collector runs. The machine's float32 matmul rate,
measured after the timings, is printed so that timings can be compared across machines.
Exits with status 1 if the two disagree by more than 1e-9.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from calkit.data import _read_csv, fetch
from calkit.fast_features import element_tables, featurize_fast
from calkit.matminer_features import featurize_chunk
from calkit.utils import matmul_rate


def clear_parse_cache() -> None:
    """Empty pymatgen's formula cache (recent pymatgen memoises parsed formulas)."""
    from pymatgen.core import composition

    cached = getattr(composition, "_parse_formula_cached", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()


def timed(run: Callable[[list[str]], np.ndarray], comps: list[str], repeat: int):
    """Best wall time of ``repeat`` calls, and the result of the last one."""
    best, result = math.inf, None
    for _ in range(repeat):
        clear_parse_cache()
        # Otherwise the garbage of the previous call (matminer leaves a lot) is collected
        # inside the next timed call.
        gc.collect()
        start = time.perf_counter()
        result = run(comps)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="rows sampled from mp2019")
    parser.add_argument("--quick", action="store_true", help="300 rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per path (best)")
    args = parser.parse_args()
    n = 300 if args.quick else args.n

    all_comps = _read_csv(fetch("mp-formation", download=False))["composition"].astype(str)
    comps = all_comps.sample(min(n, len(all_comps)), random_state=args.seed).tolist()
    print(f"compositions: {len(comps)} from mp2019 (seed {args.seed})")

    start = time.perf_counter()
    element_tables()
    print(f"fast element tables: {time.perf_counter() - start:.3f} s (once per process)")
    # Imports and first-call costs stay out of the timings.
    featurize_chunk(["NaCl"])
    featurize_fast(["NaCl"])

    slow_s, slow = timed(featurize_chunk, comps, args.repeat)
    fast_s, fast = timed(featurize_fast, comps, args.repeat)
    same_nan = bool(np.array_equal(np.isnan(slow), np.isnan(fast)))
    diff = float(np.nanmax(np.abs(slow - fast), initial=0.0))
    n_nan = int(np.isnan(slow).all(1).sum())

    print(f"matminer: {slow_s:.2f} s ({len(comps) / slow_s:.0f} comp/s)")
    print(f"fast: {fast_s:.3f} s ({len(comps) / fast_s:.0f} comp/s)")
    print(f"speedup: {slow_s / fast_s:.1f}x")
    print(f"max abs diff: {diff:.2g}; NaN rows: {n_nan}, same NaN positions: {same_nan}")
    # Measured last: right after a multi-threaded torch.mm, the spinning OpenMP threads make
    # the next few tenths of a second of single-threaded work several times slower.
    print(
        f"fp32 matmul: {matmul_rate(2048) / 1e9:.1f} GFLOP/s "
        f"(2048^3 torch.mm, {torch.get_num_threads()} threads)"
    )
    ok = same_nan and diff <= 1e-9
    if not ok:
        print("MISMATCH: fast features differ from matminer's")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
