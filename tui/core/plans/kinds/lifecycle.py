"""What create_ahead and retention share: a time-partitioned table's range partitions as
datetimes, the literal a bound value is written back as, and the table's policy.

Bounds are read as the server printed them (every pgparts session runs with TimeZone=UTC), so
their datetimes are UTC instants; a bound written back for a `timestamptz` key carries its
offset (+00:00), which makes it the same instant whatever the session's or the server's time
zone. A `timestamp` key gets the wall-clock text, a `date` key the date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

from ...catalog import Forest, PartNode
from ...config import Config, TablePolicy
from ...policy import resolve_policies
from ..kind import PlanKindError

TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


@dataclass(frozen=True)
class Ranged:
    node: PartNode
    lower: datetime
    upper: datetime


def key_of(root: PartNode, what: str) -> tuple[str, str]:
    """The single time key column of a RANGE-partitioned table and its type."""
    if root.strategy != "range" or len(root.key_columns) != 1 or root.key_expressions:
        raise PlanKindError(f"{what} needs a table RANGE partitioned on one column; "
                            f"{root.qualified} is not")
    # format_type spells a precision inside: timestamp(3) with time zone
    ktype = re.sub(r"\(\d+\)", "", root.key_types[0]) if root.key_types else ""
    if ktype not in TIME_TYPES:
        raise PlanKindError(f"{what} follows time; {root.qualified}'s key "
                            f"{root.key_columns[0]} is {ktype or 'not a column'}")
    return root.key_columns[0], ktype


def ranged_children(root: PartNode) -> list[Ranged]:
    """The bounded range partitions, oldest first (MINVALUE/MAXVALUE ends are left out)."""
    out: list[Ranged] = []
    for c in root.children:
        b = c.bound
        if b is None or b.kind != "range" or not b.lower or not b.upper:
            continue
        lo, hi = b.lower[0].as_datetime(), b.upper[0].as_datetime()
        if lo is not None and hi is not None:
            out.append(Ranged(c, lo, hi))
    return sorted(out, key=lambda r: r.lower)


def literal_text(value: datetime, ktype: str) -> str:
    """A bound value as text that means the same instant in every time zone."""
    value = value.astimezone(UTC)
    if ktype == "date":
        return value.date().isoformat()
    if ktype == "timestamp without time zone":
        return value.replace(tzinfo=None).isoformat(sep=" ")
    return value.isoformat(sep=" ")


def literal(value: datetime, ktype: str) -> sql.Literal:
    return sql.Literal(literal_text(value, ktype))


def now_utc() -> datetime:
    return datetime.now(UTC)


def show(value: datetime) -> str:
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return text.removesuffix(" 00:00")


def policy_of(forest: Forest, node: PartNode, config: Config) -> TablePolicy | None:
    return resolve_policies(forest, config.policies).by_oid.get(node.oid)


def as_date(value: datetime) -> date:
    return value.astimezone(UTC).date()


def refuse_script(conn: psycopg.Connection, exists: sql.Composable, message: str
                  ) -> sql.Composed:
    """The exported script's form of a refusal check: a DO block that raises `message` when the
    EXISTS query is true (psql -v ON_ERROR_STOP=1 then stops before the change)."""
    body = sql.SQL("BEGIN\n  IF ({q}) THEN\n    RAISE EXCEPTION '%', {m};\n  END IF;\nEND").format(
        q=exists, m=sql.Literal(f"pgparts: {message}"))
    return sql.SQL("DO {}").format(sql.Literal(body.as_string(conn)))
