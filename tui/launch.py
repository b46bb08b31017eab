"""The `pgparts` console script: the command's modules imported with the cyclic collector off.

Starting a command is mostly importing: psycopg, PostgreSQL's parser (pglast) and pgparts' own
modules build some 64,000 objects that live until the process exits, in bursts that each set
off the collector, whose passes over them find nothing to free (measured for `pgparts explain`:
80-90 collections, 10-12 ms, some 8% of its CPU time). Here the collector is off while the CLI and
the module of the command named load; what they built is then frozen (`gc.freeze()`: never
examined again, as it will never be garbage), and the collector runs as usual for what the
command itself builds.

Only the console script does this: importing `tui.cli` (tests, scripts, `python -m tui.cli`)
leaves the importing process's collector alone.
"""

from __future__ import annotations

import gc
import sys


def entry() -> None:
    gc.disable()
    try:
        from .cli import main, preload_command

        preload_command(sys.argv[1:])
        gc.freeze()
    finally:
        gc.enable()
    sys.exit(main())
