"""`pgparts explain [--analyze] [--json | --format F] [--require-pruning] (SQL | -f FILE ...)`.

Prints, for every partitioned table the query touches, how many partitions it scans and why it
does (not) prune. --require-pruning exits 1 when some partitioned table is scanned in full, so
teams can lint application queries in CI: `-f` may be given several times, with files or
directories (their *.sql files, sorted), and a file may hold several statements; every
statement is explained on its own, over one connection, with its file and line in the report
(JSON Lines with --json, annotations with --format github).

EXPLAIN ANALYZE runs the query inside a transaction that is always rolled back, under
[explain] statement_timeout; with --read-only (and for plain EXPLAIN always) that transaction
is READ ONLY (tui/core/explain/runner.py says what a rollback cannot undo).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..context import CliError, Context
from ..core.explain import (
    ExplainError,
    ExplainReport,
    ExplainSession,
    StatementRefused,
    check_statement,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", nargs="?", default=None, help="the query (one statement)")
    parser.add_argument(
        "-f", "--file", action="append", metavar="FILE",
        help="read the queries from FILE ('-' for stdin), or from every *.sql file of a "
        "directory; repeatable. Statements separated by ';' are explained one by one",
    )
    parser.add_argument(
        "--analyze", action="store_true",
        help="EXPLAIN ANALYZE: runs the query (in a transaction that is rolled back) to show "
        "run-time pruning",
    )
    parser.add_argument(
        "--format", choices=("text", "json", "github"), default=None,
        help="text (default); json: one JSON object per query (one per line with -f); "
        "github: GitHub Actions annotations for full scans and errors",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.add_argument(
        "--require-pruning", action="store_true",
        help="exit 1 when any partitioned table is scanned in full (all its partitions)",
    )


@dataclass(frozen=True)
class Query:
    """One statement to explain, and where it came from (file, line and column)."""

    text: str
    file: str | None = None  # None: given on the command line
    line: int = 1
    column: int = 1

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file is not None else ""


def _read_source(name: str) -> str:
    where = "standard input" if name == "-" else name
    try:
        if name == "-":
            if sys.stdin is None:
                raise CliError("standard input is closed; nothing to read with -f -")
            # bytes, so that binary input is refused instead of decoded by the locale
            binary = getattr(sys.stdin, "buffer", None)
            data = binary.read() if binary is not None else sys.stdin.read().encode()
        else:
            data = Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{where} is not UTF-8 text") from None
    if "\x00" in text:  # binary data that happens to decode; never echo it back
        raise CliError(f"{where} is not UTF-8 text (it holds NUL bytes)")
    return text


def _files(names: list[str]) -> list[str]:
    """The files to read, in order: a directory stands for its *.sql files, sorted by name."""
    out: list[str] = []
    for name in names:
        path = Path(name)
        if name != "-" and path.is_dir():
            found = sorted(str(p) for p in path.glob("*.sql") if p.is_file())
            if not found:
                raise CliError(f"no *.sql file in directory {name}")
            out.extend(found)
        else:
            out.append(name)
    return out


def _read_queries(args: argparse.Namespace) -> list[Query]:
    """Every query of the run, all read (and checked for being text) before connecting."""
    if args.sql is not None and args.file is not None:
        raise CliError("give the query either as an argument or with -f, not both")
    if args.file is None:
        if args.sql is None:
            raise CliError("no query: give SQL as an argument or use -f FILE (-f - for stdin)")
        return [Query(str(args.sql))]
    from ..core.explain.sources import split_statements  # files only

    queries: list[Query] = []
    for name in _files(args.file):
        text = _read_source(name)
        label = "<stdin>" if name == "-" else name
        statements = split_statements(text)
        if not statements:
            print(f"pgparts: {label}: no statement", file=sys.stderr)
        for statement in statements:
            # every statement is checked before anything is sent: a file that holds one that
            # may not be explained (DDL, COMMIT, a Unicode space in a name, ...) stops the run
            try:
                check_statement(statement.text)
            except StatementRefused as exc:
                raise CliError(f"{label}:{statement.line}: {exc}") from None
            queries.append(Query(statement.text, label, statement.line, statement.column))
    if not queries:
        raise CliError("no query in " + ", ".join(args.file))
    return queries


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
        for note in ref.notes:
            lines.append(f"  note: {note}")
        for a in ref.advice:
            lines.append(f"  - [{a.code}] {a.message}")
            if a.suggestion:
                lines.append(f"      try: {a.suggestion}")
    for a in report.general:
        lines.append(f"- [{a.code}] {a.text()}")
    return "\n".join(lines)


def _output_format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise CliError(f"--json and --format {args.format} disagree; give one of them")
    return "json" if args.json else (args.format or "text")


def _failure(query: Query, exc: Exception) -> str:
    """One line for a statement that could not be explained, positions in the file's terms."""
    if isinstance(exc, ExplainError):
        if exc.line is not None and query.file is not None:
            if exc.line == 1 and exc.column is not None:
                exc.column += query.column - 1
            exc.line += query.line - 1
        return exc.one_line()
    if isinstance(exc, psycopg.Error):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"EXPLAIN failed: {first}"
    return str(exc)


def _github_escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _annotation(level: str, query: Query, message: str) -> str:
    props = ""
    if query.file is not None:
        props = (f" file={_github_escape(query.file, prop=True)},line={query.line},"
                 f"col={query.column}")
    return f"::{level}{props}::{_github_escape(message)}"


def _print(fmt: str, query: Query, report: ExplainReport, headers: bool, strict: bool) -> None:
    if fmt == "json":
        doc = report.to_json()
        if query.file is not None:
            doc = {"file": query.file, "line": query.line, **doc}
            print(json.dumps(doc, default=str))  # JSON Lines: one query per line
        else:
            print(json.dumps(doc, indent=2, default=str))
    elif fmt == "github":
        for ref in report.full_scans():
            alias = f" (as {ref.label})" if ref.label not in (ref.table.name, "") else ""
            codes = ", ".join(a.code for a in ref.advice)
            print(_annotation("error" if strict else "warning", query,
                              f"{ref.table.qualified}{alias}: {ref.verdict}"
                              + (f" [{codes}]" if codes else "")))
    else:
        if headers:
            print(f"== {query.where()}")
        print(render_text(report))
        if headers:
            print()


def run(args: argparse.Namespace, ctx: Context) -> int:
    fmt = _output_format(args)
    queries = _read_queries(args)
    many = args.file is not None  # errors per statement, JSON Lines with file and line
    headers = len(queries) > 1
    conn = ctx.connect(purpose="explain", user_search_path=True)
    failed = full = 0
    full_names: list[str] = []
    try:
        session = ExplainSession(conn, timeout_seconds=ctx.config.explain.statement_timeout_seconds,
                                 read_only=ctx.read_only)
        for query in queries:
            try:
                # text shows 20 partitions per table; JSON lists every one with its bounds
                report = session.explain(query.text, analyze=args.analyze,
                                         bounds_limit=None if fmt == "json" else 20)
            except (StatementRefused, ExplainError, psycopg.Error) as exc:
                if not many:
                    raise CliError(_failure(query, exc)) from None
                if conn.closed or conn.broken:
                    raise CliError(f"{query.where()}: {_failure(query, exc)}") from None
                failed += 1
                message = _failure(query, exc)
                print(f"pgparts: {query.where()}: {message}", file=sys.stderr)
                if fmt == "github":
                    print(_annotation("error", query, message))
                elif fmt == "json":
                    print(json.dumps({"file": query.file, "line": query.line,
                                      "query": query.text, "error": message}))
                continue
            _print(fmt, query, report, headers, args.require_pruning)
            scans = report.full_scans()
            if scans:
                full += 1
                at = f" ({query.where()})" if query.file is not None else ""
                full_names.extend(f"{r.table.qualified}{at}" for r in scans)
    finally:
        conn.close()
    if many and len(queries) > 1:
        print(f"pgparts: {len(queries)} queries, {full} with a full scan, {failed} failed",
              file=sys.stderr)
    if failed:
        return 2
    if args.require_pruning and full:
        if fmt == "text":
            print(f"pgparts: --require-pruning: scanned in full: {', '.join(full_names)}",
                  file=sys.stderr)
        return 1
    return 0
