"""`pgparts explain [--analyze] [--json] [--require-pruning] (SQL | -f FILE)`.

Prints, for every partitioned table the query touches, how many partitions it scans and why it
does (not) prune. --require-pruning exits 1 when some partitioned table is scanned in full, so
teams can lint application queries in CI. EXPLAIN ANALYZE runs the query inside a transaction
that is always rolled back, under [explain] statement_timeout; with --read-only (and for plain
EXPLAIN always) that transaction is READ ONLY (tui/core/explain/runner.py says what a rollback
cannot undo).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import psycopg

from ..context import CliError, Context
from ..core.explain import ExplainError, ExplainReport, ExplainSession, StatementRefused


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", nargs="?", default=None, help="the query (one statement)")
    parser.add_argument("-f", "--file", help="read the query from FILE ('-' for stdin)")
    parser.add_argument(
        "--analyze", action="store_true",
        help="EXPLAIN ANALYZE: runs the query (in a transaction that is rolled back) to show "
        "run-time pruning",
    )
    parser.add_argument("--json", action="store_true", help="a machine-readable report")
    parser.add_argument(
        "--require-pruning", action="store_true",
        help="exit 1 when any partitioned table is scanned in full (all its partitions)",
    )


def _read_query(args: argparse.Namespace) -> str:
    if args.sql is not None and args.file is not None:
        raise CliError("give the query either as an argument or with -f, not both")
    if args.file is not None:
        where = "standard input" if args.file == "-" else args.file
        try:
            if args.file == "-":
                if sys.stdin is None:
                    raise CliError("standard input is closed; nothing to read with -f -")
                # bytes, so that binary input is refused instead of decoded by the locale
                binary = getattr(sys.stdin, "buffer", None)
                data = binary.read() if binary is not None else sys.stdin.read().encode()
            else:
                data = Path(args.file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {where}: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError(f"{where} is not UTF-8 text") from None
        if "\x00" in text:  # binary data that happens to decode; never echo it back
            raise CliError(f"{where} is not UTF-8 text (it holds NUL bytes)")
        return text
    if args.sql is None:
        raise CliError("no query: give SQL as an argument or use -f FILE (-f - for stdin)")
    return str(args.sql)


def render_text(report: ExplainReport) -> str:
    lines: list[str] = []
    mode = "EXPLAIN ANALYZE" if report.raw.analyze else "EXPLAIN"
    if report.raw.generic:
        mode += " (generic plan)"
    timing = []
    if report.plan.planning_ms is not None:
        timing.append(f"planning {report.plan.planning_ms:.1f} ms")
    if report.plan.execution_ms is not None:
        timing.append(f"execution {report.plan.execution_ms:.1f} ms")
    lines.append(f"{mode}{': ' + ', '.join(timing) if timing else ''}")
    if not report.references:
        lines.append("no partitioned table is scanned by this query")
    for ref in report.references:
        mark = {"full": "FULL", "pruned": "ok", "empty": "-"}[ref.status]
        alias = f" (as {ref.label})" if ref.label not in (ref.table.name, "") else ""
        lines.append("")
        lines.append(f"[{mark}] {ref.table.qualified}{alias}: {ref.verdict}")
        shown = ref.partitions[:20]
        for p in shown:
            flag = ""
            if p.executed is False:
                flag = "  (never executed)"
            elif not p.in_plan:
                flag = "  (removed at start-up with NULL arguments)"
            lines.append(f"    {p.node.qualified:<48} {p.bounds}{flag}")
        if len(ref.partitions) > len(shown):
            lines.append(f"    ... and {len(ref.partitions) - len(shown)} more")
        for a in ref.advice:
            lines.append(f"  - [{a.code}] {a.message}")
            if a.suggestion:
                lines.append(f"      try: {a.suggestion}")
    for a in report.general:
        lines.append(f"- [{a.code}] {a.text()}")
    return "\n".join(lines)


def run(args: argparse.Namespace, ctx: Context) -> int:
    text = _read_query(args)
    conn = ctx.connect(purpose="explain", user_search_path=True)
    try:
        session = ExplainSession(conn, timeout_seconds=ctx.config.explain.statement_timeout_seconds,
                                 read_only=ctx.read_only)
        try:
            # text shows 20 partitions per table; JSON lists every one with its bounds
            report = session.explain(text, analyze=args.analyze,
                                     bounds_limit=None if args.json else 20)
        except StatementRefused as exc:
            raise CliError(str(exc)) from None
        except ExplainError as exc:
            raise CliError(exc.one_line()) from None
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CliError(f"EXPLAIN failed: {first}") from None
    finally:
        conn.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(render_text(report))
    if args.require_pruning and report.full_scans():
        if not args.json:
            names = ", ".join(r.table.qualified for r in report.full_scans())
            print(f"pgparts: --require-pruning: scanned in full: {names}", file=sys.stderr)
        return 1
    return 0
