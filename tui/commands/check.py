"""`pgparts check [TABLE] [--json]`: the health findings, with an exit status for monitoring.

Exit status: 0 when there is nothing to act on (informational findings only), 1 when there are
warnings, 2 when something is critical. Usage errors also exit 2, with one line on stderr.
"""

from __future__ import annotations

import argparse
import json

from ..context import Context
from ..core.findings import CRITICAL, WARNING, check_forest, worst_severity
from ..core.humanfmt import plural
from .tree import emit, load, one_line, select, warn_policy_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "table", nargs="?", default=None,
        help="check only this table's subtree ('name' or 'schema.name')",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    parser.add_argument(
        "--exact-sizes", action="store_true",
        help="measure sizes exactly for the size checks (takes brief locks)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    forest = load(ctx, exact_sizes=args.exact_sizes, purpose="check")
    roots = select(forest, args.table)
    warn_policy_problems(forest, ctx)
    findings = check_forest(forest, ctx.config.findings, policies=ctx.config.policies)
    if args.table is not None:
        # keep what concerns the chosen subtree: found on a table in it or naming a relation in it
        oids = {node.oid for root in roots for node in root.walk()}
        findings = [
            f for f in findings
            if f.table_oid in oids or any(o in oids for o in f.object_oids)
        ]
    if args.json:
        emit(json.dumps([f.as_dict() for f in findings], indent=2) + "\n")
    elif findings:
        emit("".join(
            one_line(f"{f.severity.upper():<8}  {f.table}  {f.message}") + "\n" for f in findings
        ))
    else:
        emit(f"no findings in {plural(len(roots), 'partition tree')}\n")
    worst = worst_severity(findings)
    if worst == CRITICAL:
        return 2
    if worst == WARNING:
        return 1
    return 0
