"""Stages 7-9 and the abort after stage 6: Dependencies, Collisions at insert time, Finish.

Their steps are made by functions with these signatures (the stage sequence in stages.py calls
them). This module only stands in for them where they are not part of the code: each raises.
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
