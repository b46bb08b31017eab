"""`pgparts consolidate`: generated from the consolidation kind's declaration by plan.py; this
module keeps the names earlier code imported from here."""

from __future__ import annotations

from ..core.plans import Plan, RunResult
from ..core.plans.kinds.consolidate import Consolidate, status_text
from . import apply
from .plan import add_arguments, run

__all__ = ["add_arguments", "report", "run", "status_text"]


def report(result: RunResult, plan: Plan) -> int:
    kind = Consolidate()
    return apply.report(result, plan, noun=kind.noun, report_lines=kind.report)
