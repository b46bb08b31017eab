"""Text that is never read as markup: names and database messages shown by the console.

Textual parses a `str` as content markup in notifications, the command palette's prompts and
help, and DataTable cells, and Rich does in the cells of its tables; a table named `t[/x]`
then reads as a closing tag that matches nothing, and the console stops with a MarkupError
(or `[policy]` silently disappears). What pgparts shows there goes through these helpers.
"""

from __future__ import annotations

from textual.content import Content
from textual.fuzzy import Matcher
from textual.markup import escape

__all__ = ["escape", "highlight", "plain"]


def plain(text: str) -> Content:
    """`text` as it is, for a palette prompt or a cell."""
    return Content(text)


def highlight(matcher: Matcher, candidate: str) -> Content:
    """Matcher.highlight without reading the candidate as markup: the matched letters
    stylized on the plain text."""
    content = Content(candidate)
    score, offsets = matcher.fuzzy_search.match(matcher.query, candidate)
    if not score:
        return content
    for offset in offsets:
        if not candidate[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
