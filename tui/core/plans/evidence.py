"""Consolidation's proof that a week and its copy hold the same rows: the change counter and
digest (steps/shadow.py) and the comparisons (steps/verify.py), under their earlier import path."""

from .steps.shadow import (
    COUNT_TRIGGER,
    changes_since_copy,
    counter_cleanup_sql,
    counter_idents,
    counter_name,
    digest_sql,
    evidence_sql,
    registered_sql,
    rels_sql,
)
from .steps.verify import (
    compare_sql,
    raise_unless_attached,
    raise_unless_contained,
    raise_unless_equal,
)

__all__ = [
    "COUNT_TRIGGER", "changes_since_copy", "compare_sql", "counter_cleanup_sql",
    "counter_idents", "counter_name", "digest_sql", "evidence_sql", "raise_unless_attached",
    "raise_unless_contained", "raise_unless_equal", "registered_sql", "rels_sql",
]
