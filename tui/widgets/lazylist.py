"""A virtualised list: rows drawn only when on screen, from a callback (toolong's model).

Source, tape, diff and search lists can have a million rows; a ``DataTable`` or ``OptionList``
would build them all. :class:`LazyList` asks ``line(i)`` for the rows in view and caches the
drawn strips until the rows change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

_CACHE_ROWS = 512


class LazyList(ScrollView, can_focus=True):
    """Rows ``0 .. count-1`` drawn by ``line(i) -> Text``; one row is highlighted.

    Args:
        line: Draws row ``i`` (a rich ``Text``; control characters must already be escaped).
        count: Number of rows.
        width: Widest row in cells (for horizontal scrolling); 0 fits the widget.

    Messages:
        LazyList.Selected: a row was chosen (Enter, or a click).
    """

    DEFAULT_CSS = """
    LazyList { height: 1fr; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 1; }
    LazyList > .lazylist--highlight { background: $accent 40%; }
    LazyList:focus > .lazylist--highlight { background: $accent 70%; text-style: bold; }
    """
    COMPONENT_CLASSES = {"lazylist--highlight"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    highlighted: reactive[int] = reactive(-1, always_update=True)

    @dataclass
    class Selected(Message):
        """A row was chosen."""

        lazy_list: LazyList
        index: int
        x: int = -1
        """Column clicked, in content cells (-1 for the keyboard)."""

        @property
        def control(self) -> LazyList:
            return self.lazy_list

    @dataclass
    class Highlighted(Message):
        """The highlighted row changed (keys, a click, or the program)."""

        lazy_list: LazyList
        index: int

        @property
        def control(self) -> LazyList:
            return self.lazy_list

    def __init__(self, line: Callable[[int], Text] | None = None, count: int = 0, width: int = 0,
                 **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._line = line or (lambda i: Text(""))
        self._count = count
        self._width = width
        self._cache: OrderedDict[tuple[int, bool, int], Strip] = OrderedDict()
        self.virtual_size = Size(width, count)

    @property
    def count(self) -> int:
        """Number of rows."""
        return self._count

    def set_rows(self, count: int, line: Callable[[int], Text] | None = None, width: int | None = None) -> None:
        """Replace the rows (the highlight is kept if still in range)."""
        if line is not None:
            self._line = line
        if width is not None:
            self._width = width
        self._count = count
        self._resize_virtual()
        if self.highlighted >= count:
            self.highlighted = count - 1
        self.refresh_rows()

    def _resize_virtual(self) -> None:
        # Never smaller than the widget: a list that fits keeps one virtual size, and setting
        # virtual_size to a new value re-lays out the whole screen (tens of milliseconds).
        size = Size(self._width, max(self._count, self.size.height))
        if size != self.virtual_size:
            self.virtual_size = size

    def on_resize(self) -> None:
        self._resize_virtual()

    def refresh_rows(self) -> None:
        """Forget drawn rows (their content changed) and redraw."""
        self._cache.clear()
        self.refresh()

    def invalidate(self, indices: set[int]) -> None:
        """Forget the drawn rows ``indices`` only (the others did not change) and redraw."""
        for key in [k for k in self._cache if k[0] in indices]:
            del self._cache[key]
        self.refresh()

    # ------------------------------------------------------------- drawing

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        if index >= self._count:
            return Strip.blank(width, self.rich_style)
        highlight = index == self.highlighted
        key = (index, highlight, width)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._draw(index, highlight, max(width, self._width))
            self._cache[key] = strip
            if len(self._cache) > _CACHE_ROWS:
                self._cache.popitem(last=False)
        return strip.crop(scroll_x, scroll_x + width)

    def _draw(self, index: int, highlight: bool, width: int) -> Strip:
        try:
            text = self._line(index)
        except Exception as exc:  # noqa: BLE001 - a row that cannot be drawn says why, in place
            text = Text(f"<cannot draw row {index}: {type(exc).__name__}: {exc}>", style="red")
        text = text.copy()
        text.no_wrap = True
        text.overflow = "ellipsis"
        base = self.rich_style
        if highlight:
            base = base + self.get_component_rich_style("lazylist--highlight")
        segments = [s for s in text.render(self.app.console, end="") if s.text != "\n"]
        strip = Strip(Segment.apply_style(segments, base), text.cell_len)
        return strip.adjust_cell_length(width, base if highlight else base or Style())

    # ------------------------------------------------------------- moving

    def watch_highlighted(self, old: int, new: int) -> None:
        self.refresh()  # the cache is keyed by highlight: only the two rows are drawn again
        if new >= 0:
            self.scroll_to_row(new)
        if old != new:
            self.post_message(self.Highlighted(self, new))

    def scroll_to_row(self, index: int, *, center: bool = False) -> None:
        """Scroll so that row ``index`` is visible (centred when asked, or when far away)."""
        top = self.scroll_offset.y
        height = max(self.size.height, 1)
        if center or not top <= index < top + height:
            target = index - height // 2 if center or abs(index - top) > height else (
                index if index < top else index - height + 1)
            self.scroll_to(y=max(target, 0), animate=False)

    def action_move(self, delta: int) -> None:
        if self._count:
            self.highlighted = min(max(self.highlighted + delta, 0), self._count - 1)

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(self.size.height - 1, 1))

    def action_edge(self, end: int) -> None:
        if self._count:
            self.highlighted = self._count - 1 if end else 0

    def action_select(self) -> None:
        if 0 <= self.highlighted < self._count:
            self.post_message(self.Selected(self, self.highlighted))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return  # the border or a scrollbar
        index = self.scroll_offset.y + offset.y
        if 0 <= index < self._count:
            self.highlighted = index
            self.post_message(self.Selected(self, index, self.scroll_offset.x + offset.x))
