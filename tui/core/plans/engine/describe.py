"""One neutral description of a plan, rendered by every front end.

`describe(plan, conn)` gives the steps with their SQL, locks, estimates and verification as
plain data; `render_text` is the command line's preview, `render_sql` the reviewable script
(`Plan.to_sql`). The console renders the same description in its own widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ...humanfmt import plural, size
from .model import Plan


@dataclass
class StepDescription:
    index: int
    title: str
    explanation: str
    transactional: bool
    locks: list[str]
    estimate: str  # '' when the step has no estimate
    verification: str
    group: str
    sql: list[tuple[str, str]] = field(default_factory=list)  # (note, statement)
    isolation: str = "read committed"
    # the locks again as (mode, relation, who waits), for front ends that style them
    lock_parts: list[tuple[str, str, str]] = field(default_factory=list)
    one_query: bool = False  # its statements and COMMIT go to the server as one query


@dataclass
class PlanDescription:
    title: str
    target: str
    summary: list[str]
    changes: list[str]
    destroys: list[str]
    figures: list[str]
    notes: list[str]
    steps: list[StepDescription]
    script: str
    rows: int = 0  # the plan's estimate, summed over its steps
    seconds: float = 0.0


def _estimate_text(rows: int, nbytes: int, seconds: float) -> str:
    if not (rows or seconds):
        return ""
    return f"~{plural(rows, 'row')}, {size(max(nbytes, 0))}, ~{seconds:.1f} s"


def _figure_text(label: str, before: float, after: float | None, unit: str) -> str:
    def fmt(v: float) -> str:
        return size(int(v)) if unit == "bytes" else f"{v:,.0f}"

    if after is None:
        return f"{label}: {fmt(before)}"
    return f"{label}: {fmt(before)} -> {fmt(after)}"


def describe(plan: Plan, conn: psycopg.Connection) -> PlanDescription:
    steps = [
        StepDescription(
            index=i, title=s.title, explanation=s.explanation, transactional=s.transactional,
            locks=[lk.describe() for lk in s.locks],
            estimate=_estimate_text(s.estimate.rows, s.estimate.bytes, s.estimate.seconds),
            verification=s.verify_note, group=s.group,
            sql=[(st.note, st.render(conn)) for st in s.statements], isolation=s.isolation,
            lock_parts=[(lk.mode, lk.relation, lk.blocks) for lk in s.locks],
            one_query=s.one_query)
        for i, s in enumerate(plan.steps, 1)
    ]
    f = plan.facts
    destroys = [d.text() for d in f.destroys]
    return PlanDescription(
        title=plan.title, target=plan.target, summary=list(plan.summary),
        changes=list(f.changes), destroys=destroys,
        figures=[_figure_text(g.label, g.before, g.after, g.unit) for g in f.figures],
        notes=list(f.notes), steps=steps, script=render_sql(plan, conn),
        rows=plan.estimate.rows, seconds=plan.estimate.seconds)


def render_text(desc: PlanDescription) -> str:
    """The command line's --dry-run: summary, changes, steps, then the SQL script."""
    out = [f"Plan: {desc.title}"]
    if desc.summary:  # a plan without one (a move's) went on with two blank lines
        out += ["", *(f"  {line}" for line in desc.summary)]
    if desc.changes:
        out += ["", "Changes:"]
        out += [f"  {line}" for line in desc.changes]
        out += [f"  {line}" for line in desc.figures]
        out += [f"  {line}" for line in desc.notes]
    if desc.destroys:
        out += ["", "Drops:"]
        out += [f"  {line}" for line in desc.destroys]
    if not desc.steps:  # empty 'Steps:' and 'SQL:' headings read like a cut output
        out += ["", "Steps: none, nothing would run."]
        return "\n".join(out)
    out += ["", "Steps:"]
    for s in desc.steps:
        kind = "one transaction" if s.transactional else "no transaction"
        if s.one_query:
            kind += ", sent as one query"
        out.append(f"  {s.index}. {s.title} ({kind})")
        out.append(f"     {s.explanation}")
        out += [f"     lock: {lock}" for lock in s.locks]
        if s.estimate:
            out.append(f"     estimate: {s.estimate}")
        if s.verification:
            out.append(f"     verified before commit: {s.verification}")
    out += ["", "SQL:", "", desc.script, ""]
    return "\n".join(out)


def render_sql(plan: Plan, conn: psycopg.Connection) -> str:
    """A reviewable script: comments give titles, locks, estimates; BEGIN/COMMIT are explicit.

    The script is what the runner executes, minus what only a program can do: lock-timeout
    retries, progress and skipping done steps. Its verifications are DO blocks that raise,
    so under `psql -v ON_ERROR_STOP=1` a failed check stops the script (its transaction
    rolls back) before any statement after it; they always compare in full where the
    runner may use its change counter. It sets search_path to pg_catalog, pg_temp: the
    statements qualify every table and were deparsed under that path.
    """
    lock_ms = max(int(round(plan.lock_timeout_seconds * 1000)), 1)
    out = [
        f"-- pgparts plan: {plan.title}",
        f"-- target: {plan.target}",
        f"-- generated: {plan.created_at.isoformat(timespec='seconds')}",
    ]
    out += [f"-- {line}" for line in plan.summary]
    out += [
        "-- Run with psql -v ON_ERROR_STOP=1: every verification raises an error when it",
        "-- fails, which stops the script before the statements after it. pgparts --apply",
        "-- adds lock_timeout retries with backoff, progress, cancellation, resuming after",
        "-- an interruption, and a journal entry.",
        "",
        "SET search_path = pg_catalog, pg_temp;",
        sql.SQL("SET lock_timeout = {};").format(sql.Literal(f"{lock_ms}ms")).as_string(conn),
        "",
    ]
    for i, step in enumerate(plan.steps, 1):
        out.append(f"-- Step {i}/{len(plan.steps)}: {step.title}")
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
        if step.one_query:
            out.append("--   pgparts --apply sends this transaction's statements and its COMMIT "
                       "as one query")
        if step.transactional:
            begin = sql.SQL("BEGIN")
            if step.isolation != "read committed":
                begin = sql.SQL("BEGIN ISOLATION LEVEL {}").format(
                    sql.SQL(step.isolation.upper()))
            out.append(begin.as_string(conn) + ";")
            if step.statement_timeout_seconds is not None:
                ms = int(step.statement_timeout_seconds * 1000)
                out.append(sql.SQL("SET LOCAL statement_timeout = {};").format(
                    sql.Literal(f"{ms}ms")).as_string(conn))
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
