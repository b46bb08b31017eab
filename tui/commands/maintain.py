"""`pgparts maintain [--dry-run] [--table T] [--json] [--include-partman]`: apply every
`[policy."schema.table"]` of the config in one idempotent run, for cron or a systemd timer.

Per table, in this order, each part only when its policy key is set: create_ahead (premake),
consolidate (consolidate_older_than, consolidate_batch), retention (retention,
retention_action, retention_schema), then ANALYZE of the partitions this run created. Each is
the registered plan kind's plan, built from a fresh read of the catalog and run by the plan
engine (lock timeout, retries, journal), so a second run finds nothing to do.

One log line per action on stdout (or one JSON document with --json). Exit status: 0 ok;
1 something was skipped (a lock not granted within the lock timeout after the retries, another
plan running on the table, a partition refused; that table's remaining actions are skipped, the
other tables still run) or another maintain holds the database; 2 something failed.

Two runs on one database exclude each other with an advisory lock (pg_try_advisory_lock: the
second one says so and exits 1). On a standby (pg_is_in_recovery()) nothing is done. Tables that
pg_partman manages are left alone unless --include-partman.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from ..context import CliError, Context
from ..core.catalog import Forest, PartNode, load_forest
from ..core.config import TablePolicy
from ..core.errors import first_line
from ..core.humanfmt import plural
from ..core.names import quote_ident
from ..core.partman import load_partman_config
from ..core.plans import Outcome, Plan, PlanRunner
from ..core.plans.engine import journal
from ..core.plans.kind import PlanKindError
from ..core.plans.registry import kind_named
from ..core.policy import resolve_policies

# pg_try_advisory_lock(int4, int4): 'pgps' and 'mnt\0' (the plan runner uses the one-bigint
# form, a separate key space)
MAINTAIN_LOCK = (0x70677073, 0x6D6E7400)

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


@dataclass
class Action:
    table: str
    action: str  # create_ahead, consolidate, retention, analyze, or "table" for the table
    status: str  # ok, skipped, failed, nothing (nothing to do), planned (--dry-run)
    message: str

    def line(self) -> str:
        return f"{self.table}: {self.action}: {self.status}: {self.message}"


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
    conn = ctx.connect(purpose="maintain")
    try:
        status = _maintain(conn, args, ctx, actions)
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


def _emit(args: argparse.Namespace, actions: list[Action], action: Action) -> None:
    actions.append(action)
    if not args.json:
        print(action.line(), flush=True)


def _maintain(conn: psycopg.Connection, args: argparse.Namespace, ctx: Context,
              actions: list[Action]) -> int:
    row = conn.execute("SELECT pg_catalog.pg_is_in_recovery()").fetchone()
    if row and row[0]:
        _emit(args, actions, Action("-", "maintain", "nothing",
                                    "the server is a standby (in recovery): nothing to do here; "
                                    "run maintain on the primary"))
        return 0
    if not args.dry_run:
        got = conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s, %s)",
                           MAINTAIN_LOCK).fetchone()
        if not (got and got[0]):
            _emit(args, actions, Action("-", "maintain", SKIPPED,
                                        "another pgparts maintain is running on this "
                                        "database; nothing done"))
            return 1
    forest = load_forest(conn)
    resolution = resolve_policies(forest, ctx.config.policies)
    for problem in resolution.problems:
        print(f"pgparts: {problem}", file=sys.stderr)
    if not ctx.config.policies:
        _emit(args, actions, Action("-", "maintain", "nothing",
                                    "no [policy] in the config: nothing to maintain"))
        return 0
    targets = sorted(((forest.nodes[oid], p) for oid, p in resolution.by_oid.items()),
                     key=lambda t: t[0].qualified)
    if args.table is not None:
        try:
            wanted = forest.find(args.table)
        except (LookupError, ValueError) as exc:
            raise CliError(str(exc)) from None
        targets = [t for t in targets if t[0].oid == wanted.oid]
        if not targets:
            raise CliError(f"{wanted.qualified} has no [policy] in the config")
    managed = load_partman_config(conn)
    worst = 0
    for node, policy in targets:
        if node.oid in managed and not args.include_partman:
            _emit(args, actions, Action(node.qualified, "table", "nothing",
                                        "left alone: pg_partman manages it "
                                        "(--include-partman to maintain it anyway)"))
            continue
        worst = max(worst, _table(conn, args, ctx, node, policy, actions))
    return worst


def _requests(policy: TablePolicy) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if policy.premake is not None:
        out.append(("create_ahead", {"count": policy.premake}))
    if policy.consolidate_older_than is not None:
        out.append(("consolidate", {"older_than": policy.consolidate_older_than,
                                    "batch": policy.consolidate_batch}))
    if policy.retention is not None:
        out.append(("retention", {"older_than": policy.retention,
                                  "action": policy.retention_action,
                                  "archive_schema": policy.retention_schema}))
    return out


def _table(conn: psycopg.Connection, args: argparse.Namespace, ctx: Context, node: PartNode,
           policy: TablePolicy, actions: list[Action]) -> int:
    """Every action of one table's policy; the worst exit status among them."""
    table = node.qualified
    spec = f"{quote_ident(node.schema)}.{quote_ident(node.name)}"  # never ambiguous
    worst = 0
    created: list[str] = []
    for kind_name, values in _requests(policy):
        status, made = _one(conn, args, ctx, table, spec, kind_name, values, actions)
        created += made
        worst = max(worst, status)
        if status:  # skipped or failed: the table's later actions wait for the next run
            break
    if created and not args.dry_run and worst == 0:
        status, _ = _one(conn, args, ctx, table, spec, "analyze", {"partitions": created},
                         actions)
        worst = max(worst, status)
    return worst


def _one(conn: psycopg.Connection, args: argparse.Namespace, ctx: Context, table: str,
         spec: str, kind_name: str, values: dict[str, Any], actions: list[Action]
         ) -> tuple[int, list[str]]:
    """Plan and (unless --dry-run) run one kind on one table: (exit status, leaves created)."""
    kind = kind_named(kind_name)
    forest = load_forest(conn)  # what the previous action changed
    try:
        if kind_name == "analyze":
            values = {"partitions": _never_analyzed_leaves(forest, values["partitions"])}
            if not values["partitions"]:
                return 0, []
        request = kind.default_request(forest, spec, ctx.config)
        request.values.update({k: v for k, v in values.items() if v is not None})
        plan = kind.build(conn, forest, kind.status(conn, forest, spec), request, ctx.config)
    except PlanKindError as exc:
        _emit(args, actions, Action(table, kind_name, FAILED, str(exc)))
        return 2, []
    what = "; ".join(plan.facts.changes) or (plan.summary[0] if plan.summary else "")
    if not plan.steps:
        _emit(args, actions, Action(table, kind_name, "nothing",
                                    plan.summary[0] if plan.summary else "nothing to do"))
        return 0, []
    if args.dry_run:
        _emit(args, actions, Action(table, kind_name, "planned",
                                    f"would {plan.title}: {what}"))
        return 0, []
    result = PlanRunner(ctx.target, plan, config=ctx.config.plans).run()
    if result.ok:
        _emit(args, actions, Action(table, kind_name, OK,
                                    f"{plan.title} ({plural(len(result.done_steps), 'step')}, "
                                    f"{result.seconds:.1f} s)"))
        return 0, _created_leaves(plan)
    if result.outcome == Outcome.BUSY or _skipped(result.error):
        _emit(args, actions, Action(table, kind_name, SKIPPED,
                                    f"{result.error}; the table's remaining actions wait for "
                                    f"the next run"))
        return 1, []
    _emit(args, actions, Action(table, kind_name, FAILED,
                                f"{result.error}" + (f" ({result.state})" if result.state
                                                     else "")))
    return 2, []


def _skipped(error: str) -> bool:
    """A lock not granted after the retries, or a partition refused: nothing broke."""
    return "another session holds a conflicting lock" in error or "refused " in error


def _created_leaves(plan: Plan) -> list[str]:
    return list(plan.details.get("created", [])) if plan.kind == "create_ahead" else []


def _never_analyzed_leaves(forest: Forest, created: list[str]) -> list[str]:
    """The never-analyzed leaves under the partitions create_ahead made."""
    out: list[str] = []
    for spec in created:
        try:
            node = forest.find(spec)
        except (LookupError, ValueError):
            continue
        out += [f"{quote_ident(leaf.schema)}.{quote_ident(leaf.name)}"
                for leaf in node.leaves() if leaf.relkind == "r"
                and leaf.reltuples < 0 and leaf.last_analyze is None
                and leaf.last_autoanalyze is None]
    return out
