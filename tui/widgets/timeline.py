"""A scrubber over the whole trace: where the cursor is, where the tape interactions and the
exception are; a click (or drag) seeks there."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget


@dataclass
class Marks:
    """What the timeline marks, as step numbers."""

    steps: int
    interactions: list[int]
    exception: int | None = None
    breakpoints: list[int] | None = None


class Timeline(Widget):
    """Two rows: the marks, then the cursor; ``position`` is the current step."""

    DEFAULT_CSS = """
    Timeline { height: 2; background: $panel; }
    """

    @dataclass
    class SeekRequested(Message):
        """The user clicked the timeline."""

        timeline: Timeline
        step: int

        @property
        def control(self) -> Timeline:
            return self.timeline

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.marks = Marks(1, [])
        self.position = 0

    def set_marks(self, marks: Marks) -> None:
        self.marks = marks
        self.refresh()

    def move_to(self, step: int) -> None:
        self.position = step
        self.refresh()

    def _column(self, step: int, width: int) -> int:
        return min(width - 1, step * width // max(self.marks.steps, 1))

    def render(self) -> Text:
        width = max(self.size.width, 1)
        row = [" "] * width
        style = [""] * width
        for step in self.marks.interactions:
            c = self._column(step, width)
            row[c], style[c] = "┃", "cyan"
        for step in self.marks.breakpoints or []:
            c = self._column(step, width)
            row[c], style[c] = "●", "red"
        if self.marks.exception is not None:
            c = self._column(self.marks.exception, width)
            row[c], style[c] = "✖", "bold red"
        top = Text()
        for ch, st in zip(row, style, strict=True):
            top.append(ch if ch != " " else "─", st or "dim")
        here = self._column(self.position, width)
        bottom = Text(" " * here + "▲", style="bold yellow")
        label = f" step {self.position:,}/{self.marks.steps - 1:,}"  # as the status bar: index / last index
        if here + 1 + len(label) <= width:
            bottom.append(label, style="yellow")
        elif here - len(label) >= 0:
            bottom = Text(" " * (here - len(label)) + label.strip() + " ▲", style="bold yellow")
        return Text.assemble(top, "\n", bottom)

    def _seek(self, x: int) -> None:
        width = max(self.size.width, 1)
        step = min(max(x, 0) * self.marks.steps // width, self.marks.steps - 1)
        self.post_message(self.SeekRequested(self, max(step, 0)))

    def on_click(self, event: events.Click) -> None:
        self._seek(event.x)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if event.button == 1:
            self._seek(event.x)
