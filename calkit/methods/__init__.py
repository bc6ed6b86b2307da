"""Training methods, each declared once in the registry (:mod:`calkit.methods.registry`).

Importing this package registers every method, family by family, in the order of tables and
error messages: ``plain`` (the baseline), ``cal`` (CAL, targeted CAL and the paper's
ablations), ``finetune``, the controls, targeted CAL with a recipe chosen on held-out target rows
(:mod:`calkit.methods.targeted_select`) and the OOD baselines (:mod:`calkit.methods.baselines`).
"""

import importlib

from calkit.methods.registry import (
    PAPER_TABLES,
    REGISTRY,
    ControlQuestion,
    Method,
    MethodInputs,
    MethodOutput,
    PaperTable,
    Variant,
    control_questions,
    get_method,
    method_label,
    method_names,
    methods_of_kind,
    paper_table_methods,
    paper_table_subjects,
    register,
    successor,
)

FAMILY_MODULES = ("plain", "cal", "finetune", "controls", "targeted_select", "baselines")
for _module in FAMILY_MODULES:
    importlib.import_module(f"calkit.methods.{_module}")

__all__ = ["PAPER_TABLES", "REGISTRY", "ControlQuestion", "Method", "MethodInputs", "MethodOutput",
           "PaperTable", "Variant", "control_questions", "get_method", "method_label",
           "method_names", "methods_of_kind", "paper_table_methods", "paper_table_subjects",
           "register", "successor"]
