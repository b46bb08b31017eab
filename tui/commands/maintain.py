"""`pgparts maintain [--dry-run] [--table T] [--json] [--include-partman]`: apply every
`[policy."schema.table"]` of the config in one idempotent run, for cron or a systemd timer.

What a run does, in which order, and its statuses live in tui/core/plans/maintain.py (the
console's maintain screen runs the same); this module is the command line around it: one log
line per action on stdout (or one JSON document with --json), the exit status is the run's
(0 ok, 1 something skipped, 2 something failed).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import psycopg

from ..context import CliError, Context
from ..core.errors import first_line
from ..core.plans.engine import journal
from ..core.plans.maintain import FAILED, MAINTAIN_LOCK, Action, Maintain, MaintainError

__all__ = ["MAINTAIN_LOCK", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="say what each policy would do now; change nothing")
    parser.add_argument("--table", metavar="T",
                        help="only this table's policy ('name' or 'schema.name')")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    parser.add_argument("--include-partman", action="store_true",
                        help="also maintain tables pg_partman manages (left alone by default)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.dry_run:
        ctx.require_writable("maintain")
        try:
            journal.check_writable()
        except journal.JournalError as exc:
            raise CliError(f"{exc}; nothing was applied (set PGPARTS_STATE_DIR to a writable "
                           f"directory)") from None
    actions: list[Action] = []

    def emit(action: Action) -> None:
        actions.append(action)
        if not args.json:
            print(action.line(), flush=True)

    def warn(problem: str) -> None:
        print(f"pgparts: {problem}", file=sys.stderr, flush=True)

    run_ = Maintain(ctx.target, ctx.config, emit, dry_run=args.dry_run, table=args.table,
                    include_partman=args.include_partman, warn=warn)
    conn = ctx.connect(purpose="maintain")
    try:
        status = run_.run(conn)
    except MaintainError as exc:
        raise CliError(str(exc)) from None
    except psycopg.Error as exc:
        actions.append(Action("-", "maintain", FAILED, first_line(exc)))
        status = 2
    finally:
        conn.close()
    if args.json:
        sys.stdout.write(json.dumps({"status": status,
                                     "actions": [asdict(a) for a in actions]},
                                    indent=2, ensure_ascii=False) + "\n")
    return status
