"""Findings that offer their fix: each finding code maps to the plan kind (and request) that
removes it, or says which command will once it exists. Front ends read this, never a kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..findings import CODES, Finding


@dataclass(frozen=True)
class Remedy:
    kind: str  # a registered plan kind
    values: dict[str, Any] = field(default_factory=dict)  # the kind's options

    def command(self, table: str) -> str:
        flags = "".join(f" --{k.replace('_', '-')} {v}" for k, v in self.values.items())
        return f"pgparts {self.kind.replace('_', '-')} {table}{flags} --dry-run"


REMEDIES: dict[str, Remedy] = {
    "never_analyzed": Remedy("analyze"),
    "detach_pending": Remedy("finalize_detach"),
    "index_missing": Remedy("index_fix", {"only": "missing"}),
    "index_invalid": Remedy("index_fix", {"only": "invalid"}),
    "no_future_partition": Remedy("create_ahead"),
    "default_has_rows": Remedy("drain_default"),
    "range_gap": Remedy("fill_gaps"),
}

# Findings whose fix is a plan kind not built yet: what will fix them, said as not available.
# (none today: range_gap's fill_gaps exists now)
LATER: dict[str, str] = {}

assert set(REMEDIES) | set(LATER) <= set(CODES)


def remedy_kinds() -> list[str]:
    """The plan kinds some finding offers as its fix, in REMEDIES' order, each once."""
    return list(dict.fromkeys(r.kind for r in REMEDIES.values()))


def remedy_for(finding: Finding) -> Remedy | None:
    return REMEDIES.get(finding.code)


def remedy_text(finding: Finding) -> str:
    """One line for people: the command that fixes it, what later will, or ''."""
    remedy = remedy_for(finding)
    if remedy is not None:
        return f"fix: pgparts fix {finding.table} --only {finding.code} " \
               f"(or {remedy.command(finding.table)})"
    later = LATER.get(finding.code)
    return f"no fix in pgparts yet: {later}" if later else ""
