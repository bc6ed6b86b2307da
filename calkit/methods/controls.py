"""Controls: methods that show which part of CAL helps or hurts (registered after the paper's).

Each is a registry entry over a run function of its family: CAL with ``w`` fixed, targeted CAL
without an attack, plain training on the training rows plus the N target rows, and the
fine-tuning that the authors' result log used (selected on the test rows: an oracle).
"""

from __future__ import annotations

from calkit.methods.cal import run_cal
from calkit.methods.finetune import run_finetune_oracle
from calkit.methods.plain import run_plain_with_target
from calkit.methods.registry import ControlQuestion, Method, Variant, declare_control, register

register(Method("cal_fixed_w", "CAL, fixed w", "cal", run_cal,
                "control: CAL with the cost weights fixed at their start (no hypergradient); "
                "does learning w matter?",
                sal_changes={"learn_w": False}, paper_rows=(), kind="control"))
register(Method(
    "targeted_noattack", "targeted, no attack", "cal", run_cal,
    "control: targeted CAL with zero attack steps, so its extra theta steps see the N target "
    "rows unperturbed; are the gains from the adversary or from the extra steps?",
    recipe_changes={"selection": "last"}, sal_changes={"attack_epochs": 0},
    why="As targeted CAL: the final state is kept.", needs_target=True, kind="control"))

register(Method(
    "plain_target", "IR-net + N target rows", "plain", run_plain_with_target,
    "control: the plain IR-net trained on the training rows plus the N target rows (no "
    "fine-tuning, no adversary)", needs_target=True, kind="control"))

register(Method(
    "finetune_oracle", "fine-tune (oracle)", "finetune", run_finetune_oracle,
    "control: fine-tuning whose rate and epoch are chosen on the target set's evaluation rows "
    "(as the authors' result log chose its fine-tune checkpoints): an oracle no user could run",
    recipe_changes={"schedule": "none", "fused_adam": False},
    why="As fine-tune.", needs_target=True, needs_baseline=True, kind="control"))

LITERAL_TARGETED = Variant("targeted", (("supervised_on_all", False),))
"""Targeted CAL in the authors' literal loop: supervised steps on the high-loss rows only
(``grids/controls.yaml``)."""
W_PER_EPOCH = Variant("cal", (("w_reset", "every_update"), ("w_update", "epoch")))
"""CAL with one w step per epoch rather than per SAL step (``grids/controls.yaml``)."""
FULL_BUDGET_TARGETED = Variant("targeted", (("patience", 60),))
"""Targeted CAL with a patience equal to the cpu budget: early stopping never ends it
(``grids/targeted_budget.yaml``)."""

_CAL, _TARGETED, _FINETUNE = Variant("cal"), Variant("targeted"), Variant("finetune")
_ORACLE = Variant("finetune_oracle")

# The questions the controls answer, in the order of the controls table: untargeted ones per
# set, then targeted ones per target set and N.
declare_control(ControlQuestion("learned w vs fixed w (CAL vs CAL, fixed w)",
                                Variant("cal_fixed_w"), _CAL, targeted=False))
declare_control(ControlQuestion("w step per SAL step vs per epoch (CAL)", W_PER_EPOCH, _CAL,
                                targeted=False))
declare_control(ControlQuestion("targeted CAL vs no attack", Variant("targeted_noattack"),
                                _TARGETED, targeted=True))
declare_control(ControlQuestion("targeted CAL vs IR-net + N rows", Variant("plain_target"),
                                _TARGETED, targeted=True))
declare_control(ControlQuestion("fine-tune (held-out rule) vs oracle fine-tune", _ORACLE,
                                _FINETUNE, targeted=True))
declare_control(ControlQuestion("targeted CAL vs oracle fine-tune", _ORACLE, _TARGETED,
                                targeted=True))
declare_control(ControlQuestion("literal loop vs targeted CAL", _TARGETED, LITERAL_TARGETED,
                                targeted=True))
declare_control(ControlQuestion("literal loop vs fine-tuning", _FINETUNE, LITERAL_TARGETED,
                                targeted=True))
declare_control(ControlQuestion("no early stopping vs targeted CAL", _TARGETED,
                                FULL_BUDGET_TARGETED, targeted=True, family="budget"))
declare_control(ControlQuestion("targeted CAL, no early stopping, vs fine-tuning", _FINETUNE,
                                FULL_BUDGET_TARGETED, targeted=True, family="budget"))
