"""Rendering codec nodes as one line of text for people, without importing anything."""

from __future__ import annotations

from typing import Any

from replay.snapshot.decoding import Decoder


def _short(path: str) -> str:
    return path.rpartition(":")[2]


def render(node: Any, *, width: int = 300) -> str:
    """Render a node as Python-like text for people, without importing anything.

    Args:
        node: An encoded value (either profile), possibly malformed.
        width: Characters kept; longer output ends with an ellipsis.

    Returns:
        One line of printable text: control characters anywhere (values, type paths,
        field names) are escaped. Never raises.
    """
    try:
        text = _render(node, width)
    except RecursionError:
        text = "<nested too deeply>"
    except Exception:  # noqa: BLE001 - malformed nodes render as such
        text = "<malformed>"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= width:
        return text
    return text[: width - 3] + "..." if width >= 3 else text[:width]


def _render(node: Any, width: int) -> str:  # noqa: C901 - mirrors the tag table
    if not isinstance(node, list):
        text = repr(node)
    elif not node or not isinstance(node[0], str):
        text = "<malformed>"
    else:
        tag, rest = node[0], node[1:]

        def seq(items: list[Any]) -> str:
            return ", ".join(render(x, width=width) for x in items)

        if tag == "l":
            text = f"[{seq(rest)}]"
        elif tag == "t":
            text = f"({seq(rest)}{',' if len(rest) == 1 else ''})"
        elif tag == "s":
            text = f"{{{seq(rest)}}}" if rest else "set()"
        elif tag == "f":
            text = f"frozenset({{{seq(rest)}}})"
        elif tag == "d":
            pairs = []
            for i in range(0, len(rest), 2):
                if isinstance(rest[i], list) and rest[i][:1] == ["+"]:
                    pairs.append(render(rest[i], width=width))
                    break
                pairs.append(f"{render(rest[i], width=width)}: {render(rest[i + 1] if i + 1 < len(rest) else None, width=width)}")
            text = "{" + ", ".join(pairs) + "}"
        elif tag == "+":
            text = f"... +{rest[0]} more"
        elif tag == "S":
            text = repr(rest[0]) + f"... ({rest[1]} chars)"
        elif tag == "B":
            text = repr(rest[0]) + f"... ({rest[1]} bytes)"
        elif tag == "i":
            text = str(rest[0])
        elif tag == "su":
            text = repr(rest[0].decode("utf-8", "surrogatepass")) if type(rest[0]) is bytes else "<bad su>"
        elif tag == "ba":
            text = f"bytearray({rest[0]!r})" if type(rest[0]) is bytes else "<bad ba>"
        elif tag == "@":
            text = f"<ref #{rest[0]}>"
        elif tag in ("dt", "date", "time", "td", "dec", "uuid", "c", "path", "range"):
            try:
                text = repr(Decoder().decode(node))
            except Exception:  # noqa: BLE001
                text = f"<bad {tag}>"
        elif tag == "type":
            text = f"<class {rest[0]}>"
        elif tag == "enum":
            text = f"<{_short(rest[0])}: {render(rest[1], width=width)}>"
        elif tag in ("dc", "obj"):
            fields = []
            for i in range(1, len(rest), 2):
                if isinstance(rest[i], list):
                    fields.append(render(rest[i], width=width))
                    break
                fields.append(f"{rest[i]}={render(rest[i + 1] if i + 1 < len(rest) else None, width=width)}")
            text = f"{_short(rest[0])}({', '.join(fields)})"
        elif tag == "nt":
            text = f"{_short(rest[0])}({seq(rest[1:])})"
        elif tag == "exc":
            text = f"{_short(rest[0])}({rest[2]!r})"
        elif tag == "?":
            text = f"<{_short(rest[0])}: {rest[2]}>"
        elif tag == "...":
            text = f"<{_short(rest[0])} ...>"
        else:
            text = f"<{tag}?>"
    return text

