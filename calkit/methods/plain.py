"""Plain supervised training of the IR-net: the baseline every other method is compared with."""

from __future__ import annotations

from calkit.engine import TrainingEngine
from calkit.methods.registry import Method, MethodInputs, MethodOutput, register


def run_plain(inputs: MethodInputs) -> MethodOutput:
    """Registry run function of the plain family: the engine's plain epochs."""
    result = TrainingEngine(inputs.model, inputs.X, inputs.y, inputs.masks, inputs.train).fit()
    return MethodOutput(result.model, result.ema_model, result.history, result.sets,
                        result.run_info())


register(Method("baseline", "IR-net", "plain", run_plain,
                "the plain IR-net trained on the training rows with the profile's recipe",
                saves_checkpoint=True, paper_rows=("base",)))
