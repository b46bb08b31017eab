"""Stages 7-9 and the abort once stage 7 began, as the stage sequence (stages.py) runs them:
the steps of dependencies.py, insert_trigger.py, finish.py and restore.py, each list closed by
a step that records where the migration stands in pgparts' registry.

- each stage's last step records the stage (`spec.state_sql`: 'dependencies', 'trigger',
  'finish') in its own transaction, after every other step of the stage committed; its done
  check is `stages.state_at_least`, so `status` and `--resume` read it. The stage modules
  leave out the steps done already, so a resumed stage runs what remains, then the record.
- stage 8 runs only when the migration chose it (`spec.insert_trigger`); stages.py leaves it
  out of the sequence otherwise and never records 'trigger' for it.
- Finish records 'finish' in the transaction that drops the original, not in a step after it:
  a kill between the two would leave the original gone while the registry still expects it
  (`stages.standing` reports a missing original as a problem before 'finish').
- `abort_steps` is called when the recorded stage is 'dependencies' or later, or when it is
  'copy' and the new table already has a key, an index, a trigger, a view or a foreign key
  either way (`abort.stage_7_begun`); its last step removes the record (`spec.forget_sql`).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from ..plans.engine.model import Statement, Step
from ..plans.steps import markers
from . import dependencies, finish, insert_trigger, restore
from .preflight import Dependents
from .spec import MigrationSpec, forget_sql, read_recorded, state_sql

STAGE_TITLES = {"dependencies": "stage 7 (dependencies)",
                "trigger": "stage 8 (collisions at insert time)",
                "finish": "stage 9 (finish)"}


def _record(conn: psycopg.Connection, spec: MigrationSpec, stage: str,
            done: Callable[[psycopg.Connection], bool]) -> Step:
    return Step(
        f"record {STAGE_TITLES[stage]} as done",
        "pgparts' registry records the stage, so status and --resume start after it.",
        [Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
         Statement(state_sql(spec, stage), note="record the stage")],
        done=done, group="record")


def dependency_steps(conn: psycopg.Connection, spec: MigrationSpec, deps: Dependents,
                     done: Callable[[psycopg.Connection], bool]) -> list[Step]:
    return [*dependencies.dependency_steps(conn, spec, deps),
            _record(conn, spec, "dependencies", done)]


def trigger_steps(conn: psycopg.Connection, spec: MigrationSpec,
                  done: Callable[[psycopg.Connection], bool]) -> list[Step]:
    return [*insert_trigger.trigger_steps(conn, spec), _record(conn, spec, "trigger", done)]


def finish_steps(conn: psycopg.Connection, spec: MigrationSpec) -> list[Step]:
    steps = finish.finish_steps(conn, spec)
    if not steps:  # the original is gone: dropped, and 'finish' recorded with the drop
        return []
    drop = steps[-1]
    drop.statements[:0] = [Statement(markers.guard_sql(conn, create=False),
                                     note="registry trusted")]
    drop.statements.append(Statement(state_sql(spec, "finish"),
                                     note="record stage 9 (finish) with the drop"))
    return steps


def abort_steps(conn: psycopg.Connection, spec: MigrationSpec, deps: Dependents, stage: str,
                *, new_table_oid: int) -> list[Step]:
    def forgotten(c: psycopg.Connection) -> bool:
        return read_recorded(c, spec.schema, spec.name) is None

    forget = Step(
        "forget the migration",
        "The original is back: the registry's record of the migration goes.",
        [Statement(markers.guard_sql(conn, create=False), note="registry trusted"),
         Statement(forget_sql(spec), note="forget the migration")],
        done=forgotten, group="record")
    from .abort import only_copies  # abort.py imports this module

    # a row written to the new table after Build lives only there: the drop would lose it
    guard = [only_copies(conn, spec)] if restore.new_oid(conn, spec) is not None else []
    return [*restore.abort_steps(conn, spec, deps, stage, new_table_oid=new_table_oid,
                                 guard=guard), forget]
