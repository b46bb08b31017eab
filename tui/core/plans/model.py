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

from ..humanfmt import plural, size

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


@dataclass
class Step:
    """One unit of a plan: committed as a whole when `transactional`, else statement by statement.

    `retry` says what a lock timeout retries: "statement" rolls back to a savepoint taken just
    before the waiting statement (completed copy work in the same transaction is kept); "step"
    rolls back the whole transaction and starts it again, for short swaps where sitting on the
    locks already taken during the backoff would block the application.
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
    hold_from: int | None = None
    # The exported script's form of `verify` (a DO block that raises), run before COMMIT.
    script_verify: sql.Composable | None = None

    def __post_init__(self) -> None:
        if self.retry not in ("statement", "step"):
            raise ValueError(f"unknown retry scope {self.retry!r}")

    def is_done(self, conn: psycopg.Connection) -> bool:
        return bool(self.done(conn)) if self.done is not None else False


@dataclass
class Plan:
    """An ordered list of steps for one parent table."""

    kind: str  # e.g. "consolidate"
    title: str
    target: str  # display name of the parent table
    target_oid: int
    steps: list[Step]
    summary: list[str] = field(default_factory=list)  # plain-language lines for previews
    details: dict[str, Any] = field(default_factory=dict)  # plan-specific figures (JSON-able)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # After a successful run: figures to add to the result and the journal (e.g. bytes after).
    after: Callable[[psycopg.Connection], dict[str, Any]] | None = None
    # After a failure: what the database holds now and what to do next, in plain words.
    describe_state: Callable[[psycopg.Connection], str] | None = None
    lock_timeout_seconds: float = 2.0  # [plans] lock_timeout, for the exported script

    @property
    def estimate(self) -> Estimate:
        return Estimate(
            rows=sum(s.estimate.rows for s in self.steps),
            bytes=sum(s.estimate.bytes for s in self.steps),
            seconds=sum(s.estimate.seconds for s in self.steps),
        )

    # -- exports -----------------------------------------------------------------------------
    def to_sql(self, conn: psycopg.Connection) -> str:
        """A reviewable script: comments give titles, locks, estimates; BEGIN/COMMIT are explicit.

        The script is what the runner executes, minus what only a program can do: lock-timeout
        retries, progress and skipping done steps. Its verifications are DO blocks that raise,
        so under `psql -v ON_ERROR_STOP=1` a failed check stops the script (its transaction
        rolls back) before any statement after it; they always compare in full where the
        runner may use its change counter. It sets search_path to pg_catalog, pg_temp: the
        statements qualify every table and were deparsed under that path.
        """
        lock_ms = max(int(round(self.lock_timeout_seconds * 1000)), 1)
        out = [
            f"-- pgparts plan: {self.title}",
            f"-- target: {self.target}",
            f"-- generated: {self.created_at.isoformat(timespec='seconds')}",
        ]
        out += [f"-- {line}" for line in self.summary]
        out += [
            "-- Run with psql -v ON_ERROR_STOP=1: every verification raises an error when it",
            "-- fails, which stops the script before the statements after it. pgparts --apply",
            "-- adds lock_timeout retries with backoff, progress, cancellation, resuming after",
            "-- an interruption, and a journal entry.",
            "",
            "SET search_path = pg_catalog, pg_temp;",
            f"SET lock_timeout = '{lock_ms}ms';",
            "",
        ]
        for i, step in enumerate(self.steps, 1):
            out.append(f"-- Step {i}/{len(self.steps)}: {step.title}")
            out += [f"--   {line}" for line in _wrap(step.explanation, 92)]
            for lock in step.locks:
                out.append(f"--   lock: {lock.describe()}")
            est = step.estimate
            if est.rows or est.bytes or est.seconds:
                out.append(
                    f"--   estimate: {plural(est.rows, 'row')}, {size(est.bytes)}, "
                    f"~{est.seconds:.1f} s"
                )
            checked = all(st.script is not None for st in step.statements if st.check) and (
                step.verify is None or step.script_verify is not None)
            if step.verify_note:
                label = "verified before commit" if checked else \
                    "verified before commit by pgparts --apply only"
                out.append(f"--   {label}: {step.verify_note}")
            if step.transactional:
                begin = "BEGIN"
                if step.isolation != "read committed":
                    begin += f" ISOLATION LEVEL {step.isolation.upper()}"
                out.append(begin + ";")
                if step.statement_timeout_seconds is not None:
                    ms = int(step.statement_timeout_seconds * 1000)
                    out.append(f"SET LOCAL statement_timeout = '{ms}ms';")
            for st in step.statements:
                if st.note:
                    out.append(f"-- {st.note}")
                text = st.script.as_string(conn) if st.script is not None else st.render(conn)
                out.append(text.rstrip().rstrip(";") + ";")
            if step.script_verify is not None:
                out.append(f"-- check: {step.verify_note}")
                out.append(step.script_verify.as_string(conn).rstrip().rstrip(";") + ";")
            if step.transactional:
                out.append("COMMIT;")
            out.append("")
        return "\n".join(out)

    def to_json(self, conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "target": self.target,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "summary": list(self.summary),
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


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    return lines
