"""EXPLAIN a query and report which partitions it really touches, and why (issue: pruning checks).

Core only (no Textual): statement checks, the safe runner, plan parsing, pruning per reference,
and advice reconciled with the plan.
"""

from .advice import Advice
from .pruning import ScannedPartition, TableReference
from .report import ExplainReport, reference_json
from .runner import ExplainCancelled, ExplainError, ExplainRunner, ExplainTimeout
from .session import ExplainSession
from .statement import Statement, StatementRefused, check_statement

__all__ = [
    "Advice", "ExplainCancelled", "ExplainError", "ExplainReport", "ExplainRunner",
    "ExplainSession", "ExplainTimeout", "ScannedPartition", "Statement", "StatementRefused",
    "TableReference", "check_statement", "reference_json",
]
