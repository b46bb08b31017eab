"""`pgparts KIND TABLE ...`: one subcommand per registered plan kind, generated from its
declaration (tui.core.plans.registry):

    pgparts KIND TABLE status [--json]                          (kinds with a status)
    pgparts KIND TABLE [kind options] (--dry-run [--json] | --sql | --apply [--yes])

--apply asks for confirmation on the terminal unless --yes is given; without a terminal it
refuses. Progress goes to stderr (commands/apply.py).
"""

from __future__ import annotations

import argparse
import json
import sys

import psycopg

from ..context import CliError, Context
from ..core.catalog import Forest, load_forest
from ..core.errors import first_line
from ..core.plans import Plan
from ..core.plans.engine.describe import describe, render_text
from ..core.plans.kind import PlanKind, PlanKindError, Request, find_table
from ..core.plans.registry import kind_named
from .apply import apply_plan, confirm


def add_mode_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every plan command shares."""
    parser.add_argument("--json", action="store_true",
                        help="with status or --dry-run: JSON instead of text")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="show the changes, steps, locks, estimates and SQL; change nothing")
    mode.add_argument("--sql", action="store_true",
                      help="print the plan as a reviewable SQL script; change nothing")
    mode.add_argument("--apply", action="store_true", help="run the plan")
    parser.add_argument("--yes", action="store_true",
                        help="with --apply: do not ask for confirmation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kind = kind_named(parser.get_default("command"))
    parser.add_argument("table", help=kind.table_help)
    if kind.has_status:
        # its own dest: a kind's option may be called 'action' (retention's --action)
        parser.add_argument("status_action", nargs="?", choices=["status"], metavar="status",
                            help=getattr(kind, "status_help", "'status': what the kind sees"))
    for option in kind.options:
        option.add_to(parser)
    add_mode_arguments(parser)


def check_mode(args: argparse.Namespace, ctx: Context, what: str) -> None:
    """The common flags' rules: one mode, --yes only with --apply, a terminal to confirm on."""
    if not (args.dry_run or args.sql or args.apply):
        raise CliError("say what to do: " + ("'status', " if what == "status" else "")
                       + "--dry-run, --sql or --apply")
    if args.yes and not args.apply:
        raise CliError("--yes goes with --apply")
    if args.apply:
        ctx.require_writable(f"{args.command} --apply")
        if not args.yes and not sys.stdin.isatty():
            raise CliError("--apply asks for confirmation on a terminal; there is none: "
                           "review with --dry-run, then add --yes")


def run(args: argparse.Namespace, ctx: Context) -> int:
    kind = kind_named(args.command)
    if getattr(args, "status_action", None) == "status":
        if args.dry_run or args.sql or args.apply:
            raise CliError("status takes no --dry-run, --sql or --apply")
        return _status(kind, args, ctx)
    check_mode(args, ctx, "status" if kind.has_status else "")
    try:
        request = kind.request({o.name: getattr(args, o.name) for o in kind.options},
                               args.table)
    except PlanKindError as exc:
        raise CliError(str(exc)) from None
    request.applying = bool(args.apply)  # a preview never reads rows that run the table's code
    conn = ctx.connect(purpose="cli")
    try:
        plan = build(kind, conn, args.table, request, ctx)
        if show(plan, conn, args):
            return 0
    finally:
        conn.close()
    if not plan.steps:
        print("\n".join(_nothing_to_do(kind, plan)), file=sys.stderr)
        return 0
    if not args.yes and not confirm(plan):
        print("pgparts: not applied", file=sys.stderr)
        return 1
    return apply_plan(plan, ctx, noun=kind.noun or kind.name, report_lines=kind.report)


def build(kind: PlanKind, conn: psycopg.Connection, table: str, request: Request,
          ctx: Context, forest: Forest | None = None) -> Plan:
    request.target = table
    """Load the catalog once, read the kind's status, build the plan; user errors as CliError."""
    try:
        forest = forest or load_forest(conn)
        status = kind.status(conn, forest, table)
        if status is None:
            find_table(forest, table)
        return kind.build(conn, forest, status, request, ctx.config)
    except PlanKindError as exc:
        raise CliError(str(exc)) from None
    except psycopg.Error as exc:
        raise CliError(f"planning failed: {first_line(exc)}") from None


def show(plan: Plan, conn: psycopg.Connection, args: argparse.Namespace) -> bool:
    """--sql / --dry-run output; True when that was the whole job."""
    if args.sql:
        sys.stdout.write(plan.to_sql(conn) + "\n")
        return True
    if args.dry_run:
        if args.json:
            sys.stdout.write(plan.to_json_text(conn) + "\n")
        else:
            text = render_text(describe(plan, conn))
            # an empty plan's text ends on its last line: the shell prompt must not follow it
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return True
    return False


def _nothing_to_do(kind: PlanKind, plan: Plan) -> list[str]:
    hook = getattr(kind, "nothing_to_do", None)
    if hook is not None:
        return list(hook(plan))
    return [f"nothing to do for {kind.name} on {plan.target}"] + [
        f"pgparts: {line}" for line in plan.summary]


def _status(kind: PlanKind, args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.connect(purpose="cli")
    try:
        forest = load_forest(conn)
        status = kind.status(conn, forest, args.table)
    except PlanKindError as exc:
        raise CliError(str(exc)) from None
    except psycopg.Error as exc:
        raise CliError(f"reading the catalog failed: {first_line(exc)}") from None
    finally:
        conn.close()
    if args.json:
        sys.stdout.write(json.dumps(kind.status_json(status), indent=2, ensure_ascii=False)
                         + "\n")
    else:
        sys.stdout.write(kind.status_text(status))
    return 0
