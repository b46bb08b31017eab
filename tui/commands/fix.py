"""`pgparts fix [TABLE] [--only CODE[,CODE]] (--dry-run | --sql | --apply [--yes]) [--json]`:
plan every fix pgparts knows for the current findings (tui.core.plans.remedies), one plan per
kind and table, and show or apply them (each plan after the first built again just before it
runs: an earlier one may have changed the table). Findings without a fix yet are named on
stderr with what will fix them once it exists.
"""

from __future__ import annotations

import argparse
import json
import sys

import psycopg

from ..context import CliError, Context
from ..core.catalog import load_forest
from ..core.errors import first_line
from ..core.findings import CODES, check_forest
from ..core.plans import Plan
from ..core.plans.engine.describe import describe, render_text
from ..core.plans.kind import PlanKind, PlanKindError, Request
from ..core.plans.registry import kind_named
from ..core.plans.remedies import LATER, REMEDIES
from .apply import apply_plan, confirm
from .plan import add_mode_arguments, check_mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", nargs="?", default=None,
                        help="fix only this table's subtree ('name' or 'schema.name')")
    parser.add_argument("--only", metavar="CODE[,CODE]",
                        help="only these finding codes: " + ", ".join(sorted(REMEDIES)))
    add_mode_arguments(parser)


def _codes(text: str | None) -> set[str] | None:
    if not text:
        return None
    codes = {c.strip() for c in text.split(",") if c.strip()}
    unknown = sorted(codes - set(CODES))
    if unknown:
        raise CliError(f"--only: unknown finding code {unknown[0]!r}; codes: "
                       + ", ".join(CODES))
    return codes


def plans_for(conn: psycopg.Connection, ctx: Context, table: str | None,
              only: set[str] | None, applying: bool = False
              ) -> tuple[list[tuple[PlanKind, Plan, Request]], list[str]]:
    """The plans fixing the current findings (one per kind and table, nested tables folded
    into their ancestor's plan), and lines about findings pgparts cannot fix yet. Built as
    previews unless `applying` (kind.Request.applying)."""
    forest = load_forest(conn)
    findings = check_forest(forest, ctx.config.findings, policies=ctx.config.policies)
    if table is not None:
        try:
            top = forest.find(table)
        except (LookupError, ValueError) as exc:
            raise CliError(str(exc)) from None
        oids = {n.oid for n in top.walk()}
        findings = [f for f in findings
                    if f.table_oid in oids or any(o in oids for o in f.object_oids)]
    if only is not None:
        findings = [f for f in findings if f.code in only]
    wanted: dict[tuple[str, int], dict[str, set[str]]] = {}
    notes: list[str] = []
    for f in findings:
        remedy = REMEDIES.get(f.code)
        if remedy is None:
            if f.code in LATER:
                notes.append(f"{f.code} on {f.table}: no fix in pgparts yet; "
                             f"{LATER[f.code]}")
            continue
        values = wanted.setdefault((remedy.kind, f.table_oid), {})
        for k, v in remedy.values.items():
            values.setdefault(k, set()).add(v)
    plans: list[tuple[PlanKind, Plan, Request]] = []
    for (kind_name, oid), values in sorted(wanted.items(), key=lambda kv: kv[0]):
        node = forest.nodes[oid]
        # a table inside another one this kind already fixes is covered by that plan
        if any((kind_name, a) in wanted for a in node.path[:-1]):
            continue
        kind = kind_named(kind_name)
        request = Request({k: next(iter(v)) if len(v) == 1 else None
                           for k, v in values.items()}, node.qualified, applying)
        try:
            plan = kind.build(conn, forest, kind.status(conn, forest, node.qualified), request,
                              ctx.config)
        except PlanKindError as exc:
            notes.append(f"{kind_name} on {node.qualified}: {exc}")
            continue
        if plan.steps:
            plans.append((kind, plan, request))
    return plans, notes


def _replan(ctx: Context, kind: PlanKind, request: Request) -> Plan | None:
    """The kind's plan built again from the catalog as it is now (None: nothing left to do)."""
    conn = ctx.connect(purpose="cli")
    try:
        forest = load_forest(conn)
        try:
            plan = kind.build(conn, forest, kind.status(conn, forest, request.target), request,
                              ctx.config)
        except PlanKindError as exc:
            print(f"pgparts: {kind.name} on {request.target}: {exc}", file=sys.stderr)
            return None
    except psycopg.Error as exc:
        raise CliError(f"planning failed: {first_line(exc)}") from None
    finally:
        conn.close()
    return plan if plan.steps else None


def run(args: argparse.Namespace, ctx: Context) -> int:
    check_mode(args, ctx, "")
    only = _codes(args.only)
    conn = ctx.connect(purpose="cli")
    try:
        try:
            plans, notes = plans_for(conn, ctx, args.table, only, bool(args.apply))
        except psycopg.Error as exc:
            raise CliError(f"planning failed: {first_line(exc)}") from None
        for line in notes:
            print(f"pgparts: {line}", file=sys.stderr)
        if args.sql:
            sys.stdout.write("\n".join(p.to_sql(conn) for _k, p, _r in plans) + "\n")
            return 0
        if args.dry_run:
            if args.json:
                sys.stdout.write(json.dumps([p.to_json(conn) for _k, p, _r in plans], indent=2,
                                            ensure_ascii=False) + "\n")
            elif plans:
                sys.stdout.write("\n".join(render_text(describe(p, conn))
                                            for _k, p, _r in plans))
            else:
                sys.stdout.write("nothing to fix\n")
            return 0
    finally:
        conn.close()
    if not plans:
        print("nothing to fix", file=sys.stderr)
        return 0
    worst = 0
    for i, (kind, first, request) in enumerate(plans):
        # a plan applied before may have changed this table (drain-default and fill-gaps both
        # replace the DEFAULT partition): each later plan is built again just before it runs
        plan = first if i == 0 else _replan(ctx, kind, request)
        if plan is None:
            continue
        if not args.yes and not confirm(plan):
            print(f"pgparts: {plan.title}: not applied", file=sys.stderr)
            worst = max(worst, 1)
            continue
        status = apply_plan(plan, ctx, noun=kind.noun or kind.name, report_lines=kind.report)
        if status >= 128:  # cancelled: stop here
            return status
        worst = max(worst, status)
    return worst
