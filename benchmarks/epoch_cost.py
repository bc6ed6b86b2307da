"""Cost of one plain epoch and one CAL adversarial epoch, against this machine's matmul rate.

Usage::

    python benchmarks/epoch_cost.py            # 22,483 x 145, paper model, paper CAL settings
    python benchmarks/epoch_cost.py --quick    # 4,096 rows, cpu model: a smoke run
    python benchmarks/epoch_cost.py --profile  # also print a torch profiler summary

FLOP counting (matrix multiplies only; every elementwise op, norm and optimiser update
is counted as zero work, so it shows up as lost efficiency). For one ``nn.Linear`` with
``k`` inputs, ``n`` outputs on ``m`` rows, a forward pass is ``2 m k n``. Per mini-batch,
with ``F = sum over Linear layers of 2 m k n``:

* supervised step: forward ``F`` + backward ``2F`` (input and weight gradients), less
  the input gradient of the layers that read the data (nothing needs it): ``3F - I``;
* ``R(theta)`` and ``g = dR/dtheta``: the same, ``3F - I``;
* one attack step: forward ``F`` + input-gradient-only backward ``F`` = ``2F``;
* one theta step with the VJP: forward ``F``, backward with ``create_graph`` ``2F - I``,
  and the double backward ``d/dx_A <g, dL/dtheta>``, which for every layer propagates
  ``g`` into the activation and into the output gradient and back down the forward
  graph: about ``4F``;

so a SAL step is ``3F + theta_epochs * (attack_epochs * 2F + 7F)`` and an adversarial
batch ``6F + theta_epochs * (2 * attack_epochs + 7) F`` (``I`` ignored), against ``3F``
for a plain batch. The script prints this analytic count and the count of
a dispatcher mode that adds ``2 m k n`` for every mm/addmm/bmm actually run (forward and
all backward passes),
and uses the latter for the efficiency ``FLOPs / matmul rate / time``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from calkit.cal import (
    SALState,
    _adversarial_epoch,
    _partial_rows,
    cal_config,
    hyper_parameter_index,
    sal_step,
)
from calkit.models import build_model, linear_shapes, parameter_count
from calkit.training import TrainingEngine


def matmul_rate(n: int = 4096, reps: int = 5) -> float:
    """Float32 matmul FLOP/s of a large square ``torch.mm`` (best of ``reps``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def make_data(n_train: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_val = 5 * 512
    X = rng.normal(size=(n_train + n_val, d)).astype(np.float32)
    y = (X[:, :5].sum(1) * 0.3 + 0.1 * rng.normal(size=len(X))).astype(np.float32)
    sets = {"train": np.arange(len(X)) < n_train}
    for i, ch in enumerate(np.array_split(np.arange(n_train, len(X)), 5)):
        sets[f"Rsplt{i + 1}"] = np.isin(np.arange(len(X)), ch)
    return X, y, sets


def analytic_batch_flops(model, m: int, cfg) -> tuple[float, float]:
    """(plain batch, adversarial batch) matmul FLOPs from the layer shapes (docstring)."""
    F = sum(2 * m * k * n for k, n in linear_shapes(model))
    d = model.in_features
    first = sum(2 * m * k * n for k, n in linear_shapes(model) if k == d)
    plain = 3 * F - first
    sal = (3 * F - first) + cfg.theta_epochs * (cfg.attack_epochs * 2 * F + 7 * F - first)
    return plain, plain + sal


class MatmulFlops(TorchDispatchMode):
    """Counts ``2 m k n`` for every mm / addmm / bmm the dispatcher runs (incl. backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        aten = torch.ops.aten
        if func is aten.mm.default:
            (m, k), n = args[0].shape, args[1].shape[1]
            self.flops += 2 * m * k * n
        elif func is aten.addmm.default:
            (m, k), n = args[1].shape, args[2].shape[1]
            self.flops += 2 * m * k * n
        elif func is aten.bmm.default:
            (b, m, k), n = args[0].shape, args[1].shape[2]
            self.flops += 2 * b * m * k * n
        return out


def counted(fn) -> float:
    with MatmulFlops() as fc:
        fn()
    return float(fc.flops)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4,096 rows and the cpu model")
    ap.add_argument("--profile", action="store_true", help="print a torch profiler summary")
    args = ap.parse_args()
    n_train, preset = (4096, "cpu") if args.quick else (22483, "paper")
    d = 145
    torch.manual_seed(0)
    X, y, sets = make_data(n_train, d)
    cfg = cal_config("paper", progress=False, ema_start_epoch=0, device="cpu")
    model = build_model(preset, d)
    eng = TrainingEngine(model, X, y, sets, cfg)
    eng.ema.start()
    m = cfg.batch_size
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model {preset} "
          f"({parameter_count(model):,} parameters), {n_train} x {d} training rows, batch {m}")
    print(f"CAL settings: partial {cfg.partial_fraction:.0%}, attack_epochs "
          f"{cfg.attack_epochs}, theta_epochs {cfg.theta_epochs}, EMA on")

    rate = matmul_rate()
    print(f"matmul rate (4096^3 torch.mm, float32): {rate / 1e9:.1f} GFLOP/s")

    # FLOPs per batch, counted on one batch of each kind.
    xb, yb = eng.X[eng.train_idx[:m]], eng.y[eng.train_idx[:m]]
    plain_batch = counted(lambda: eng.supervised_step(xb, yb))
    state = SALState.create(d, cfg.w_init, eng.device)
    params = [p for p in eng.model.parameters() if p.requires_grad]
    hidx = hyper_parameter_index(eng.model, params, cfg.grad_layers)
    theta_opt = eng.make_adam(cfg.theta_lr)
    sal_batch = counted(lambda: sal_step(eng.model, params, hidx, theta_opt, state, xb, yb, cfg,
                                         0.5, eng.gen))
    a_plain, a_adv = analytic_batch_flops(eng.model, m, cfg)
    print(f"per batch of {m}: plain {plain_batch / 1e9:.2f} GFLOP counted "
          f"({a_plain / 1e9:.2f} analytic); adversarial {(plain_batch + sal_batch) / 1e9:.2f}"
          f" GFLOP counted ({a_adv / 1e9:.2f} analytic)")

    def n_batches(rows: int) -> float:
        return rows / m  # the last, partial batch costs in proportion to its rows

    # Plain epoch (warm-up once, then timed).
    eng.plain_epoch(1, eng.train_idx[: 4 * m])
    t = time.perf_counter()
    eng.plain_epoch(1)
    t_plain = time.perf_counter() - t
    f_plain = plain_batch * n_batches(n_train)

    t = time.perf_counter()
    partial = _partial_rows(eng, cfg)
    t_sort = time.perf_counter() - t
    t = time.perf_counter()
    _adversarial_epoch(eng, cfg, state, params, hidx, theta_opt, partial, None, epoch=10)
    t_adv = time.perf_counter() - t
    f_adv = (plain_batch + sal_batch) * n_batches(len(partial))
    t = time.perf_counter()
    eng.evaluate_epoch()
    t_eval = time.perf_counter() - t

    print()
    print(f"{'epoch':<26}{'GFLOP':>10}{'seconds':>10}{'GFLOP/s':>10}{'efficiency':>12}")
    for name, f, s in (("plain", f_plain, t_plain),
                       (f"CAL adversarial ({len(partial)} rows)", f_adv, t_adv)):
        print(f"{name:<26}{f / 1e9:>10.1f}{s:>10.2f}{f / s / 1e9:>10.1f}{f / rate / s:>12.1%}")
    print(f"ratio CAL/plain: time {t_adv / t_plain:.2f}, FLOPs {f_adv / f_plain:.2f}")
    print(f"not in the epochs above: loss sort for partial sampling {t_sort:.2f} s "
          f"(every {cfg.epochs_between_regens} epochs), evaluation of all sets "
          f"({len(eng.eval_rows)} rows) {t_eval:.2f} s per epoch")

    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            _adversarial_epoch(eng, cfg, state, params, hidx, theta_opt, partial[: 4 * m], None,
                               epoch=10)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
