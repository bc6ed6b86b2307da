"""Cost of one plain epoch and one CAL adversarial epoch, against this machine's matmul rate.

Usage::

    python benchmarks/epoch_cost.py            # 22,483 x 145, paper model, paper CAL settings
    python benchmarks/epoch_cost.py --quick    # 4,096 rows, cpu model: a smoke run
    python benchmarks/epoch_cost.py --profile  # also print the torch profiler's op table

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

Where the time goes, also measured in the same run:

* a torch-profiler pass over a few batches of each epoch splits the self CPU time into
  matmuls, the Adam steps, the EMA update, the dropout masks and everything else
  (norms, activations, residual adds, losses, autograd bookkeeping);
* a ceiling: every aten call of one batch of each kind is logged, then replayed alone,
  one kind of op at a time, back to back, calls of the same shape on the same operands
  (so everything is cache-hot), less the Python cost of each replayed call. That is
  the least time PyTorch's own kernels need for the batch on this machine, and
  ``FLOPs / matmul rate / that time`` the best efficiency the epoch can reach with
  them. Where the ceiling is under 70 %, the 70 % goal is out of reach here without
  changing what is computed or writing new kernels.

Nothing here is timed in a unit test: the machine is noisy, so the script compares
numbers measured in one run.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from calkit.engine import TrainingEngine
from calkit.methods.cal import CALSchedule
from calkit.models import build_model, linear_shapes, parameter_count
from calkit.profiles import cal_config
from calkit.sal import sal_step
from calkit.utils import matmul_rate

N_HELD_OUT = 5 * 512
"""Rows :func:`make_data` adds after the training rows (five validation splits)."""


def make_data(n_train: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_val = N_HELD_OUT
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


class OpLog(TorchDispatchMode):
    """Records every aten call that does work (views skipped): function and arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not func.is_view:
            self.calls.append((func, args, kwargs))
        return out


MATMULS = {"aten::mm", "aten::addmm", "aten::bmm"}
OP_CATEGORIES = {
    **{op: "matmul" for op in MATMULS},
    "aten::_fused_adam_": "Adam steps", "aten::_foreach_lerp_": "EMA update",
    "aten::lerp_": "EMA update", "aten::uniform_": "dropout masks",
    "aten::rand_like": "dropout masks",
}
CATEGORIES = ("matmul", "Adam steps", "EMA update", "dropout masks", "other")
LABELS = {**{c: c for c in CATEGORIES},
          "other": "other: norms, activations, adds, losses, autograd"}


def op_name(func) -> str:
    return "aten::" + func._schema.name.split("::")[-1]


def dispatch_overhead() -> float:
    """Seconds per Python-level call of an aten op that does almost nothing."""
    t = torch.zeros(1)
    op = torch.ops.aten.add_.Tensor
    n = 20000
    best = math.inf
    for _ in range(3):
        s = time.perf_counter()
        for _ in range(n):
            op(t, t)
        best = min(best, (time.perf_counter() - s) / n)
    return best


def _signature(value) -> object:
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), value.stride(), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _signature(v)) for k, v in value.items())
    return repr(value)


OpGroups = dict[str, list[list]]
"""Per category, ``[func, args, kwargs, n]`` for each distinct call signature."""


def logged_groups(fn) -> OpGroups:
    """Run ``fn`` once, logging its aten calls grouped by category and signature.

    Only the operands of the first call of each signature are kept, so the log stays
    small; ``n`` counts how often that signature ran.
    """
    with OpLog() as log:
        fn()
    groups: dict[str, dict[object, list]] = defaultdict(dict)
    for func, args, kwargs in log.calls:
        key = (func, _signature(args), _signature(kwargs))
        category = OP_CATEGORIES.get(op_name(func), "other")
        groups[category].setdefault(key, [func, args, kwargs, 0])[3] += 1
    return {c: list(groups[c].values()) for c in CATEGORIES}


def matmul_flops(groups: OpGroups) -> float:
    """``2 m k n`` for every mm / addmm / bmm that ran (forward and all backward passes)."""
    total = 0
    for func, args, _, n in groups["matmul"]:
        name = op_name(func)
        a, b = (args[1], args[2]) if name == "aten::addmm" else (args[0], args[1])
        total += n * 2 * math.prod(a.shape) * b.shape[-1]
    return float(total)


def replay_seconds(groups: OpGroups, per_call: float, reps: int = 3) -> dict[str, float]:
    """Seconds per category of the logged calls, each category replayed alone.

    A category's calls run back to back on the operands of the first call of each
    signature, with nothing else in between, so operands stay cache-hot: this is the
    least time those kernels need on this machine. Best of ``reps`` replays, less
    ``per_call`` seconds of Python per replayed call.
    """
    out = {}
    for c, group in groups.items():
        best = math.inf
        for _ in range(reps):
            s = time.perf_counter()
            for func, args, kwargs, n in group:
                for _ in range(n):
                    func(*args, **kwargs)
            best = min(best, time.perf_counter() - s)
        calls = sum(g[3] for g in group)
        out[c] = max(best - calls * per_call, 0.0) if group else 0.0
    return out


def print_category_table(title: str, cells: dict[str, tuple[str, str]]) -> None:
    """A table with a row per category (plus any extra rows) and plain / adversarial columns."""
    print()
    print(title)
    print(f"{'':<52}{'plain batch':>18}{'adversarial batch':>22}")
    for key, (plain, adversarial) in cells.items():
        print(f"{LABELS.get(key, key):<52}{plain:>18}{adversarial:>22}")


def time_shares(fn) -> tuple[dict[str, float], object]:
    """Share of ``fn``'s self CPU time per category (torch profiler) and the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    seconds: dict[str, float] = defaultdict(float)
    for evt in prof.key_averages():
        seconds[OP_CATEGORIES.get(evt.key, "other")] += evt.self_cpu_time_total
    total = sum(seconds.values())
    return {c: seconds[c] / total for c in CATEGORIES}, prof


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4,096 rows and the cpu model")
    ap.add_argument("--profile", action="store_true", help="print the torch profiler's op table")
    args = ap.parse_args()
    n_train, preset = (4096, "cpu") if args.quick else (22483, "paper")
    d = 145
    torch.manual_seed(0)
    X, y, sets = make_data(n_train, d)
    full = cal_config("paper", progress=False, ema_start_epoch=0, device="cpu")
    cfg = full.sal
    model = build_model(preset, d)
    eng = TrainingEngine(model, X, y, sets, full.train)
    eng.ema.start()
    m = full.train.batch_size
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model {preset} "
          f"({parameter_count(model):,} parameters), {n_train} x {d} training rows, batch {m}")
    print(f"CAL settings: partial {cfg.partial_fraction:.0%}, attack_epochs "
          f"{cfg.attack_epochs}, theta_epochs {cfg.theta_epochs}, EMA on")

    rate = matmul_rate()
    print(f"matmul rate (4096^3 torch.mm, float32): {rate / 1e9:.1f} GFLOP/s")

    # One batch of each kind, logged once: its FLOPs now, its ops replayed for the ceiling.
    xb, yb = eng.X[eng.train_idx[:m]], eng.y[eng.train_idx[:m]]
    schedule = CALSchedule(eng, cfg)
    state, params, hidx, theta_opt = (schedule.state, schedule.params, schedule.hyper_index,
                                       schedule.theta_opt)

    def plain_step() -> None:
        eng.supervised_step(xb, yb)
        eng.ema.update()

    def one_sal_step() -> None:
        sal_step(eng.model, params, hidx, theta_opt, state, xb, yb, cfg, full.train.loss, 0.5,
                 eng.gen)

    eng.model.train()
    plain_step()  # the first steps also create the optimisers' state: not logged
    one_sal_step()
    plain_ops = logged_groups(plain_step)
    sal_ops = logged_groups(one_sal_step)
    plain_batch, sal_batch = matmul_flops(plain_ops), matmul_flops(sal_ops)
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
    partial = schedule.partial_rows(eng)
    t_sort = time.perf_counter() - t

    def adversarial_epoch(rows: torch.Tensor) -> None:
        schedule.partial = rows
        schedule.adversarial_epoch(eng, epoch=10)

    t = time.perf_counter()
    adversarial_epoch(partial)
    t_adv = time.perf_counter() - t
    f_adv = (plain_batch + sal_batch) * n_batches(len(partial))
    t = time.perf_counter()
    eng.evaluate_epoch()
    t_eval = time.perf_counter() - t

    print()
    print(f"{'epoch':<30}{'GFLOP':>10}{'seconds':>10}{'GFLOP/s':>10}{'efficiency':>12}")
    for name, f, s in (("plain", f_plain, t_plain),
                       (f"CAL adversarial ({len(partial)} rows)", f_adv, t_adv)):
        print(f"{name:<30}{f / 1e9:>10.1f}{s:>10.2f}{f / s / 1e9:>10.1f}{f / rate / s:>12.1%}")
    print(f"ratio CAL/plain: time {t_adv / t_plain:.2f}, FLOPs {f_adv / f_plain:.2f}")
    print(f"not in the epochs above: loss sort for partial sampling {t_sort:.2f} s "
          f"(every {cfg.epochs_between_regens} epochs), evaluation of all sets "
          f"({len(eng.eval_rows)} rows) {t_eval:.2f} s per epoch")

    # Where the time goes: profiler shares of a real epoch (a few batches of each kind).
    shares_plain, _ = time_shares(lambda: eng.plain_epoch(1, eng.train_idx[: 16 * m]))
    shares_adv, prof_adv = time_shares(lambda: adversarial_epoch(partial[: 4 * m]))
    ms_plain = t_plain / n_batches(n_train) * 1e3
    ms_adv = t_adv / n_batches(len(partial)) * 1e3
    shares = {c: (f"{shares_plain[c]:.1%} {shares_plain[c] * ms_plain:7.1f} ms",
                  f"{shares_adv[c]:.1%} {shares_adv[c] * ms_adv:7.1f} ms") for c in CATEGORIES}
    shares["total"] = (f"{ms_plain:.1f} ms", f"{ms_adv:.1f} ms")
    print_category_table("where the time goes (share of profiled self CPU time; ms = share x "
                         "the batch time measured above)", shares)

    # Ceiling: the logged ops of one batch of each kind, replayed alone (see the docstring).
    # The adversarial batch is a supervised step followed by a SAL step, as in the epoch.
    per_call = dispatch_overhead()
    alone_plain = replay_seconds(plain_ops, per_call)
    alone_sal = replay_seconds(sal_ops, per_call)
    alone_adv = {c: alone_plain[c] + alone_sal[c] for c in CATEGORIES}
    need_plain, need_adv = sum(alone_plain.values()), sum(alone_adv.values())
    least = {c: (f"{alone_plain[c] * 1e3:.1f} ms", f"{alone_adv[c] * 1e3:.1f} ms")
             for c in CATEGORIES}
    least["sum"] = (f"{need_plain * 1e3:.1f} ms", f"{need_adv * 1e3:.1f} ms")
    print_category_table("ceiling: the ops of one batch replayed alone, one kind at a time, back "
                         "to back on reused operands (cache-hot), less the Python cost of each "
                         "replayed call", least)
    n_plain = sum(g[3] for group in plain_ops.values() for g in group)
    n_sal = sum(g[3] for group in sal_ops.values() for g in group)
    print(f"({n_plain} and {n_plain + n_sal} aten calls; "
          f"{per_call * 1e6:.1f} us of Python per call taken off)")
    for name, flops, alone, eff in (
            ("plain", plain_batch, alone_plain, f_plain / rate / t_plain),
            ("CAL adversarial", plain_batch + sal_batch, alone_adv, f_adv / rate / t_adv)):
        ceiling = flops / rate / sum(alone.values())
        verdict = ("70 % is out of reach here with these kernels" if ceiling < 0.70 else
                   "70 % is within the ceiling" + (" and reached" if eff >= 0.70
                                                  else ", not reached"))
        print(f"{name}: matmuls alone at {flops / rate / alone['matmul']:.1%} of the mm rate; "
              f"ceiling {ceiling:.1%}, measured {eff:.1%}: {verdict}")

    if args.profile:
        print(prof_adv.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
