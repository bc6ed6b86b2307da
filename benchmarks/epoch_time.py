"""Wall time of one plain epoch and one CAL adversarial epoch on a device (CPU or CUDA).

The device-agnostic companion of ``epoch_cost.py`` (whose FLOP accounting, profiler shares and
replayed ceilings are CPU-only): the same synthetic data (``epoch_cost.make_data``) and the same
engine and CAL schedule, timed with the device synchronised, plus one evaluation pass. Writes a
JSON summary with ``--out``.

Also one targeted adversarial epoch for each ``--targets`` size N (default the grid's 256 and
1,024): in the authors' targeted mode every SAL step takes all N target rows, so with N above
the batch size a targeted epoch costs several CAL epochs. The ratios to the CAL epoch are
measured in the same run; a run's time in a sweep is about ``pre_adv_epochs`` plain epochs
plus the rest adversarial, plus one evaluation per epoch.

    python benchmarks/epoch_time.py --device cuda                  # paper model, 22,483 rows
    python benchmarks/epoch_time.py --device cpu --preset cpu --rows 1024 --threads 1  # CI
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from epoch_cost import N_HELD_OUT, make_data

from calkit.engine import TrainingEngine
from calkit.methods.cal import CALSchedule
from calkit.models import build_model, parameter_count
from calkit.profiles import cal_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    ap.add_argument("--preset", default="paper", help="model preset (default paper)")
    ap.add_argument("--profile", default="paper-short", help="recipe and SAL settings")
    ap.add_argument("--rows", type=int, default=22483, help="training rows (default 22,483)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's)")
    ap.add_argument("--targets", default="256,1024",
                    help="target-set sizes N of the targeted epochs timed (comma-separated; "
                         "'' for none)")
    ap.add_argument("--out", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args()
    try:
        targets = [int(n) for n in args.targets.split(",") if n.strip()]
    except ValueError:
        ap.error(f"--targets takes comma-separated integers, got {args.targets!r}")
    if any(n < 2 or n > N_HELD_OUT for n in targets):
        ap.error(f"every target size must be in [2, {N_HELD_OUT}] (the rows make_data holds out "
                 f"of training), got {targets}")
    if args.threads:
        torch.set_num_threads(args.threads)
    d = 145
    torch.manual_seed(0)
    X, y, sets = make_data(args.rows, d)
    full = cal_config(args.profile, progress=False, ema_start_epoch=0, device=args.device)
    model = build_model(args.preset, d)
    eng = TrainingEngine(model, X, y, sets, full.train)
    eng.ema.start()
    dev = eng.device

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    m = full.train.batch_size
    schedule = CALSchedule(eng, full.sal)
    eng.plain_epoch(1, eng.train_idx[: 4 * m])  # warm-up: kernels, optimiser state
    t_plain = timed(lambda: eng.plain_epoch(1))
    partial = schedule.partial_rows(eng)
    schedule.partial = partial[: 2 * m]
    schedule.adversarial_epoch(eng, epoch=10)  # warm-up of the SAL step
    schedule.partial = partial
    t_adv = timed(lambda: schedule.adversarial_epoch(eng, epoch=10))
    t_eval = timed(eng.evaluate_epoch)
    # Targeted epochs: the same supervised steps, SAL steps on the last N rows (held out of
    # training by make_data, as a target set is).
    t_targeted = {}
    for n in targets:
        targeted = CALSchedule(eng, full.sal, target_rows=np.arange(len(X) - n, len(X)))
        targeted.partial = partial[: 2 * m]
        targeted.adversarial_epoch(eng, epoch=10)  # warm-up at this source size
        targeted.partial = partial
        t_targeted[n] = timed(lambda s=targeted: s.adversarial_epoch(eng, epoch=10))
    out = {
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "parameters": parameter_count(model),
        "profile": args.profile,
        "train_rows": args.rows,
        "batch_size": m,
        "plain_epoch_s": round(t_plain, 4),
        "plain_samples_per_s": round(args.rows / t_plain, 1),
        "cal_adversarial_rows": len(partial),
        "cal_adversarial_epoch_s": round(t_adv, 4),
        "cal_over_plain": round(t_adv / t_plain, 2),
        "evaluation_s": round(t_eval, 4),
    }
    for n, seconds in t_targeted.items():
        out[f"targeted_{n}_epoch_s"] = round(seconds, 4)
        out[f"targeted_{n}_over_cal"] = round(seconds / t_adv, 2)
    for key, value in out.items():
        print(f"{key:>24}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
