"""Small modal screens: ask for text, show an error, pick one of a list of results."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static
from textual.worker import Worker, WorkerState

from replay.snapshot.rendering import printable
from tui.widgets.lazylist import LazyList


def safe(text: str) -> str:
    """Control characters and escape sequences shown as escapes, never sent to the terminal."""
    return printable(text)


class PromptModal(ModalScreen[str | None]):
    """Ask for one line of text; dismissed with the text, or None on Escape."""

    DEFAULT_CSS = """
    PromptModal { align: center middle; }
    PromptModal > Vertical { width: 70; max-width: 95%; height: auto; border: thick $accent;
                             background: $surface; padding: 0 1; }
    PromptModal .hint { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, hint: str = "", value: str = "", placeholder: str = ""):
        super().__init__()
        self.title_text, self.hint, self.value, self.placeholder = title, hint, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"))
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            if self.hint:
                yield Static(self.hint, classes="hint")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorModal(ModalScreen[None]):
    """An error the user must see: what failed and why (never swallowed)."""

    DEFAULT_CSS = """
    ErrorModal { align: center middle; }
    ErrorModal > Vertical { width: 80; max-width: 95%; height: auto; max-height: 90%;
                            border: thick $error; background: $surface; padding: 0 1; }
    ErrorModal #error-title { color: $error; text-style: bold; }
    ErrorModal Button { margin-top: 1; }
    """
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, message: str):
        super().__init__()
        self.title_text, self.message = title, message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe(self.title_text), id="error-title")
            yield Static(Text(safe(self.message)), id="error-message")
            yield Button("Close", variant="error", id="error-close")

    @on(Button.Pressed, "#error-close")
    def action_close(self) -> None:
        self.dismiss(None)


class PickModal(ModalScreen[int | None]):
    """Pick one of many rows (search hits, watch changes); dismissed with its index or None."""

    DEFAULT_CSS = """
    PickModal { align: center middle; }
    PickModal > Vertical { width: 100; max-width: 95%; height: 80%; border: thick $accent;
                           background: $surface; padding: 0 1; }
    PickModal #pick-title { text-style: bold; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, rows: Sequence[str]):
        super().__init__()
        self.title_text, self.rows = title, list(rows)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe(self.title_text), id="pick-title")
            yield LazyList(lambda i: Text(safe(self.rows[i])), len(self.rows), id="pick-list")
            yield Static("Enter or click: go there   Esc: close", classes="hint")

    def on_mount(self) -> None:
        lst = self.query_one(LazyList)
        lst.highlighted = 0 if self.rows else -1
        lst.focus()

    @on(LazyList.Selected)
    def picked(self, event: LazyList.Selected) -> None:
        self.dismiss(event.index)

    def action_cancel(self) -> None:
        self.dismiss(None)


def report_failure(event: Worker.StateChanged, app: object) -> None:
    """Show a failed worker's error in an :class:`ErrorModal` (worker messages do not bubble,
    so every screen that starts workers calls this from ``on_worker_state_changed``)."""
    if event.state is WorkerState.ERROR:
        error = event.worker.error
        what = event.worker.description or event.worker.name or "finish background work"
        app.push_screen(ErrorModal(f"Could not {what}", f"{type(error).__name__}: {error}"))  # type: ignore[attr-defined]
