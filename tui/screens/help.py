"""The help screen: every key of the screen it was opened from, generated from its bindings."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

ABOUT = """Lowercase moves forward in time, Shift moves backward.
The mouse works everywhere: click a source line's gutter to toggle a breakpoint, a tape row
to go to the step that asked for it, the timeline to seek, a frame to inspect it.
Ctrl+P opens the command palette with every command."""


def bindings_table(screen: Screen[object]) -> Table:
    """The screen's and the app's bindings with their descriptions, one row per key."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("does")
    seen: set[str] = set()
    for source in (screen, screen.app):
        for binding in getattr(source, "BINDINGS", []):
            if not isinstance(binding, Binding) or not binding.description or binding.key in seen:
                continue
            seen.add(binding.key)
            keys = ", ".join(source.app.get_key_display(Binding(k.strip(), "")) for k in binding.key.split(","))
            table.add_row(keys, binding.tooltip or binding.description)
    return table


class HelpScreen(ModalScreen[None]):
    """Keys of the screen below it, and how the mouse works."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-width: 95%; height: 90%; border: thick $accent;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, below: Screen[object]):
        super().__init__()
        self.below = below

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(f"Keys: {self.below.__class__.__name__.removesuffix('Screen').lower()} screen",
                              style="bold"))
            yield Static(bindings_table(self.below))
            yield Static(Text("\n" + ABOUT, style="italic"))

    async def action_dismiss(self, result: object = None) -> None:
        self.dismiss(None)
