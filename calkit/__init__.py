"""calkit: Crystal Adversarial Learning (CAL) for out-of-distribution materials property prediction.

Modules, one per concern:

* data and inputs: :mod:`calkit.data` (registry, hash-checked files), :mod:`calkit.features`
  (the paper's 145 features), :mod:`calkit.splits` (OOD sets), :mod:`calkit.pipeline`
  (data set -> model inputs);
* training: :mod:`calkit.config` (recipe and SAL settings), :mod:`calkit.profiles`,
  :mod:`calkit.models` (IR-net), :mod:`calkit.engine` (the one training loop),
  :mod:`calkit.sal` (SAL maths), :mod:`calkit.methods` (the method registry: plain, CAL,
  targeted CAL, ablations, fine-tuning);
* runs: :mod:`calkit.runs` (run configs and identity), :mod:`calkit.store` (records, stale
  detection, checkpoints), :mod:`calkit.runner` (one run end to end), :mod:`calkit.sweep`;
* results: :mod:`calkit.metrics`, :mod:`calkit.stats`, :mod:`calkit.reporting`,
  :mod:`calkit.plots`; and :mod:`calkit.estimators` (scikit-learn wrappers).

The estimators and the feature helpers are importable from the top level::

    from calkit import CALRegressor, FeatureScaler, IRNetRegressor, cal_pipeline, featurize
"""

from __future__ import annotations

from typing import Any

__version__ = "0.3.0.dev0"

_EXPORTS = {
    "CALRegressor": "calkit.estimators",
    "cal_pipeline": "calkit.estimators",
    "IRNetRegressor": "calkit.estimators",
    "featurize": "calkit.features",
    "FeatureScaler": "calkit.features",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the exported names on first use (``import calkit`` stays light)."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'calkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
