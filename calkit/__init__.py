"""calkit: Crystal Adversarial Learning (CAL) for out-of-distribution materials property prediction.

Modules, one per concern: :mod:`calkit.data` (registry and hash-checked files),
:mod:`calkit.features` (the paper's 145 features), :mod:`calkit.splits` (OOD sets),
:mod:`calkit.models` (IR-net), :mod:`calkit.training` (plain training), :mod:`calkit.cal`
(SAL, CAL, targeted CAL, fine-tuning), :mod:`calkit.metrics`, :mod:`calkit.plots`,
:mod:`calkit.experiments` (profiles, data pipeline, run records), :mod:`calkit.sweep`,
:mod:`calkit.reporting` (tables beside the paper's numbers) and :mod:`calkit.estimators`
(scikit-learn wrappers).
"""

__version__ = "0.1.0"
