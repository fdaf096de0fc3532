"""Field-level differences between two encoded values (codec nodes).

Used to say *what* changed in a CHANGED verdict: ``period_end: date(2027, 1, 31) ->
date(2027, 1, 26)`` instead of two long reprs.
"""

from __future__ import annotations

from typing import Any

from replay.snapshot.codec import render

MAX_CHANGES = 20


def _fields(node: list[Any]) -> dict[str, Any]:
    """Field name -> node for dataclass/object nodes (``[tag, type, name, value, ...]``)."""
    body = node[2:]
    return {body[i]: body[i + 1] for i in range(0, len(body) - 1, 2) if isinstance(body[i], str)}


def _items(node: list[Any]) -> dict[str, Any]:
    """Rendered key -> value node for dict nodes."""
    body = node[1:]
    return {render(body[i], width=80): body[i + 1] for i in range(0, len(body) - 1, 2)}


def diff_values(old: Any, new: Any, path: str = "") -> list[tuple[str, str, str]]:
    """Differences between two nodes, as (path, old rendering, new rendering), at most 20.

    Objects and dataclasses of the same type are compared field by field, dicts key by key,
    lists and tuples index by index; anything else is compared whole. ``"<missing>"`` marks
    a side without the field, key or index.
    """
    out: list[tuple[str, str, str]] = []
    _diff(old, new, path, out)
    return out[:MAX_CHANGES]


def _diff(old: Any, new: Any, path: str, out: list[tuple[str, str, str]]) -> None:
    if len(out) >= MAX_CHANGES or old == new:
        return
    if isinstance(old, list) and isinstance(new, list) and old and new and old[0] == new[0]:
        tag = old[0]
        if tag in ("dc", "obj", "nt") and old[1] == new[1] and tag != "nt":
            a, b = _fields(old), _fields(new)
            for name in list(a) + [n for n in b if n not in a]:
                _diff(a.get(name, "<missing>"), b.get(name, "<missing>"), f"{path}.{name}" if path else name, out)
            return
        if tag == "d":
            a, b = _items(old), _items(new)
            for key in list(a) + [k for k in b if k not in a]:
                _diff(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}[{key}]", out)
            return
        if tag in ("l", "t", "nt"):
            start = 2 if tag == "nt" else 1
            a_items, b_items = old[start:], new[start:]
            for i in range(max(len(a_items), len(b_items))):
                _diff(a_items[i] if i < len(a_items) else "<missing>",
                      b_items[i] if i < len(b_items) else "<missing>", f"{path}[{i}]", out)
            return
    out.append((path or "value", render(old, width=120), render(new, width=120)))
