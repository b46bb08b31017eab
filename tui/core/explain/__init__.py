"""EXPLAIN a query and report which partitions it really touches, and why (issue: pruning checks).

Core only (no Textual): statement checks, the safe runner, plan parsing, pruning per reference,
and advice reconciled with the plan.

The names below are loaded on first use: `pgparts explain` imports only what its run needs
(the advice's parser, sqlglot, only when some reference needs advice).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Advice": "advice",
    "ScannedPartition": "pruning", "TableReference": "pruning",
    "ExplainReport": "report", "reference_json": "report",
    "ExplainCancelled": "runner", "ExplainError": "runner", "ExplainRunner": "runner",
    "ExplainTimeout": "runner",
    "ExplainSession": "session",
    "Statement": "statement", "StatementRefused": "statement", "check_statement": "statement",
}

__all__ = [
    "Advice", "ExplainCancelled", "ExplainError", "ExplainReport", "ExplainRunner",
    "ExplainSession", "ExplainTimeout", "ScannedPartition", "Statement", "StatementRefused",
    "TableReference", "check_statement", "reference_json",
]

if TYPE_CHECKING:
    from .advice import Advice
    from .pruning import ScannedPartition, TableReference
    from .report import ExplainReport, reference_json
    from .runner import ExplainCancelled, ExplainError, ExplainRunner, ExplainTimeout
    from .session import ExplainSession
    from .statement import Statement, StatementRefused, check_statement


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
