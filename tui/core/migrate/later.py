"""Stages 7-9 and the abort once stage 7 began: Dependencies, Collisions at insert time, Finish.

Their steps are made by functions with these signatures; the stage sequence in stages.py calls
them with the spec as the registry holds it (Build filled in `renamed` and `owned_sequences`)
and the original's `Dependents` read by its oid (`stages.original_dependents`). What
stages.py expects of their steps:

- each list's last step records its stage in the transaction that completes it:
  `spec.state_sql(spec, "dependencies")`, `"trigger"`, `"finish"` (`stages.state_at_least`
  is then their done check, and `status` / `--resume` read it);
- `abort_steps(conn, spec, deps, stage)` is called when the recorded stage is 'dependencies'
  or later, or when it is 'copy' and the new table already has a key, an index, a trigger, a
  view or a foreign key either way (`stages.stage_7_begun`); its last step removes the record
  (`spec.forget_sql(spec)`), and `stages.restore_statements` undoes Build.

This module only stands in for them where they are not part of the code: each raises.
"""

from __future__ import annotations

import psycopg

from ..plans.engine.model import Step
from . import MigrateError
from .preflight import Dependents
from .spec import MigrationSpec

NOT_AVAILABLE = "not available on this branch"


def dependency_steps(conn: psycopg.Connection, spec: MigrationSpec,
                     deps: Dependents) -> list[Step]:
    raise MigrateError(f"stage 7 (dependencies) is {NOT_AVAILABLE}")


def trigger_steps(conn: psycopg.Connection, spec: MigrationSpec) -> list[Step]:
    raise MigrateError(f"stage 8 (collisions at insert time) is {NOT_AVAILABLE}")


def finish_steps(conn: psycopg.Connection, spec: MigrationSpec) -> list[Step]:
    raise MigrateError(f"stage 9 (finish) is {NOT_AVAILABLE}")


def abort_steps(conn: psycopg.Connection, spec: MigrationSpec, deps: Dependents,
                stage: str) -> list[Step]:
    raise MigrateError(f"abort after stage 7 is {NOT_AVAILABLE}")
