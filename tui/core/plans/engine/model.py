"""Plans: ordered steps of SQL that change partition layouts, reviewable before they run.

A plan is data. Every step carries its statements (psycopg.sql compositions), the locks they take,
whether they run in one transaction, estimates, a `done` check that tells whether the step already
happened (so an interrupted plan resumes instead of restarting) and an optional verification that
must pass before the step commits. The runner (runner.py) executes them; this module only describes
and exports them, so the console and `--dry-run` show exactly what `--apply` would run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

# Lock modes in PostgreSQL's order of strength; the names are the ones pg_locks and the docs use.
LOCK_MODES = (
    "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
    "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE",
)

# Statement kinds. "copy" statements move rows and report progress; "verify" statements are
# read-only checks; everything else is DDL or a lock.
KINDS = ("ddl", "lock", "copy", "verify", "maintenance")


class VerificationFailed(Exception):
    """A verification query disagreed: the step's transaction is rolled back."""


@dataclass(frozen=True)
class Lock:
    """A lock a step takes: mode + relation display name, and who it blocks, in plain words."""

    mode: str
    relation: str
    blocks: str = ""

    def __post_init__(self) -> None:
        if self.mode not in LOCK_MODES:
            raise ValueError(f"unknown lock mode {self.mode!r}")

    def describe(self) -> str:
        text = f"{self.mode} on {self.relation}"
        return f"{text} ({self.blocks})" if self.blocks else text

    def to_json(self) -> dict[str, str]:
        return {"mode": self.mode, "relation": self.relation, "blocks": self.blocks}


@dataclass
class Estimate:
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, float | int]:
        return {"rows": self.rows, "bytes": self.bytes, "seconds": round(self.seconds, 3)}


@dataclass
class Statement:
    """One SQL statement of a step.

    `kind` tells the runner how to treat it: "copy" statements count rows for progress (their
    rowcount is the number of rows moved, `est_rows`/`est_bytes` size the batch for the ETA).
    """

    sql: sql.Composable
    kind: str = "ddl"
    note: str = ""
    est_rows: int = 0
    est_bytes: int = 0
    # For verification statements: receives the fetched row (and the connection, for a
    # follow-up query in the same transaction), returns a line for the journal, raises
    # VerificationFailed to roll the step back. Runs before the statements after it.
    check: Callable[[Any, psycopg.Connection], str] | None = None
    # What the exported script runs instead (for a checked statement: a DO block that raises
    # when the check fails, so `psql -v ON_ERROR_STOP=1` stops before anything destructive).
    script: sql.Composable | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown statement kind {self.kind!r}")

    def render(self, conn: psycopg.Connection) -> str:
        return self.sql.as_string(conn)


DoneCheck = Callable[[psycopg.Connection], bool]
Verification = Callable[[psycopg.Connection], str]
RETRY_SCOPES = ("statement", "step", "give-way")


@dataclass
class Step:
    """One unit of a plan: committed as a whole when `transactional`, else statement by statement.

    `retry` says what a lock timeout retries: "statement" rolls back to a savepoint taken just
    before the waiting statement (completed copy work in the same transaction is kept); "step"
    rolls back the whole transaction and starts it again, for short swaps where sitting on the
    locks already taken during the backoff would block the application. A non-transactional
    step with "step" retry starts again from its first statement. "give-way" is "step" for a
    transaction that takes strong locks in an order some writers take the other way round
    (referencing tables, then the parent): its lock waits are cut short below the server's
    deadlock_timeout, so the step rolls back before the deadlock detector would abort such a
    writer, and retries with backoff (runner.py, `give_way_timeout`).

    `one_query`: the runner sends the step's transaction, BEGIN, every statement and COMMIT,
    as one multi-statement query (one round trip): the server runs the statements one after
    the other and stops at the first error, which aborts the transaction (a lock timeout
    included: retried as the step's `retry` says). For a swap whose client round trips under
    the parent's lock would otherwise each wait for a CPU on a loaded machine. Its checks run
    on the server: a "verify" statement raises (a DO block, the exported script's form) and,
    once the query committed, its note is the step's verification line; a Python `check` or
    `verify`, which would have to run between statements, is refused.
    """

    title: str
    explanation: str
    statements: list[Statement]
    locks: list[Lock] = field(default_factory=list)
    transactional: bool = True
    retry: str = "statement"
    estimate: Estimate = field(default_factory=Estimate)
    done: DoneCheck | None = None
    verify: Verification | None = None
    verify_note: str = ""
    isolation: str = "read committed"
    statement_timeout_seconds: float | None = None  # None: no limit (long copies)
    group: str = ""  # e.g. the week a step belongs to, for display
    # 1-based statement index from which the runner times the hold until COMMIT (e.g. the
    # DETACH that takes ACCESS EXCLUSIVE on the parent); reported as StepOutcome.hold_seconds.
    # In a one_query step the server's clock times it, from before that statement to after
    # the COMMIT (runner.py).
    hold_from: int | None = None
    one_query: bool = False
    # The exported script's form of `verify` (a DO block that raises), run before COMMIT.
    script_verify: sql.Composable | None = None
    # Steps next to each other with the same tag are independent (none needs another's work,
    # their locks do not wait on each other for long): the runner may run them at once on
    # plan.sessions connections. Empty: in order, alone.
    parallel: str = ""

    def __post_init__(self) -> None:
        if self.retry not in RETRY_SCOPES:
            raise ValueError(f"unknown retry scope {self.retry!r}")
        if self.retry == "give-way" and not self.transactional:
            raise ValueError("a give-way step must be one transaction")
        if self.one_query:
            if not self.transactional or self.retry == "statement":
                raise ValueError("a one-query step is one transaction, retried as a whole")
            if self.verify is not None or any(st.check is not None for st in self.statements):
                raise ValueError("a one-query step checks on the server (statements that "
                                 "raise), not in Python between its statements")

    def is_done(self, conn: psycopg.Connection) -> bool:
        return bool(self.done(conn)) if self.done is not None else False


@dataclass(frozen=True)
class Destroyed:
    """Something the plan drops. `verified`: its rows are proven to be elsewhere before the drop
    (consolidation's originals); a drop that loses data the database holds nowhere else is not."""

    what: str  # "table", "index", ...
    name: str
    verified: bool = False
    # what the operator knows it as when `name` is a table the plan itself set aside (a
    # move's detached original, pgparts_moved_<oid>: "the detached original of x.p_2023")
    label: str = ""
    where: str = "elsewhere"  # where its rows are verified before the drop

    def text(self) -> str:
        """One line for previews and confirmations, e.g. 'table s.t (its rows verified
        elsewhere first)'."""
        head = f"{self.label}, {self.what} {self.name}" if self.label \
            else f"{self.what} {self.name}"
        return head + (f" (its rows verified {self.where} first)" if self.verified else "")

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "name": self.name, "verified": self.verified,
                "label": self.label, "text": self.text()}


@dataclass(frozen=True)
class Figure:
    """A before/after figure (bytes, rows, partitions...). `after` None: not estimated."""

    label: str
    before: float
    after: float | None = None
    unit: str = ""  # "bytes", "rows", "" (a count)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "before": self.before, "after": self.after,
                "unit": self.unit}


@dataclass
class PlanFacts:
    """What every front end needs to know about a plan, typed: what it changes (one plain line
    per change), what it destroys (non-empty: the operator types the target's name to
    confirm), and before/after figures. Kind-specific figures go to `extra`,
    which only the JSON export shows."""

    changes: list[str] = field(default_factory=list)
    destroys: list[Destroyed] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the figures were estimated
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_typed_confirmation(self) -> bool:
        """Something is dropped (originals whose rows were verified elsewhere included): every
        front end asks for the target's name typed in full."""
        return bool(self.destroys)

    @property
    def loses_data(self) -> bool:
        """Data goes that is kept nowhere else (the confirmation says so)."""
        return any(not d.verified for d in self.destroys)

    def to_json(self) -> dict[str, Any]:
        return {"changes": list(self.changes),
                "destroys": [d.to_json() for d in self.destroys],
                "figures": [f.to_json() for f in self.figures], "notes": list(self.notes),
                "extra": self.extra}


@dataclass
class Plan:
    """An ordered list of steps for one parent table."""

    kind: str  # e.g. "consolidate"
    title: str
    target: str  # display name of the parent table
    target_oid: int
    steps: list[Step]
    summary: list[str] = field(default_factory=list)  # plain-language lines for previews
    # plan-specific figures by key (JSON-able); the console still reads consolidation's, new
    # readers use `facts`
    details: dict[str, Any] = field(default_factory=dict)
    facts: PlanFacts = field(default_factory=PlanFacts)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # After a successful run: figures to add to the result and the journal (e.g. bytes after).
    after: Callable[[psycopg.Connection], dict[str, Any]] | None = None
    # After a failure: what the database holds now and what to do next, in plain words.
    describe_state: Callable[[psycopg.Connection], str] | None = None
    lock_timeout_seconds: float = 2.0  # [plans] lock_timeout, for the exported script
    # connections the runner may use at once for steps tagged `parallel` (1: one at a time)
    sessions: int = 1

    @property
    def estimate(self) -> Estimate:
        return Estimate(
            rows=sum(s.estimate.rows for s in self.steps),
            bytes=sum(s.estimate.bytes for s in self.steps),
            seconds=sum(s.estimate.seconds for s in self.steps),
        )

    # -- exports -----------------------------------------------------------------------------
    def to_sql(self, conn: psycopg.Connection) -> str:
        """A reviewable script (engine/describe.py renders it)."""
        from .describe import render_sql

        return render_sql(self, conn)

    def to_json(self, conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "target": self.target,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "summary": list(self.summary),
            "facts": self.facts.to_json(),
            "details": self.details,
            "estimate": self.estimate.to_json(),
            "steps": [
                {
                    "index": i,
                    "title": s.title,
                    "group": s.group,
                    "explanation": s.explanation,
                    "transactional": s.transactional,
                    "isolation": s.isolation,
                    "retry": s.retry,
                    "one_query": s.one_query,
                    "locks": [lk.to_json() for lk in s.locks],
                    "estimate": s.estimate.to_json(),
                    "verification": s.verify_note,
                    "sql": [st.render(conn) for st in s.statements],
                }
                for i, s in enumerate(self.steps, 1)
            ],
        }

    def to_json_text(self, conn: psycopg.Connection) -> str:
        return json.dumps(self.to_json(conn), indent=2, ensure_ascii=False)
