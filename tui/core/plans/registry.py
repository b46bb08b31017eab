"""The registered plan kinds. Front ends reach kinds only through here: a new kind is one
module in plans/kinds/ plus one line below, and gets its subcommand (and `pgparts fix`, when it
fixes findings) without new command-line code."""

from __future__ import annotations

from .kind import PlanKind
from .kinds.analyze import Analyze
from .kinds.consolidate import Consolidate
from .kinds.create_ahead import CreateAhead
from .kinds.drain_default import DrainDefault
from .kinds.fill_gaps import FillGaps
from .kinds.finalize_detach import FinalizeDetach
from .kinds.index_fix import IndexFix
from .kinds.merge import Merge
from .kinds.move_values import MoveValues
from .kinds.rebound import Rebound
from .kinds.retention import Retention
from .kinds.split import Split

PLAN_KINDS: tuple[PlanKind, ...] = (Consolidate(), Analyze(), FinalizeDetach(), IndexFix(),
                                    CreateAhead(), Retention(), Split(), DrainDefault(),
                                    FillGaps(), Merge(), Rebound(), MoveValues())


def kind_named(name: str) -> PlanKind:
    """The kind called `name`, spelt as the kind does (create_ahead) or as its command
    (create-ahead)."""
    name = name.replace("-", "_")
    for kind in PLAN_KINDS:
        if kind.name == name:
            return kind
    raise LookupError(f"no plan kind {name!r}")


def command_name(kind: PlanKind | str) -> str:
    """The name users meet (the subcommand, `move-values`), not the kind's id (`move_values`):
    what titles and messages show."""
    name = kind if isinstance(kind, str) else kind.name
    return name.replace("_", "-")
