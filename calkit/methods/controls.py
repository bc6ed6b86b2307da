"""Controls: methods that show which part of CAL helps or hurts (registered after the paper's).

Each is a registry entry over a run function of its family: CAL with ``w`` fixed, targeted CAL
without an attack, plain training on the training rows plus the N target rows, and the
fine-tuning that the authors' result log used (selected on the test rows: an oracle).
"""

from __future__ import annotations

from calkit.methods.cal import run_cal
from calkit.methods.finetune import run_finetune_oracle
from calkit.methods.plain import run_plain_with_target
from calkit.methods.registry import Method, register

register(Method("cal_fixed_w", "CAL, fixed w", "cal", run_cal,
                "control: CAL with the cost weights fixed at their start (no hypergradient); "
                "does learning w matter?",
                sal_changes={"learn_w": False}, paper_rows=()))
register(Method(
    "targeted_noattack", "targeted, no attack", "cal", run_cal,
    "control: targeted CAL with zero attack steps, so its extra theta steps see the N target "
    "rows unperturbed; are the gains from the adversary or from the extra steps?",
    recipe_changes={"selection": "last"}, sal_changes={"attack_epochs": 0},
    why="As targeted CAL: the final state is kept.", needs_target=True))

register(Method(
    "plain_target", "IR-net + N target rows", "plain", run_plain_with_target,
    "control: the plain IR-net trained on the training rows plus the N target rows (no "
    "fine-tuning, no adversary)", needs_target=True))

register(Method(
    "finetune_oracle", "fine-tune (oracle)", "finetune", run_finetune_oracle,
    "control: fine-tuning whose rate and epoch are chosen on the target set's evaluation rows "
    "(as the authors' result log chose its fine-tune checkpoints): an oracle no user could run",
    recipe_changes={"schedule": "none", "fused_adam": False},
    why="As fine-tune.", needs_target=True, needs_baseline=True))
