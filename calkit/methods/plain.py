"""Plain supervised training of the IR-net: the baseline every other method is compared with."""

from __future__ import annotations

import numpy as np

from calkit import columns as col
from calkit.engine import TrainingEngine
from calkit.methods.registry import Method, MethodInputs, MethodOutput, register
from calkit.splits import select_target


def run_plain(inputs: MethodInputs) -> MethodOutput:
    """Registry run function of the plain family: the engine's plain epochs."""
    result = TrainingEngine(inputs.fresh_model, inputs.X, inputs.y, inputs.masks,
                            inputs.train).fit(snapshot=inputs.snapshot)
    return MethodOutput(result.model, result.ema_model, result.history, result.sets,
                        result.run_info(), {}, result.last_model, result.last_ema_model)


register(Method("baseline", "IR-net", "plain", run_plain,
                "the plain IR-net trained on the training rows with the profile's recipe",
                saves_checkpoint=True, paper_rows=("base",)))


def run_plain_with_target(inputs: MethodInputs) -> MethodOutput:
    """Plain training on the training rows plus the N target rows (the control for targeting).

    The N rows are the ones targeted CAL and fine-tuning draw; they are removed from every
    evaluation set, as there.
    """
    idx, masks = select_target(inputs.masks, inputs.target, inputs.n_target,
                               inputs.target_seed, n_rows=len(inputs.X))
    masks = {**masks, col.TRAIN: masks[col.TRAIN] | np.isin(np.arange(len(inputs.X)), idx)}
    result = TrainingEngine(inputs.fresh_model, inputs.X, inputs.y, masks,
                            inputs.train).fit(snapshot=inputs.snapshot)
    extra = {"target_set": inputs.target, "target_indices": idx.tolist()}
    return MethodOutput(result.model, result.ema_model, result.history, result.sets,
                        result.run_info(), extra, result.last_model, result.last_ema_model)
