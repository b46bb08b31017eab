"""`pgparts migrate`: turn a plain table into a partitioned one, stage by stage.

    pgparts migrate TABLE --by COLUMN (--interval PERIOD | --target-rows N | --layout FILE)
                          --key COL,COL [--tiebreak COL] [--layout FILE] [--insert-trigger]
                          (--dry-run | --sql | --apply [--yes] [--wait SECONDS]) [--json]
    pgparts migrate TABLE status [--json]
    pgparts migrate TABLE --resume [--interval P | --target-rows N | --layout FILE]
                          [--dry-run | --sql | --apply] [--yes]
    pgparts migrate TABLE --abort [--dry-run | --sql | --apply] [--yes]

Each stage is a plan (tui.core.migrate.stages); --apply runs them in order, asking before each
one unless --yes (before Finish's drop of the original: the table's name typed). Stage 8, the
insert trigger, runs only with --insert-trigger, recorded with the migration. A collision group
pgparts cannot fix (more than 60 in one minute) stops it with exit 1 before anything is
changed. Where a migration stands is read from pgparts'
registry and the catalog, so --resume continues after an interruption.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import psycopg

from ..context import CliError, Context
from ..core.errors import first_line
from ..core.humanfmt import count
from ..core.migrate import MigrateError
from ..core.migrate.abort import abort_plan
from ..core.migrate.dependencies import covered_note
from ..core.migrate.migration import Choices, Prepared, prepare, relayout, wait_writers
from ..core.migrate.periods import PERIODS
from ..core.migrate.report import dependents_lines, unfixable_lines
from ..core.migrate.spec import MigrationSpec
from ..core.migrate.stages import STAGES, Stage, standing
from ..core.names import display_name, parse_qualified_name
from ..core.plans import Plan
from ..core.plans.engine.describe import describe, render_text
from .apply import apply_plan, confirm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="the plain table to migrate (schema.name)")
    parser.add_argument("status_action", nargs="?", choices=["status"], metavar="status",
                        help="'status': where the migration of the table stands")
    parser.add_argument("--by", help="the partition column (timestamp, date or integer)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--interval", choices=PERIODS, help="one partition per period")
    size.add_argument("--target-rows", type=int, metavar="N",
                      help="merge quiet periods up to N rows per partition")
    parser.add_argument("--key", help="the new primary key, comma-separated; holds --by")
    parser.add_argument("--tiebreak", help="the column that ranks colliding rows")
    parser.add_argument("--layout", type=Path, metavar="FILE",
                        help="the partitions from a layout file (TOML, or JSON)")
    parser.add_argument("--insert-trigger", action="store_true",
                        help="stage 8: a trigger on the new table moves a new row colliding on "
                        "the key to a free second of its minute (default: not created)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the recorded migration of the table")
    parser.add_argument("--abort", action="store_true",
                        help="undo the recorded migration of the table (before its drop)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="with --apply: wait up to SECONDS for sessions writing to the "
                        "table to finish (default: refuse at once)")
    parser.add_argument("--json", action="store_true",
                        help="with status or --dry-run: JSON instead of text")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="show every stage: counts, steps, locks and SQL; change nothing")
    mode.add_argument("--sql", action="store_true",
                      help="print the stages as a reviewable SQL script; change nothing")
    mode.add_argument("--apply", action="store_true", help="run the stages")
    parser.add_argument("--yes", action="store_true",
                        help="with --apply: do not ask before each stage")


def _table(conn: psycopg.Connection, text: str) -> tuple[str, str]:
    try:
        schema, name = parse_qualified_name(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if schema is not None:
        return schema, name
    rows = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.relname = %s AND c.relkind IN ('r', 'p')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg\\_%%'", (name,)).fetchall()
    if len(rows) > 1:
        raise CliError(f"{name!r} is in several schemas; name it as schema.table")
    if not rows:
        raise CliError(f"no table {name!r}")
    return rows[0][0], name


def _check(args: argparse.Namespace, ctx: Context) -> None:
    if args.status_action == "status":
        if (args.dry_run or args.sql or args.apply or args.resume or args.abort
                or args.insert_trigger):
            raise CliError("status takes no --dry-run, --sql, --apply, --resume, --abort or "
                           "--insert-trigger")
        return
    if args.resume and args.abort:
        raise CliError("--resume or --abort, not both")
    if args.insert_trigger and args.abort:
        raise CliError("--insert-trigger is chosen with a new migration, not with --abort")
    if not (args.dry_run or args.sql or args.apply):
        raise CliError("say what to do: 'status', --dry-run, --sql or --apply")
    if args.yes and not args.apply:
        raise CliError("--yes goes with --apply")
    if args.wait < 0:
        raise CliError("--wait takes a number of seconds, 0 or more")
    if not (args.resume or args.abort):
        missing = [o for o, v in (("--by", args.by), ("--key", args.key)) if not v]
        if missing:
            raise CliError(f"a new migration needs {' and '.join(missing)}")
        if not (args.interval or args.target_rows or args.layout):
            raise CliError("choose the layout: --interval, --target-rows or --layout FILE")
        if args.target_rows is not None and args.target_rows < 1:
            raise CliError("--target-rows must be positive")
    if args.apply:
        ctx.require_writable("migrate --apply")
        if not args.yes and not sys.stdin.isatty():
            raise CliError("--apply asks for confirmation on a terminal; there is none: "
                           "review with --dry-run, then add --yes")


def run(args: argparse.Namespace, ctx: Context) -> int:
    _check(args, ctx)
    conn = ctx.connect(purpose="cli")
    try:
        schema, name = _table(conn, args.table)
        try:
            if args.status_action == "status":
                return _status(conn, schema, name, args.json)
            if args.abort:
                return _abort(conn, schema, name, args, ctx)
            return _migrate(conn, schema, name, args, ctx)
        except MigrateError as exc:
            raise CliError(str(exc)) from None
        except psycopg.Error as exc:
            raise CliError(f"planning failed: {first_line(exc)}") from None
    finally:
        conn.close()


# -- status -------------------------------------------------------------------------------------
def status_json(conn: psycopg.Connection, schema: str, name: str) -> dict[str, Any]:
    st = standing(conn, schema, name)
    rec = st.recorded
    return {
        "table": display_name(schema, name),
        "recorded": rec is not None,
        "last_stage": rec.state if rec else None,
        "next_stage": st.next_stage,
        "problems": st.problems,
        "spec": rec.spec.to_json() if rec else None,
        "insert_trigger": rec.spec.insert_trigger if rec else None,
        "stages": [{"number": s.number, "name": s.name, "title": s.title,
                    "chosen": not rec or s.chosen(rec.spec),
                    "done": bool(rec) and s.name != "preflight" and s.chosen(rec.spec)
                    and s.done(conn, rec.spec)}
                   for s in STAGES],
    }


def _status(conn: psycopg.Connection, schema: str, name: str, as_json: bool) -> int:
    doc = status_json(conn, schema, name)
    if not doc["recorded"]:
        # nothing recorded: only a plain table can have a migration ahead of it (a finished
        # one leaves a partitioned table, but recorded)
        row = conn.execute(
            "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, name)).fetchone()
        if row is None:
            raise CliError(f"no table {doc['table']}")
        if row[0] == "p":
            raise CliError(f"{doc['table']} is already partitioned, and no migration of it "
                           f"is recorded")
        if row[0] != "r":
            raise CliError(f"{doc['table']} is not a table")
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not doc["recorded"]:
        print(f"{doc['table']}: no migration recorded (stage 1, preflight, is next)")
        return 0
    spec = doc["spec"]
    print(f"{doc['table']}: migration by {spec['column']!r}, key ({', '.join(spec['key'])}), "
          f"{len(spec['partitions'])} partitions, insert trigger "
          f"{'chosen' if doc['insert_trigger'] else 'not chosen'}; "
          f"last stage done: {doc['last_stage']}")
    for s in doc["stages"]:
        mark = ("not chosen" if not s["chosen"] else "done" if s["done"]
                else "next" if s["name"] == doc["next_stage"] else "")
        print(f"  {s['number']}. {s['title']:<28} {mark}")
    for p in doc["problems"]:
        print(f"pgparts: {p}", file=sys.stderr)
    return 1 if doc["problems"] else 0


# -- a migration ------------------------------------------------------------------------------
def _spec(conn: psycopg.Connection, schema: str, name: str,
          args: argparse.Namespace) -> tuple[MigrationSpec, Prepared | None]:
    st = standing(conn, schema, name)
    if st.problems:
        raise CliError("; ".join(st.problems))
    if st.recorded is not None:
        if not args.resume:
            raise CliError(f"a migration of {display_name(schema, name)} is recorded (last "
                           f"stage done: {st.recorded.state}): use --resume, --abort or status")
        spec = st.recorded.spec
        if args.by or args.key or args.tiebreak or args.insert_trigger:
            raise CliError("--by, --key, --tiebreak and --insert-trigger are recorded with the "
                           "migration and cannot change; --abort to start over")
        if args.interval or args.target_rows or args.layout:
            spec, warnings = relayout(conn, spec, Choices(
                schema, name, spec.column, spec.key, interval=args.interval,
                target_rows=args.target_rows, layout_file=args.layout),
                table_code_ok=bool(args.apply))
            for w in warnings:
                print(f"pgparts: warning: {w}", file=sys.stderr)
        return spec, None
    if args.resume:
        raise CliError(f"no migration of {display_name(schema, name)} is recorded")
    key = tuple(k.strip() for k in (args.key or "").split(",") if k.strip())
    prep = prepare(conn, Choices(schema, name, args.by, key, args.tiebreak,
                                 interval=args.interval, target_rows=args.target_rows,
                                 layout_file=args.layout, insert_trigger=args.insert_trigger),
                   table_code_ok=bool(args.apply))
    return prep.spec, prep


def _preview(prep: Prepared | None) -> list[str]:
    if prep is None:
        return []
    pf = prep.preflight
    lines = [f"preflight of {display_name(pf.table.schema, pf.table.name)}: "
             f"{count(pf.rows.total_rows)} rows, {len(pf.dependents.indexes)} indexes, "
             f"{len(pf.dependents.referencing_fks)} referencing foreign keys, "
             f"{len(pf.dependents.views)} views; {count(pf.disk.needed_bytes)} bytes needed "
             f"({pf.disk.note})",
             f"sessions using the table: {len(pf.sessions)} "
             f"({sum(1 for s in pf.sessions if s.writes)} writing)",
             f"duplicates by error: {count(prep.duplicate_groups)} groups, "
             f"{count(prep.duplicate_rows)} rows to delete",
             f"collisions by design: {count(prep.collision_groups)} groups, "
             f"{count(prep.collision_rows)} rows rewritten, {len(prep.unfixable)} over the limit",
             "layout: " + ", ".join(p.name for p in prep.spec.partitions),
             "stage 8, collisions at insert time: " + (
                 "chosen" if prep.spec.insert_trigger else "not chosen (--insert-trigger)")]
    lines += [f"  {line}" for line in dependents_lines(
        pf.dependents, own_fks="its foreign keys",
        referencing_fks="foreign keys pointing at it")]
    lines += [f"  {covered_note(name)}" for name in prep.covered_indexes]
    lines += [f"warning: {w}" for w in pf.warnings + prep.layout_warnings]
    return lines


def _unfixable_lines(prep: Prepared) -> list[str]:
    out = [f"pgparts: {len(prep.unfixable)} collision group(s) have more than 60 rows in one "
           "minute (or share an infinite timestamp); resolve them first (nothing was changed):"]
    out += [f"pgparts:   {line}" for line in unfixable_lines(prep.spec, prep.unfixable)]
    return out


def _stage_plan(conn: psycopg.Connection, stage: Stage, spec: MigrationSpec) -> Plan | str:
    """The stage's plan, or why there is none."""
    try:
        return stage.plan(conn, spec)
    except MigrateError as exc:
        return str(exc)


def _migrate(conn: psycopg.Connection, schema: str, name: str, args: argparse.Namespace,
             ctx: Context) -> int:
    spec, prep = _spec(conn, schema, name, args)
    todo = [s for s in STAGES
            if s.chosen(spec) and (s.name == "preflight" or not s.done(conn, spec))]
    if args.dry_run or args.sql:
        return _show(conn, spec, prep, todo, args)
    for line in _preview(prep):
        print(f"pgparts: {line}", file=sys.stderr)
    if prep is not None and prep.unfixable:
        print("\n".join(_unfixable_lines(prep)), file=sys.stderr)
        return 1
    for stage in todo:
        if stage.name == "preflight" and args.wait > 0:
            left = wait_writers(conn, spec, args.wait)
            if left:
                print(f"pgparts: {left} session(s) still write to {spec.display} after "
                      f"{args.wait:g} s; nothing was changed", file=sys.stderr)
                return 1
        plan = _stage_plan(conn, stage, spec)
        if isinstance(plan, str):
            print(f"pgparts: stage {stage.number} ({stage.title}): {plan}", file=sys.stderr)
            return 1
        print(f"pgparts: stage {stage.number}: {stage.title}", file=sys.stderr)
        if stage.applies and not args.yes and not _confirm(stage, plan):
            print("pgparts: not applied; resume with --resume", file=sys.stderr)
            return 1
        status = apply_plan(plan, ctx, noun=f"stage {stage.number} ({stage.title})",
                            report_lines=_report)
        if status != 0:
            if stage.applies:
                # the table as typed in a shell: a hostile name is quoted for SQL, then for sh
                print(f"pgparts: resume with 'pgparts migrate {shlex.quote(spec.display)} "
                      f"--resume --apply'", file=sys.stderr)
            return status
    return 0


def _confirm(stage: Stage, plan: Plan) -> bool:
    """Ask before a stage; Finish drops the original (its rows verified in the new table
    first), which takes the table's name typed in full rather than 'yes'."""
    if stage.name != "finish" or not plan.steps:
        return confirm(plan)
    print("\n".join(plan.summary + plan.facts.changes), file=sys.stderr)
    try:
        answer = input(f"Drop the original of {plan.target}? Type its name ({plan.target}) "
                       "to go on: ")
    except EOFError:
        return False
    return answer.strip() == plan.target


def _report(result: Any, plan: Plan) -> list[str]:
    copied = f", {count(result.rows_copied)} rows copied" if result.rows_copied else ""
    lines = [f"{plan.title}: done ({len(result.done_steps)} step(s){copied})"]
    lines += [f"  {o.title}: {o.verification}" for o in result.done_steps if o.verification]
    return lines


def _show(conn: psycopg.Connection, spec: MigrationSpec, prep: Prepared | None,
          todo: list[Stage], args: argparse.Namespace) -> int:
    plans = [(s, _stage_plan(conn, s, spec)) for s in todo]
    if args.sql:
        out = [f"-- pgparts migrate {spec.display}: stages {todo[0].number}-{todo[-1].number}"
               " (review; every stage commits on its own)"]
        for s, plan in plans:
            out.append(f"\n-- stage {s.number}: {s.title}")
            out.append(plan.to_sql(conn) if isinstance(plan, Plan) else f"-- {plan}")
        sys.stdout.write("\n".join(out) + "\n")
        return 0
    if args.json:
        doc = {"spec": spec.to_json(), "preview": _preview(prep),
               "unfixable": [{"key": list(map(str, g.prefix)), "minute": str(g.minute),
                              "rows": g.size} for g in (prep.unfixable if prep else [])],
               "stages": [{"number": s.number, "name": s.name, "title": s.title,
                           "plan": p.to_json(conn) if isinstance(p, Plan) else None,
                           "unavailable": p if isinstance(p, str) else None}
                          for s, p in plans]}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
        return 0
    out = [f"pgparts: {line}" for line in _preview(prep)]
    for s, plan in plans:
        out.append(f"\n== stage {s.number}: {s.title} ==")
        out.append(render_text(describe(plan, conn)) if isinstance(plan, Plan) else plan)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


# -- abort --------------------------------------------------------------------------------------
def _abort(conn: psycopg.Connection, schema: str, name: str, args: argparse.Namespace,
           ctx: Context) -> int:
    plan = abort_plan(conn, schema, name)
    if args.sql:
        sys.stdout.write(plan.to_sql(conn) + "\n")
        return 0
    if args.dry_run:
        sys.stdout.write(plan.to_json_text(conn) + "\n" if args.json
                         else render_text(describe(plan, conn)))
        return 0
    if not args.yes and not confirm(plan):
        print("pgparts: not applied", file=sys.stderr)
        return 1
    return apply_plan(plan, ctx, noun="abort", report_lines=_report)
