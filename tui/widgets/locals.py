"""Locals of the selected frame as a tree: values the last step changed are marked, and
containers and objects expand to their recorded items and fields (display codec nodes)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from replay.snapshot.codec import render

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
    return out[:_MAX_CHILDREN]


def _safe(text: str) -> str:
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class LocalsTree(Tree[Any]):
    """Name = value rows; expanded paths survive moving the cursor."""

    DEFAULT_CSS = """
    LocalsTree { background: $surface; }
    """

    def __init__(self, **kwargs: Any):
        super().__init__("locals", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self._expanded: set[str] = set()

    def show(self, values: dict[str, Any], changed: set[str]) -> None:
        """Show ``values`` (name -> node); names in ``changed`` are marked."""
        self._remember(self.root, "")
        self.clear()
        names = sorted(values, key=lambda n: (n.startswith("<"), n))
        if not names:
            self.root.add_leaf(Text("(no locals)", style="italic dim"))
        for name in names:
            self._add(self.root, name, values[name], name, name in changed, depth=0)
        self.root.expand()

    def _remember(self, node: TreeNode[Any], path: str) -> None:
        for child in node.children:
            key = child.data[0] if child.data else ""
            if child.is_expanded:
                self._expanded.add(key)
            elif key in self._expanded:
                self._expanded.discard(key)
            self._remember(child, key)

    def _add(self, parent: TreeNode[Any], label: str, node: Any, path: str, changed: bool, depth: int) -> None:
        mark = Text("● ", style="bold yellow") if changed else Text("  ")
        name_style = "bold yellow" if changed else ("magenta" if label.startswith("<") else "cyan")
        text = Text.assemble(mark, (_safe(label), name_style), " = ", _safe(render(node, width=160)))
        if not children(node):
            parent.add_leaf(text, data=(path, node, depth))
            return
        branch = parent.add(text, data=(path, node, depth))
        if path in self._expanded:
            self._fill(branch)
            branch.expand()

    def _fill(self, branch: TreeNode[Any]) -> None:
        """Add a branch's children (only when it is opened: values can nest deeply)."""
        if branch.children or not branch.data:
            return
        path, node, depth = branch.data
        for child_label, child in children(node):
            self._add(branch, child_label, child, f"{path}{child_label}", False, depth + 1)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        self._fill(event.node)
