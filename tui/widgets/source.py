"""The source of the current frame: pygments highlighting, a gutter with the current line,
the lines the trace ran and the breakpoints; a click in the gutter toggles a breakpoint."""

from __future__ import annotations

from functools import lru_cache

from rich.style import Style
from rich.syntax import Syntax
from rich.text import Span, Text

from replay.snapshot.rendering import printable
from tui.widgets.lazylist import LazyList

GUTTER = 8  # "●▶ 1234 " : breakpoint, current, line number, space


@lru_cache(maxsize=32)
def highlight(source: str, theme: str = "monokai") -> tuple[Text, ...]:
    """Lines of ``source`` highlighted with pygments (through rich), control characters escaped."""
    syntax = Syntax(source, "python", theme=theme, background_color="default", tab_size=4)
    text = syntax.highlight(source.expandtabs(4))
    # the theme's background would paint over the current-line highlight: keep colours only
    text.style = ""
    text.spans = [Span(sp.start, sp.end, _foreground(sp.style)) for sp in text.spans]
    lines = text.split("\n", allow_blank=True)
    out = []
    for line in lines:
        if not line.plain.isprintable():
            line = Text(printable(line.plain, newlines=False))
        out.append(line)
    return tuple(out)


def _foreground(style: str | Style) -> Style:
    s = Style.parse(style) if isinstance(style, str) else style
    return Style(color=s.color, bold=s.bold, italic=s.italic, underline=s.underline)


class SourceView(LazyList):
    """Source lines with the gutter; the highlighted row is the frame's current line."""

    DEFAULT_CSS = """
    SourceView { background: $surface; }
    """

    def __init__(self, **kwargs: object):
        super().__init__(self._render_row, **kwargs)
        self.file = ""
        self.lines: tuple[Text, ...] = ()
        self.current = 0
        self.executed: set[int] = set()
        self.breakpoints: set[int] = set()
        self.failing = False

    def show(self, file: str, source: str | None, current: int, executed: set[int], breakpoints: set[int],
             *, failing: bool = False) -> None:
        """Show ``file`` at line ``current`` (1-based); ``source`` None when it was not stored."""
        if file != self.file or not self.lines:
            self.file = file
            self.lines = highlight(source) if source else (Text(f"(the source of {file} is not in the trace)",
                                                                 style="italic dim"),)
            width = max((t.cell_len for t in self.lines), default=0) + GUTTER
            self.set_rows(len(self.lines), width=width)
            self.executed = set()  # forces a full redraw below
        if (executed, breakpoints) != (self.executed, self.breakpoints):
            self.refresh_rows()
        else:  # only the old and new current lines change their gutter
            self.invalidate({self.current - 1, current - 1})
        self.current, self.executed, self.breakpoints, self.failing = current, executed, breakpoints, failing
        if 1 <= current <= len(self.lines):
            self.highlighted = current - 1

    def _render_row(self, i: int) -> Text:
        n = i + 1
        bp = Text("●", style="bold red") if n in self.breakpoints else Text(" ")
        here = n == self.current
        mark = Text("✖" if here and self.failing else "▶" if here else " ",
                    style="bold red" if self.failing else "bold yellow")
        number_style = "bold" if here else ("green" if n in self.executed else "dim")
        row = Text.assemble(bp, mark, Text(f"{n:>5} ", style=number_style))
        row.append_text(self.lines[i] if i < len(self.lines) else Text(""))
        return row

    def clicked_gutter(self, x: int) -> bool:
        """True if a click at content column ``x`` hit the gutter (breakpoint toggle)."""
        return 0 <= x < GUTTER
