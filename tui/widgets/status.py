"""A one-row status bar that redraws without a new layout (``Static.update`` re-lays out the
screen, which made every step cost a full repaint)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class StatusBar(Widget):
    """One row of text."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; }
    """

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.text = Text()

    def show(self, text: Text) -> None:
        self.text = text
        self.refresh()

    def render(self) -> Text:
        return self.text

    @property
    def content(self) -> Text:
        """What it shows (the tests read it like a Static's)."""
        return self.text


class KeyBar(Widget):
    """The screen's keys in one row (``key description``), drawn from its bindings.

    Textual's ``Footer`` recomposes itself (mounting a widget per key) whenever the screen is
    laid out again; on the step screen that doubled the cost of a move.
    """

    DEFAULT_CSS = """
    KeyBar { height: 1; background: $panel; }
    """

    def render(self) -> Text:
        from textual.binding import Binding

        text = Text()
        bindings = [*getattr(self.screen, "BINDINGS", []), *getattr(self.app, "BINDINGS", [])]
        for binding in bindings:
            if isinstance(binding, Binding) and binding.show and binding.description:
                key = self.app.get_key_display(binding)
                text.append(f" {key} ", style="bold reverse")
                text.append(f" {binding.description} ")
        text.append(" ^p ", style="bold reverse")
        text.append(" commands")
        return text
