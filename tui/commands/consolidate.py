"""`pgparts consolidate`: generated from the consolidation kind's declaration by plan.py; this
module keeps the names earlier code imported from here. Like every command, it reaches the kind
through the registry."""

from __future__ import annotations

from typing import Any

from ..core.plans import Plan, RunResult
from ..core.plans.registry import kind_named
from . import apply
from .plan import add_arguments, run

__all__ = ["add_arguments", "report", "run", "status_text"]


def status_text(st: Any) -> str:
    return kind_named("consolidate").status_text(st)


def report(result: RunResult, plan: Plan) -> int:
    kind = kind_named("consolidate")
    return apply.report(result, plan, noun=kind.noun, report_lines=kind.report)
