"""Locals of the selected frame: ``name = value`` rows, values the last step changed marked,
containers and objects expandable to their recorded items and fields (display codec nodes).

A virtualised list rather than a ``Tree``: rebuilding a tree re-lays out the screen on every
step, which costs more than the step itself; here a move redraws only the visible rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding

from replay.snapshot.codec import render
from replay.snapshot.rendering import printable
from tui.widgets.lazylist import LazyList

_SEQUENCES = {"l": "list", "t": "tuple", "s": "set", "f": "frozenset"}
_MAX_CHILDREN = 200


def children(node: Any) -> list[tuple[str, Any]]:
    """(label, child node) pairs a display node expands to; empty for a leaf."""
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        return []
    tag, rest = node[0], node[1:]
    out: list[tuple[str, Any]] = []
    if tag in _SEQUENCES:
        out = [(f"[{i}]", item) for i, item in enumerate(rest)]
    elif tag == "d":
        for i in range(0, len(rest), 2):
            if isinstance(rest[i], list) and rest[i][:1] == ["+"]:
                out.append(("...", rest[i]))
                break
            out.append((f"[{render(rest[i], width=40)}]", rest[i + 1] if i + 1 < len(rest) else None))
    elif tag in ("dc", "obj"):
        for i in range(1, len(rest), 2):
            if isinstance(rest[i], list):
                out.append(("...", rest[i]))
                break
            out.append((f".{rest[i]}", rest[i + 1] if i + 1 < len(rest) else None))
    elif tag == "nt":
        out = [(f"[{i}]", item) for i, item in enumerate(rest[1:])]
    elif tag == "exc" and len(rest) > 1 and isinstance(rest[1], list):
        out = [(f".args[{i}]", item) for i, item in enumerate(rest[1])]
    return out[:_MAX_CHILDREN]


def _safe(text: str) -> str:
    return printable(text, newlines=False)


@dataclass(frozen=True)
class LocalRow:
    """One visible row: a local, or an item or field of an expanded one."""

    path: str
    label: str
    node: Any
    depth: int
    changed: bool
    expandable: bool

    def text(self, expanded: bool) -> str:
        """``name = value`` as plain text (what the row shows, without its marks)."""
        return f"{self.label} = {render(self.node, width=160)}"


class LocalsView(LazyList):
    """Name = value rows; Enter or a click opens and closes containers; the paths that are open
    stay open as the cursor moves."""

    BINDINGS = [Binding("right,l", "expand(True)", "Open", show=False),
                Binding("left,h", "expand(False)", "Close", show=False)]

    def __init__(self, **kwargs: Any):
        super().__init__(self._row_text, **kwargs)
        self.rows: list[LocalRow] = []
        self.expanded: set[str] = set()
        self._values: dict[str, Any] = {}
        self._changed: set[str] = set()

    def show(self, values: dict[str, Any], changed: set[str]) -> None:
        """Show ``values`` (name -> node); names in ``changed`` are marked."""
        if values == self._values and changed == self._changed and self.rows:
            return
        self._values, self._changed = values, changed
        self._rebuild()

    def _rebuild(self) -> None:
        rows: list[LocalRow] = []
        for name in sorted(self._values, key=lambda n: (n.startswith("<"), n)):
            self._add(rows, name, self._values[name], name, 0, name in self._changed)
        self.rows = rows
        self.set_rows(len(rows) if rows else 1)

    def _add(self, rows: list[LocalRow], label: str, node: Any, path: str, depth: int, changed: bool) -> None:
        kids = children(node) if depth < 12 else []
        rows.append(LocalRow(path, label, node, depth, changed, bool(kids)))
        if kids and path in self.expanded:
            for child_label, child in kids:
                self._add(rows, child_label, child, path + child_label, depth + 1, False)

    def _row_text(self, i: int) -> Text:
        if not self.rows:
            return Text("(no locals)", style="italic dim")
        row = self.rows[i]
        arrow = ("▼ " if row.path in self.expanded else "▶ ") if row.expandable else "  "
        mark = Text("● ", style="bold yellow") if row.changed else Text("  ")
        name_style = "bold yellow" if row.changed else ("magenta" if row.label.startswith("<") else "cyan")
        return Text.assemble("  " * row.depth, mark, (arrow, "dim"), (_safe(row.label), name_style), " = ",
                             _safe(render(row.node, width=160)))

    def toggle(self, i: int, open_: bool | None = None) -> None:
        """Open or close row ``i`` (a container or object)."""
        if not 0 <= i < len(self.rows) or not self.rows[i].expandable:
            return
        path = self.rows[i].path
        want = path not in self.expanded if open_ is None else open_
        if want:
            self.expanded.add(path)
        else:
            self.expanded.discard(path)
        self._rebuild()
        self.highlighted = i

    def action_expand(self, open_: bool) -> None:
        self.toggle(self.highlighted, open_)

    @on(LazyList.Selected)
    def _selected(self, event: LazyList.Selected) -> None:
        if event.lazy_list is self:
            event.stop()
            self.toggle(event.index)
