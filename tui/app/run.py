"""Entry point of the console, called by `pgparts` without a subcommand."""

from __future__ import annotations

from ..context import Context


def run_console(ctx: Context) -> int:
    """Run the console until the user quits; returns the process exit status.

    The app connects in a thread worker, never on the event loop, so a slow or unreachable server
    shows up as a message in the UI instead of a frozen terminal.
    """
    from .app import PgpartsApp

    app = PgpartsApp(ctx.target, ctx.config, ctx.read_only)
    result = app.run()
    if app.return_code is not None and app.return_code != 0:
        return app.return_code
    if not app.ever_connected:
        return 2  # never reached the server: scripts wrapping the console see a failure
    return int(result or 0)
