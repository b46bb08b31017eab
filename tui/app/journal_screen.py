"""The journal: every plan applied from this machine (console or CLI), newest first.

Read from the JSON-lines journal in the user state dir (tui.core.plans.engine.journal, one entry per
run folded from its records) in a thread worker; the highlighted entry's details (error,
database state, steps, sizes) show below. A run still going shows as running, one whose process
died as interrupted, with the steps it committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ..core.humanfmt import count, plural, size
from ..core.plans import Outcome, StepStatus
from ..core.plans.engine import journal
from ..core.plans.engine.runner import step_label
from .footer_keys import FooterKeys

if TYPE_CHECKING:
    from .app import PgpartsApp

LIMIT = 500  # entries shown; the file keeps everything

OUTCOME_STYLE = {Outcome.OK: "green", Outcome.FAILED: "bold red", Outcome.CANCELLED: "yellow",
                 Outcome.BUSY: "yellow", Outcome.RUNNING: "bold cyan",
                 Outcome.INTERRUPTED: "bold red"}
STEP_STYLE = {StepStatus.DONE: "green", StepStatus.SKIPPED: "green dim",
              StepStatus.FAILED: "bold red", StepStatus.CANCELLED: "yellow",
              StepStatus.RUNNING: "bold cyan", StepStatus.INTERRUPTED: "bold red"}


@dataclass
class JournalRead(Message):
    entries: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def entry_details(entry: dict[str, Any]) -> Text:
    """The details pane for one journal entry."""
    t = Text()
    t.append(f"{entry.get('title', entry.get('plan', '?'))}\n", style="bold")
    finished = f"finished {entry['finished']} · {entry.get('seconds', 0)} s" \
        if entry.get("finished") else "not finished"
    t.append(f"on {entry.get('server', '?')} · started {entry.get('started', '?')} · "
             f"{finished} · by "
             f"{entry.get('os_user', '?')} (database user {entry.get('db_user', '?')})\n",
             style="dim")
    outcome = str(entry.get("outcome", "?"))
    t.append("outcome: ")
    t.append(outcome, style=OUTCOME_STYLE.get(outcome, ""))
    t.append(f" · rows copied {count(int(entry.get('rows_copied') or 0))}\n")
    if entry.get("error"):
        t.append("error: ", style="bold")
        t.append(f"{entry['error']}\n", style="red")
    if entry.get("state"):
        t.append("database state then: ", style="bold")
        t.append(f"{entry['state']}\n")
    d = entry.get("details") or {}
    if isinstance(d, dict):
        before, after = d.get("bytes_before"), d.get("bytes_after")
        if isinstance(before, int) and before:
            t.append(f"size before {size(before)}")
            if isinstance(after, int):
                t.append(f", after {size(after)}")
            t.append("\n")
    facts = entry.get("facts")
    if isinstance(facts, dict) and (facts.get("changes") or facts.get("destroys")):
        for line in facts.get("changes") or []:
            t.append(f"  {line}\n")
        for gone in facts.get("destroys") or []:
            if isinstance(gone, dict):
                said = gone.get("text") or f"{gone.get('what', '')} {gone.get('name', '')}"
                t.append(f"  drop {said}\n")
    elif isinstance(d, dict):
        # entries written before plans carried their facts: consolidation's weeks
        for w in d.get("weeks") or []:
            if isinstance(w, dict):
                t.append(f"  {w.get('partition')} → {w.get('consolidated')}\n")
    steps = entry.get("steps") or []
    if steps:
        t.append("steps:\n", style="bold")
    for s in steps:
        if not isinstance(s, dict):
            continue
        status = str(s.get("status", "?"))
        t.append(f"  {s.get('index', '?'):>2}. ")
        t.append(f"{step_label(status):<12}", style=STEP_STYLE.get(status, "dim"))
        t.append(f" {s.get('title', '')}")
        extra = []
        if s.get("seconds"):
            extra.append(f"{s['seconds']} s")
        if s.get("rows"):
            extra.append(plural(int(s["rows"]), "row"))
        if s.get("lock_timeouts"):
            extra.append(plural(int(s["lock_timeouts"]), "lock timeout"))
        if s.get("hold_seconds") is not None:
            extra.append(f"held the parent {float(s['hold_seconds']) * 1000:.0f} ms")
        if extra:
            t.append(f" ({', '.join(extra)})", style="dim")
        t.append("\n")
        if s.get("verification"):
            t.append(f"      ✓ {s['verification']}\n", style="green")
    return t


class JournalScreen(FooterKeys, Screen):
    """History of applied plans; `escape` goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "back", show=True),
        Binding("j", "back", "back", show=False),
    ]

    DEFAULT_CSS = """
    JournalScreen #journal-head {
        height: auto;
        padding: 0 1;
    }
    JournalScreen #journal-table {
        height: 1fr;
        border: round $panel-lighten-2;
    }
    JournalScreen #journal-table:focus {
        border: round $accent;
    }
    JournalScreen #journal-details-pane {
        height: 1fr;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    """

    AUTO_FOCUS = "#journal-table"

    def __init__(self, app: PgpartsApp | None = None) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="journal-head")
        yield DataTable(id="journal-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="journal-details-pane"):
            yield Static("", id="journal-details")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "journal of applied plans"
        table = self.query_one("#journal-table", DataTable)
        # what tells runs apart first: at 80 columns the plan kind, user and server are cut
        for key, label in (("started", "started (UTC)"), ("outcome", "outcome"),
                           ("target", "table"), ("rows", "rows copied"), ("seconds", "time"),
                           ("plan", "plan"), ("user", "by"), ("server", "server")):
            table.add_column(label, key=key)
        self.query_one("#journal-head", Static).update(
            Text(f"reading {journal.journal_path()}…", style="italic"))
        self._read()

    @work(thread=True, exclusive=True, group="journal", exit_on_error=False,
          description="reading the journal")
    def _read(self) -> None:
        try:
            entries = journal.read(limit=LIMIT)
        except OSError as exc:
            self.post_message(JournalRead([], f"cannot read the journal: {exc}"))
            return
        self.post_message(JournalRead(entries))

    @on(JournalRead)
    def _journal_read(self, message: JournalRead) -> None:
        self.entries = message.entries
        self.loaded = True
        head = Text()
        head.append(str(journal.journal_path()), style="bold")
        if message.error:
            head.append(f"\n{message.error}", style="red")
        elif not self.entries:
            head.append("\nNo plan has been applied from this machine yet.", style="dim")
        else:
            n = len(self.entries)
            head.append(f"  {plural(n, 'entry', 'entries')}, newest first"
                        + (f" (the last {LIMIT})" if n >= LIMIT else ""), style="dim")
        self.query_one("#journal-head", Static).update(head)
        table = self.query_one("#journal-table", DataTable)
        table.clear()
        for i, e in enumerate(self.entries):
            outcome = str(e.get("outcome", "?"))
            table.add_row(
                str(e.get("started", "")).replace("T", " ")[:19],
                Text(outcome, style=OUTCOME_STYLE.get(outcome, "")),
                Text(str(e.get("target", ""))),  # text, not markup: names may hold [..]
                Text(count(int(e.get("rows_copied") or 0)), justify="right"),
                Text(f"{float(e.get('seconds') or 0):.1f} s", justify="right"),
                Text(str(e.get("plan", ""))), Text(str(e.get("os_user", ""))),
                Text(str(e.get("server", ""))),
                key=str(i))
        self._show(0)

    @on(DataTable.RowHighlighted, "#journal-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.cursor_row)

    def _show(self, index: int) -> None:
        static = self.query_one("#journal-details", Static)
        if 0 <= index < len(self.entries):
            static.update(entry_details(self.entries[index]))
        else:
            static.update("")

    def action_back(self) -> None:
        self.dismiss()
