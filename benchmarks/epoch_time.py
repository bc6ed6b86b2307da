"""Wall time of one plain epoch and one CAL adversarial epoch on a device (CPU or CUDA).

The device-agnostic companion of ``epoch_cost.py`` (whose FLOP accounting, profiler shares and
replayed ceilings are CPU-only): the same synthetic data (``epoch_cost.make_data``) and the same
engine and CAL schedule, timed with the device synchronised, plus one evaluation pass. Writes a
JSON summary with ``--out``.

    python benchmarks/epoch_time.py --device cuda                  # paper model, 22,483 rows
    python benchmarks/epoch_time.py --device cpu --preset cpu --rows 1024 --threads 1  # CI
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from epoch_cost import make_data

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
    ap.add_argument("--out", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args()
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
    for key, value in out.items():
        print(f"{key:>24}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
