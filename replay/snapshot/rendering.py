"""Rendering codec nodes as one line of text for people, without importing anything."""

from __future__ import annotations

from typing import Any

from replay.snapshot.decoding import Decoder


def _short(path: str) -> str:
    return path.rpartition(":")[2]


def printable(text: Any, *, newlines: bool = True) -> str:
    """``text`` with every non-printable character written as a Python escape.

    Neutralises what a snapshot's strings may carry to a terminal, a ticket or a browser:
    C0/C1 controls (ESC sequences, ``\\r``, BEL, NUL), DEL and Unicode format characters
    such as the bidi overrides U+202A-U+202E and U+2066-U+2069 (``"\\x1b[31m"`` becomes the
    eight characters ``\\x1b[31m``).

    Args:
        text: Anything; converted with ``str``.
        newlines: Keep line feeds (else they are escaped too, for one-line output).

    Returns:
        Text for which ``str.isprintable()`` holds apart from kept line feeds. Never raises
        for a ``str``.
    """
    raw = str(text)
    if raw.isprintable():
        return raw
    return "".join(c if c.isprintable() or (newlines and c == "\n") else repr(c)[1:-1] for c in raw)


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
    text = printable(text, newlines=False)
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



# Pieces of a snapshot summary shared by `replay show` (rich) and `replay export` (md, json,
# html): plain text, no rich, nothing imported from the application.


def format_size(n: int) -> str:
    """``4504`` -> ``"4.4 KiB"`` (bytes below 1 KiB as ``"512 B"``)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def call_text(entry: dict[str, Any], *, width: int = 200) -> str:
    """The recorded call as Python-like text: ``renew(RenewalRequest(...), dry_run=True)``.

    Args:
        entry: The entry section (``qualname``, ``args`` and ``kwargs`` codec nodes).
        width: Characters kept per argument value.
    """
    args = entry.get("args") or ["l"]
    kwargs = entry.get("kwargs") or ["d"]
    parts = [render(a, width=width) for a in args[1:]]
    kw = kwargs[1:]
    parts += [f"{printable(kw[i], newlines=False)}={render(kw[i + 1], width=width)}" for i in range(0, len(kw) - 1, 2)]
    name = str(entry.get("qualname", "?")).rpartition(".")[2]
    return f"{printable(name, newlines=False)}({', '.join(parts)})"


def innermost_app_frame(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last traceback frame in the application's code (frames with a relative ``path``)."""
    app = [f for f in frames if isinstance(f, dict) and f.get("path")]
    return app[-1] if app else None


def frame_locals(frame: dict[str, Any], *, width: int = 160) -> list[tuple[str, str]]:
    """``(name, rendered value)`` of a traceback frame's recorded locals, in recorded order."""
    node = frame.get("locals")
    if not isinstance(node, list):
        return []
    pairs = node[1:]
    return [(printable(pairs[i], newlines=False), render(pairs[i + 1], width=width)) for i in range(0, len(pairs) - 1, 2)]
