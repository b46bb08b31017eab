"""Entry point of the console, called by `pgparts` without a subcommand."""

from __future__ import annotations

from ..context import Context


def run_console(ctx: Context) -> int:
    """Run the console until the user quits; returns the process exit status.

    The first connection is made before the console takes the terminal: a wrong address or
    password is one line on stderr and exit 2 (a CliError), like the subcommands, not a
    full-screen app saying it cannot read the catalog. Later reconnects happen in the app's
    thread workers, so a server lost mid-session shows up as a message in the UI.
    """
    conn = ctx.connect(purpose="console")
    from .app import PgpartsApp

    app = PgpartsApp(ctx.target, ctx.config, ctx.read_only, connection=conn)
    try:
        result = app.run()
    finally:
        if not conn.closed:
            conn.close()
    if app.return_code is not None and app.return_code != 0:
        return app.return_code
    if not app.ever_connected:
        return 2  # the server went away between the check and the first load
    return int(result or 0)
