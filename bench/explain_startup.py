"""Benchmark: `pgparts explain` on one query, the whole process, against psql doing the EXPLAIN.

What it measures: the wall time from starting the process to its exit (output discarded), and
the CPU time the process used (user + system, from the kernel's accounting of the child), of

- the installed `pgparts` console script, the one users run (the script pip wrote next to this
  interpreter: `from tui.launch import entry`), running `pgparts explain -d DSN QUERY`;
- `psql -X -q -d DSN -c "EXPLAIN QUERY"`;
- with --floor, a Python script that only imports psycopg and pglast, connects and sends the
  EXPLAIN: what any Python tool built on these two libraries pays before doing anything else
  (its imports also run with the collector off, then frozen, as pgparts' do).

They alternate, --runs times each after one warm-up run each, against a private PostgreSQL 18
(or --dsn) holding a small partitioned table, so that all see the same machine load; the
figures are the medians and their ratio to psql's median.

pip compiles a package's bytecode when it installs it; an editable install, or an environment
with PYTHONDONTWRITEBYTECODE set, may have none, and Python then compiles every pgparts module
from source at every start. The package's bytecode is compiled first (as pip does), so the
figures are those of an installed pgparts.

    python bench/explain_startup.py [--runs 10] [--dsn DSN] [--query SQL] [--floor]
                                    [--breakdown] [--source DIR ...]

--breakdown adds where the start-up goes (python -X importtime, the least of 5 runs per
module, each module counted with the package whose import pulled it in).
--source DIR runs `python -S` with the pgparts tree in DIR (`from tui.launch import entry`, as
the console script does) instead of the installed `pgparts`; given several times, the versions
alternate with each other and with psql (without site, an editable install cannot redirect
`tui`, so every version is run that way).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psycopg

from tui.demo.localserver import FAST_TEST_SETTINGS, temporary_server

SETUP = """
DROP TABLE IF EXISTS bench_startup;
CREATE TABLE bench_startup (ts timestamptz NOT NULL, v int) PARTITION BY RANGE (ts);
CREATE TABLE bench_startup_2024 PARTITION OF bench_startup
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE bench_startup_2025 PARTITION OF bench_startup
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE bench_startup_2026 PARTITION OF bench_startup
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""
QUERY = "SELECT * FROM bench_startup WHERE ts >= '2025-03-01' AND ts < '2025-04-01'"
# The least any Python tool on psycopg and pglast does: import both (with the collector off,
# then frozen, as tui.launch does), connect, EXPLAIN
FLOOR = """
import gc
import sys
gc.disable()
import psycopg
import pglast.parser
gc.freeze()
gc.enable()
pglast.parser.parse_sql(sys.argv[2])
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(conn.execute("EXPLAIN (FORMAT JSON) " + sys.argv[2]).fetchone()[0])
"""
# where -X importtime's modules are counted: the nearest importer among these
GROUPS = {"psycopg": "psycopg", "psycopg_binary": "psycopg", "pglast": "pglast",
          "tui": "pgparts", "platformdirs": "platformdirs", "site": "python start-up (site)",
          "encodings": "python start-up (site)"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of `cmd`, start to exit."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          cwd=cwd, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed: {done.stderr.decode(errors='replace').strip()}")
    return elapsed, _children_cpu() - cpu


def _package_dir(python: str, env: dict[str, str], cwd: str) -> str:
    out = subprocess.run([python, "-c", "import tui; print(tui.__path__[0])"], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _compile(directory: str) -> None:
    if not compileall.compile_dir(directory, quiet=1):
        raise SystemExit(f"could not compile {directory}")


def _source_command(source: str, dsn: str, query: str, env: dict[str, str]
                    ) -> tuple[list[str], dict[str, str]]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {**env, "PYTHONPATH": os.pathsep.join([os.path.abspath(source), site])}
    # what the console script runs, without site (a tree older than tui.launch: tui.cli's entry)
    script = ("import sys\nsys.argv[0] = 'pgparts'\ntry:\n    from tui.launch import entry\n"
              "except ImportError:\n    from tui.cli import entry\nentry()\n")
    return [sys.executable, "-S", "-c", script, "explain", "-d", dsn, query], env


def _breakdown(cmd: list[str], env: dict[str, str], cwd: str, runs: int = 5) -> None:
    """Where the start-up goes: -X importtime's self time per module (the least of `runs`),
    added up per package; a module counts for the nearest package of GROUPS importing it."""
    best: dict[str, tuple[int, str]] = {}
    for _ in range(runs):
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)
        stack: list[tuple[int, str]] = []  # (depth, group) of the enclosing imports
        for line in reversed(done.stderr.splitlines()):  # importers are listed after imports
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _cumulative, name = line[len("import time:"):].split("|")
            depth = (len(name) - len(name.lstrip())) // 2
            module = name.strip()
            while stack and stack[-1][0] >= depth:
                stack.pop()
            group = GROUPS.get(module.split(".")[0])
            if group is None:
                group = stack[-1][1] if stack else "other (stdlib)"
            stack.append((depth, group))
            previous = best.get(module)
            if previous is None or int(self_us) < previous[0]:
                best[module] = (int(self_us), group)
    totals: dict[str, int] = defaultdict(int)
    for self_us, group in best.values():
        totals[group] += self_us
    print("imports (python -X importtime, least of 5 per module, inflated by the tracing):")
    for group, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<24} {us / 1000:6.1f} ms")
    print(f"  {'all':<24} {sum(totals.values()) / 1000:6.1f} ms")


def measure(dsn: str, runs: int, query: str, sources: list[str], floor: bool,
            breakdown: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
    bindir = Path(sys.executable).parent
    pgparts = shutil.which("pgparts", path=str(bindir))
    if pgparts is None:
        raise SystemExit(f"no pgparts console script in {bindir}: pip install the package")
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql is not installed")
    home = tempfile.mkdtemp(prefix="pgparts-bench-")
    # no user config, nothing cached: what a CI job's first run sees; run from an empty
    # directory, so that nothing is imported from the current one
    env = {k: v for k, v in os.environ.items() if k != "PGPARTS_CONFIG"}
    env.update(XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, XDG_STATE_HOME=home)
    commands: list[tuple[str, list[str], dict[str, str]]] = []
    if sources:
        for source in sources:
            _compile(os.path.join(os.path.abspath(source), "tui"))
            cmd, cmd_env = _source_command(source, dsn, query, env)
            commands.append((f"pgparts from {source}", cmd, cmd_env))
    else:
        package = _package_dir(sys.executable, env, home)
        _compile(package)
        print(f"pgparts: {pgparts} (package {package}, bytecode compiled)")
        commands.append(("pgparts explain", [pgparts, "explain", "-d", dsn, query], env))
    if floor:
        commands.append(("python+psycopg+pglast", [sys.executable, "-c", FLOOR, dsn, query], env))
    commands.append(("psql EXPLAIN", [psql, "-X", "-q", "-d", dsn, "-c", f"EXPLAIN {query}"],
                     env))
    for _label, cmd, cmd_env in commands:  # warm the file cache
        _time(cmd, cmd_env, home)
    walls: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    cpus: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        for label, cmd, cmd_env in commands:
            wall, cpu = _time(cmd, cmd_env, home)
            walls[label].append(wall)
            cpus[label].append(cpu)
    load_after = os.getloadavg()[0]
    psql_wall = statistics.median(walls["psql EXPLAIN"])
    psql_cpu = statistics.median(cpus["psql EXPLAIN"])
    print(f"query: {query}")
    print(f"{runs} runs each, alternating; load average {load_before:.1f} -> {load_after:.1f}")
    width = max(len(label) for label in walls)
    for label in walls:
        wall, cpu = statistics.median(walls[label]), statistics.median(cpus[label])
        print(f"{label:<{width}}  wall: median {wall * 1000:4.0f} ms"
              f" (min {min(walls[label]) * 1000:.0f}, max {max(walls[label]) * 1000:.0f}),"
              f" {wall / psql_wall:.2f}x psql;"
              f" cpu: median {cpu * 1000:4.0f} ms, {cpu / psql_cpu:.2f}x psql")
    if breakdown:
        _label, cmd, cmd_env = commands[0]
        if not sources:  # the script's own interpreter (its #! line) runs it
            cmd = [Path(pgparts).read_text().splitlines()[0][2:].strip(), *cmd]
        _breakdown([cmd[0], "-X", "importtime", *cmd[1:]], cmd_env, home)
    shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dsn", help="use this database instead of a private server")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--floor", action="store_true",
                        help="also time python importing psycopg and pglast, connecting and "
                        "sending the EXPLAIN, without pgparts")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print where the imports' time goes, per package")
    parser.add_argument("--source", action="append", default=[],
                        help="run pgparts from this source tree (python -S); repeatable, "
                        "to compare versions in the same alternation")
    args = parser.parse_args()
    if args.dsn:
        measure(args.dsn, args.runs, args.query, args.source, args.floor, args.breakdown)
        return
    with temporary_server(settings=dict(FAST_TEST_SETTINGS)) as server:
        measure(server.conninfo(), args.runs, args.query, args.source, args.floor,
                args.breakdown)


if __name__ == "__main__":
    main()
