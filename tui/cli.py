"""The `pgparts` command: the console by default, or a scriptable subcommand.

    pgparts [DSN] [--profile NAME] [--read-only] [--demo]      open the console
    pgparts tree|check|explain|fix ... [-d DSN]                 print, for scripts and cron
    pgparts KIND TABLE ... [-d DSN]                             a plan kind: consolidate, ...

Errors a user can cause (bad DSN, unreachable server, bad config, unknown table) print one line
on stderr and exit with status 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from .context import CliError, Context, add_connection_arguments
from .core.plans.registry import PLAN_KINDS

# name -> module in tui.commands; each module has add_arguments(parser) and run(args, ctx) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "tree": ("tui.commands.tree", "print the partition trees"),
    "check": ("tui.commands.check", "print findings; exit 0 ok, 1 warnings, 2 critical"),
    "explain": ("tui.commands.explain", "EXPLAIN a query and report which partitions it scans"),
    "fix": ("tui.commands.fix", "plan and apply the fixes pgparts knows for the findings"),
    # one subcommand per plan kind, generated from its declaration
    **{kind.name: ("tui.commands.plan", kind.summary) for kind in PLAN_KINDS},
}

EXIT_USAGE = 2


def _console_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgparts",
        description="A terminal console for PostgreSQL declarative partitioning.",
        epilog="commands: " + ", ".join(f"{n} ({h})" for n, (_, h) in COMMANDS.items())
        + ". Run 'pgparts COMMAND --help' for each.",
    )
    parser.add_argument(
        "dsn", nargs="?", default=None,
        help="libpq connection string or URI; default: the profile, else the PG* environment",
    )
    add_connection_arguments(parser, with_dsn_option=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"pgparts {name}", description=help_text)
    parser.set_defaults(command=name)
    add_connection_arguments(parser, with_dsn_option=True)
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser, module


def _exit_on_signal(signum: int, _frame: object) -> None:
    # unwind through the `with Context` blocks, so a demo server we started is stopped
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _exit_on_signal)
    try:
        if args_list and args_list[0] in COMMANDS:
            parser, module = _command_parser(args_list[0])
            args = parser.parse_args(args_list[1:])
            with Context.from_args(args) as ctx:
                return int(module.run(args, ctx))  # type: ignore[attr-defined]
        parser = _console_parser()
        args = parser.parse_args(args_list)
        with Context.from_args(args) as ctx:
            from .app.run import run_console  # Textual is imported only for the console

            return run_console(ctx)
    except CliError as exc:
        print(f"pgparts: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("pgparts: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pgparts tree | head`
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
