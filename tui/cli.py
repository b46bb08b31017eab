"""The `pgparts` command: the console by default, or a scriptable subcommand.

    pgparts [DSN] [--profile NAME] [--read-only] [--demo]      open the console
    pgparts tree|check|explain|fix ... [-d DSN]                 print, for scripts and cron
    pgparts KIND TABLE ... [-d DSN]                             a plan kind: consolidate, ...
    pgparts migrate TABLE ... [-d DSN]                          a plain table, partitioned

Errors a user can cause (bad DSN, unreachable server, bad config, unknown table) print one line
on stderr and exit with status 2; nothing prints a traceback.
"""

from __future__ import annotations

import argparse
import codecs
import difflib
import errno
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from .context import CliError, Context, add_connection_arguments
from .core.connection import redact

# name -> module in tui.commands; each module has add_arguments(parser) and run(args, ctx) -> int
BASE_COMMANDS: dict[str, tuple[str, str]] = {
    "tree": ("tui.commands.tree", "print the partition trees"),
    "check": ("tui.commands.check", "print findings; exit 0 ok, 1 warnings, 2 critical"),
    "explain": ("tui.commands.explain", "EXPLAIN a query and report which partitions it scans"),
    "fix": ("tui.commands.fix", "plan and apply the fixes pgparts knows for the findings"),
    "migrate": ("tui.commands.migrate", "turn a plain table into a partitioned one, stage by "
                "stage (status, --resume, --abort)"),
    "maintain": ("tui.commands.maintain", "apply every [policy] of the config in one run "
                 "(for cron); exit 0 ok, 1 skipped, 2 failed"),
}


def all_commands() -> dict[str, tuple[str, str]]:
    """BASE_COMMANDS and one subcommand per plan kind, generated from its declaration
    (`create-ahead` for the kind create_ahead: commands are spelt with hyphens).

    Importing the kinds costs more than a whole `pgparts explain` run: the registry is imported
    only for a command that is not a base command, and for the console's help."""
    from .core.plans.registry import PLAN_KINDS

    kinds = {kind.name.replace("_", "-"): ("tui.commands.plan", kind.summary)
             for kind in PLAN_KINDS}
    return {**BASE_COMMANDS, **kinds}


def _command_named(word: str) -> str | None:
    """The command `word` names (a kind's own spelling, create_ahead, works too), or None."""
    if word in BASE_COMMANDS:
        return word
    if word.startswith("-") or "=" in word or "/" in word:
        return None  # an option or a DSN: no need to import the plan kinds to know
    commands = all_commands()
    for name in (word, word.replace("_", "-")):
        if name in commands:
            return name
    return None

EXIT_USAGE = 2

# What an output encoding that cannot show them (latin-1, ASCII) gets instead of the characters
# pgparts itself prints; anything else (a letter of a table name) becomes a \uXXXX escape, which
# loses nothing and keeps JSON output valid JSON
_ASCII_FALLBACK = {
    "→": "->", "←": "<-", "∞": "inf", "≥": ">=", "≤": "<=", "…": "...", "–": "-", "—": "-",
    "├": "|", "└": "`", "│": "|", "─": "-", "×": "x", "·": ".", "✓": "ok", "✗": "x",
}


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(_ASCII_FALLBACK.get(ch) or _json_escape(ch) for ch in bad), exc.end


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


codecs.register_error("pgparts-ascii", _ascii_fallback)


class _Parser(argparse.ArgumentParser):
    """argparse, its errors one line as every error a user can cause (argparse printed its
    usage first, five lines for `pgparts split`), keeping a password given in a stray
    argument out of the message."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        command = self.prog.removeprefix("pgparts").strip()
        where = f"{command}: " if command else ""
        raise CliError(f"{where}{redact(message)} ({self.prog} --help shows the usage)")


def preload_command(args_list: Sequence[str]) -> None:
    """Import the module of the command `args_list` names, as main() would (for tui.launch,
    which freezes what the imports built); nothing for the console."""
    name = _command_named(args_list[0]) if args_list else None
    if name is not None:
        importlib.import_module((BASE_COMMANDS.get(name) or all_commands()[name])[0])


def _version() -> str:
    from importlib import metadata  # the console's --version only

    try:
        return metadata.version("pgparts")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _console_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pgparts",
        description="A terminal console for PostgreSQL declarative partitioning.",
        epilog="commands: " + ", ".join(f"{n} ({h})" for n, (_, h) in all_commands().items())
        + ". Run 'pgparts COMMAND --help' for each.",
    )
    parser.add_argument(
        "dsn", nargs="?", default=None,
        help="libpq connection string or URI; default: the profile, else the PG* environment",
    )
    parser.add_argument("--version", action="version", version=f"pgparts {_version()}")
    add_connection_arguments(parser, with_dsn_option=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = BASE_COMMANDS.get(name) or all_commands()[name]
    module = importlib.import_module(module_name)
    parser = _Parser(prog=f"pgparts {name}", description=help_text)
    parser.set_defaults(command=name)
    add_connection_arguments(parser, with_dsn_option=True)
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser, module


def _exit_on_signal(signum: int, _frame: object) -> None:
    # unwind through the `with Context` blocks, so a demo server we started is stopped
    raise SystemExit(128 + signum)


def _prepare_stdout() -> None:
    """Refuse a closed stdout; let one that cannot encode pgparts' arrows and tree lines show
    ASCII ones instead of failing halfway through the output."""
    if sys.stdout is None:  # started with `>&-`
        raise CliError("standard output is closed; redirect it to a file or /dev/null")
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower().replace("-", "")
    if reconfigure is not None and encoding not in ("utf8", "utf_8"):
        reconfigure(errors="pgparts-ascii")


def _silence_stdout() -> None:
    """After a failed write: point stdout at /dev/null, so the interpreter's final flush of what
    is still buffered neither fails again nor prints 'Exception ignored'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _require_terminal() -> None:
    # without one the console would draw its escape sequences into a pipe or file
    if not (sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the console needs a terminal (stdin and stdout); for scripts use "
                       "'pgparts tree', 'check', 'explain' or 'consolidate'")


def _run(args_list: list[str]) -> int:
    name = _command_named(args_list[0]) if args_list else None
    if name is not None:
        parser, module = _command_parser(name)
        # intermixed: `consolidate TABLE --demo status` reads as `consolidate TABLE status --demo`
        args = parser.parse_intermixed_args(args_list[1:])
        with Context.from_args(args) as ctx:
            status = int(module.run(args, ctx))  # type: ignore[attr-defined]
            sys.stdout.flush()  # a full disk or a closed pipe is reported here, not at exit
            return status
    if args_list and _bare_word(args_list[0]):
        raise CliError(_not_a_command(args_list[0]))
    parser = _console_parser()
    args = parser.parse_args(args_list)
    if args.demo or args.demo_reset:
        _require_terminal()  # before starting a server for nothing
    with Context.from_args(args) as ctx:  # a bad DSN or config is reported first
        _require_terminal()
        from .app.run import run_console  # Textual is imported only for the console

        return run_console(ctx)


def _bare_word(arg: str) -> bool:
    """A first argument that is neither an option, a command nor a connection string libpq
    could read (key=value pairs or a URI): a mistyped command (`pgparts mantain`)."""
    return not arg.startswith("-") and "=" not in arg and "://" not in arg \
        and not any(c.isspace() for c in arg)


def _not_a_command(word: str) -> str:
    # the word itself is not repeated: meant as a connection string, it might be a password
    commands = all_commands()
    close = difflib.get_close_matches(word.lower(), commands, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return (f"not a command nor a connection string: {hint}the commands are "
            f"{', '.join(sorted(commands))}; a connection string is key=value ... or "
            f"postgresql://...")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _exit_on_signal)
    try:
        _prepare_stdout()
        return _run(args_list)
    except CliError as exc:
        print(f"pgparts: {redact(str(exc))}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("pgparts: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `pgparts tree | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EFBIG, errno.EDQUOT):
            raise
        if exc.filename is not None:  # a file of ours, not the output
            print(f"pgparts: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        _silence_stdout()
        print(f"pgparts: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
