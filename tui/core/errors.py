"""One line from an error, for the places that show errors in one line (stderr, a status line).

PostgreSQL's messages put DETAIL, HINT and a `LINE n:` excerpt with a caret on the lines after
the first; tracebacks-free one-line reports keep only the first, and an exception without a
message is named by its class so the line is never empty.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-blank line of `exc`'s message, stripped; its class name when it has none."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return exc.__class__.__name__
