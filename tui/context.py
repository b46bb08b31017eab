"""What every entry point needs: the config, where to connect, and whether writing is allowed."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .core.config import Config, ConfigError, load_config
from .core.connection import ConnectError, Target, connect, redact, validate_dsn


class CliError(Exception):
    """A user-facing error: one line on stderr and a non-zero exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def add_connection_arguments(parser: argparse.ArgumentParser, *, with_dsn_option: bool) -> None:
    group = parser.add_argument_group("connection")
    if with_dsn_option:
        group.add_argument(
            "-d", "--dsn", default=None,
            help="libpq connection string or URI (default: the profile, else PG* environment)",
        )
    group.add_argument("--profile", help="a named profile from the config file")
    group.add_argument("--config", help="config file (default: $PGPARTS_CONFIG or user config)")
    group.add_argument(
        "--read-only", action="store_true",
        help="never change the database: read-only session, write actions disabled",
    )
    group.add_argument(
        "--demo", action="store_true",
        help="start a private PostgreSQL 18 seeded with the demo scenarios and use it",
    )
    group.add_argument(
        "--demo-reset", action="store_true", help="rebuild the demo database from scratch"
    )


@dataclass
class Context:
    """The config, the target and the write permission of one run; closes what it started."""

    config: Config
    target: Target
    read_only: bool
    demo: bool = False
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        try:
            config = load_config(getattr(args, "config", None))
        except ConfigError as exc:
            raise CliError(redact(str(exc))) from None
        for warning in config.warnings:
            print(f"pgparts: warning: {warning}", file=sys.stderr)
        stack = ExitStack()
        read_only = bool(getattr(args, "read_only", False))
        dsn = getattr(args, "dsn", None)
        profile_name = getattr(args, "profile", None)
        demo = bool(getattr(args, "demo", False) or getattr(args, "demo_reset", False))
        if demo and (dsn or profile_name):
            raise CliError("--demo starts its own server; do not give a DSN or --profile with it")
        if demo:
            from .demo.server import open_demo

            try:
                handle = open_demo(reset=bool(getattr(args, "demo_reset", False)),
                                   progress=lambda msg: print(f"pgparts: {msg}", file=sys.stderr))
            except Exception as exc:  # the demo must explain itself, not dump a traceback
                raise CliError(f"could not start the demo server: {exc}") from None
            stack.callback(handle.stop)
            target = Target(handle.dsn, read_only=read_only, label="demo")
            return cls(config, target, read_only, True, stack)
        if dsn is None:
            name = profile_name or config.default_profile
            if name is not None:
                profile = config.profiles.get(name)
                if profile is None:
                    known = ", ".join(sorted(config.profiles)) or "none defined"
                    where = f" in {config.path}" if config.path else ""
                    raise CliError(f"unknown profile {name!r}{where} (profiles: {known})")
                dsn = profile.dsn
                read_only = read_only or profile.read_only
                label = name
                where = f" in {config.path}" if config.path else ""
                try:
                    validate_dsn(dsn)
                except ConnectError as exc:
                    raise CliError(f"profile {name!r}{where}: {exc}") from None
            else:
                dsn, label = "", ""
        else:
            label = ""
        try:
            validate_dsn(dsn)
        except ConnectError as exc:
            raise CliError(str(exc)) from None
        return cls(config, Target(dsn, read_only=read_only, label=label), read_only, False, stack)

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        try:
            return connect(self.target, **kwargs)
        except ConnectError as exc:
            raise CliError(str(exc)) from None

    def require_writable(self, action: str) -> None:
        if self.read_only:
            raise CliError(f"{action} changes the database; refused in --read-only mode")

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
