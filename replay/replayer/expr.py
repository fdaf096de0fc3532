"""Safe expressions over recorded locals: ``order.total``, ``len(items) > 3``, ``d["k"] == 2``.

Breakpoint conditions, value history and watches evaluate Python expressions against a
step's locals as the trace stored them (display codec nodes), never against live objects and
never with ``eval``: a small interpreter walks the parsed expression and allows names,
attributes of recorded objects (their recorded fields, not Python attribute lookup),
subscripts, constants, comparisons, ``and``/``or``/``not``, arithmetic (no ``**``) and the
calls ``len abs min max sum round sorted any all str int float bool``. Anything else is an
:class:`ExprError` when the expression is compiled, so a condition cannot run code.

Values stored cut (display bounds) evaluate as far as they were recorded; asking for an item
beyond the cut raises :class:`ExprError` saying so.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
from typing import Any, Final

from replay.errors import UsageError
from replay.snapshot.decoding import Decoder, Opaque
from replay.snapshot.rendering import render


class ExprError(UsageError):
    """The expression is not allowed, or cannot be evaluated at this step (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Fields:
    """A recorded object (plain object, dataclass, exception) seen through its fields.

    Attributes:
        type_path: ``module:qualname`` of its class.
        fields: Field values by name (nodes converted by :func:`to_value`).
    """

    type_path: str
    fields: tuple[tuple[str, Any], ...]

    def get(self, name: str) -> Any:
        for key, value in self.fields:
            if key == name:
                return value
        raise ExprError(f"{self.type_path.rpartition(':')[2]} has no recorded field {name!r}")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields)
        return f"{self.type_path.rpartition(':')[2]}({inner})"


_CALLS: Final = {
    "len": len, "abs": abs, "min": min, "max": max, "sum": sum, "round": round, "sorted": sorted,
    "any": any, "all": all, "str": str, "int": int, "float": float, "bool": bool,
}
_BINOPS: Final = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMPOPS: Final = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_MAX_SIZE: Final = 1_000_000


class _Cut:
    """Items a display bound left out (``["+", n]``)."""

    def __init__(self, count: int):
        self.count = count

    def __repr__(self) -> str:
        return f"...{self.count} more"


def to_value(node: Any) -> Any:
    """A Python value for a node: primitives, lists, tuples, dicts, sets, :class:`Fields`
    for recorded objects, standard value types (datetime, Decimal, ...), else the decoder's
    inert :class:`Opaque`. Shared references and cycles are followed once."""
    return _Converter().convert(node)


class _Converter:
    _ID_TAGS: Final = frozenset({"l", "t", "d", "s", "f", "ba", "dc", "nt", "obj", "exc"})

    def __init__(self) -> None:
        self.ids: list[Any] = []
        self.depth = 0

    def convert(self, n: Any) -> Any:
        if not isinstance(n, list):
            return n
        if not n or not isinstance(n[0], str):
            return Opaque("?", "<malformed>", "malformed node")
        tag = n[0]
        if tag == "@":
            i = n[1] if len(n) > 1 else -1
            return self.ids[i] if isinstance(i, int) and 0 <= i < len(self.ids) else Opaque("?", "<ref>", "bad reference")
        if tag == "S":
            return n[1] if len(n) > 1 and isinstance(n[1], str) else ""
        if tag == "B":
            return n[1] if len(n) > 1 and isinstance(n[1], bytes) else b""
        if tag == "+":
            return _Cut(n[1] if len(n) > 1 and isinstance(n[1], int) else 0)
        if tag not in self._ID_TAGS:
            return Decoder().decode(n)
        slot = len(self.ids)
        self.ids.append(None)
        if tag in ("l", "t", "s", "f", "nt"):
            items = [self.convert(x) for x in (n[2:] if tag == "nt" else n[1:])]
            value: Any = tuple(items) if tag in ("t", "nt") else items
            if tag in ("s", "f"):
                try:
                    value = set(items) if tag == "s" else frozenset(items)
                except TypeError:
                    value = items
        elif tag == "d":
            rest = n[1:]
            pairs = []
            for i in range(0, len(rest) - 1, 2):
                pairs.append((self.convert(rest[i]), self.convert(rest[i + 1])))
            if len(rest) % 2:
                pairs.append((self.convert(rest[-1]), None))
            try:
                value = dict(pairs)
            except TypeError:
                value = pairs
        elif tag == "ba":
            value = bytearray(n[1]) if len(n) > 1 and isinstance(n[1], bytes) else bytearray()
        elif tag in ("obj", "dc"):
            fields = []
            rest = n[2:]
            for i in range(0, len(rest) - 1, 2):
                if isinstance(rest[i], str):
                    fields.append((rest[i], self.convert(rest[i + 1])))
            value = Fields(str(n[1]) if len(n) > 1 else "?", tuple(fields))
        else:  # exc: type, args, message, attrs
            args = [self.convert(a) for a in (n[2] if len(n) > 2 and isinstance(n[2], list) else [])]
            attrs = n[4] if len(n) > 4 and isinstance(n[4], list) else []
            fields = [("args", tuple(args)), ("message", n[3] if len(n) > 3 else "")]
            for i in range(0, len(attrs) - 1, 2):
                if isinstance(attrs[i], str):
                    fields.append((attrs[i], self.convert(attrs[i + 1])))
            value = Fields(str(n[1]) if len(n) > 1 else "?", tuple(fields))
        self.ids[slot] = value
        return value


def _check(tree: ast.AST, text: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                raise ExprError(f"{text!r}: assignment is not allowed")
            names.add(node.id)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _CALLS or node.keywords:
                raise ExprError(f"{text!r}: only the calls {', '.join(sorted(_CALLS))} are allowed")
        elif isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
            raise ExprError(f"{text!r}: the operator {type(node.op).__name__} is not allowed")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
            raise ExprError(f"{text!r}: dunder attributes are not allowed")
        elif not isinstance(node, (ast.Expression, ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Constant,
                                   ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
                                   ast.UAdd, ast.BinOp, ast.Call, ast.Slice, ast.Tuple, ast.List,
                                   *_BINOPS, *_CMPOPS)):
            raise ExprError(f"{text!r}: {type(node).__name__} is not allowed in an expression")
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        names.discard(call.func.id)  # type: ignore[attr-defined]
    return names


class Expression:
    """A compiled expression.

    Args:
        text: Python expression source.

    Attributes:
        text: The source.
        names: Local names it reads (a change to one of them can change its value).

    Raises:
        ExprError: a syntax error or a construct that is not allowed.
    """

    def __init__(self, text: str):
        self.text = text.strip()
        try:
            self._tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"{text!r} is not a Python expression: {exc.msg}") from None
        self.names = frozenset(_check(self._tree, self.text))

    def evaluate(self, scope: dict[str, Any]) -> Any:
        """Evaluate against ``scope`` (name -> node); returns a Python value (see :func:`to_value`).

        Raises:
            ExprError: a name is not defined at this step, a field or item was not recorded,
                or the operation fails (the message says which).
        """
        converted: dict[str, Any] = {}
        try:
            return self._eval(self._tree.body, scope, converted)
        except ExprError:
            raise
        except RecursionError:
            raise ExprError(f"{self.text!r}: nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 - any failure of the operation is the expression's
            raise ExprError(f"{self.text!r}: {type(exc).__name__}: {exc}") from None

    def _eval(self, node: ast.AST, scope: dict[str, Any], conv: dict[str, Any]) -> Any:  # noqa: C901
        if isinstance(node, ast.Name):
            if node.id not in conv:
                if node.id not in scope:
                    raise ExprError(f"{node.id} is not defined here")
                conv[node.id] = to_value(scope[node.id])
            return conv[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Attribute):
            base = self._eval(node.value, scope, conv)
            if isinstance(base, Fields):
                return base.get(node.attr)
            raise ExprError(f"{ast.unparse(node.value)} is a {type(base).__name__}: only recorded objects have fields")
        if isinstance(node, ast.Subscript):
            base = self._eval(node.value, scope, conv)
            key = self._eval(node.slice, scope, conv)
            if isinstance(base, Fields):
                raise ExprError(f"{ast.unparse(node.value)} is an object, not a container")
            if isinstance(base, list | tuple) and isinstance(key, int):
                cut = next((x for x in base if isinstance(x, _Cut)), None)
                if cut is not None and not -len(base) < key < len(base) - 1:
                    raise ExprError(f"{ast.unparse(node)}: not recorded (the display keeps {len(base) - 1} items)")
            return base[key]
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self._eval(p, scope, conv) for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        if isinstance(node, ast.Tuple | ast.List):
            items = [self._eval(e, scope, conv) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, scope, conv)
            if isinstance(node.op, ast.Not):
                return not value
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for value_node in node.values:
                result = self._eval(value_node, scope, conv)
                if isinstance(node.op, ast.And) and not result:
                    return result
                if isinstance(node.op, ast.Or) and result:
                    return result
            return result
        if isinstance(node, ast.BinOp):
            left = self._eval(node.left, scope, conv)
            right = self._eval(node.right, scope, conv)
            if isinstance(node.op, ast.Mult) and isinstance(left, str | bytes | list | tuple) | isinstance(
                    right, str | bytes | list | tuple):
                size = (len(left) if hasattr(left, "__len__") else 1) * (right if isinstance(right, int) else
                                                                         left if isinstance(left, int) else 1)
                if size > _MAX_SIZE:
                    raise ExprError(f"{self.text!r}: the result would be too large")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, scope, conv)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self._eval(right_node, scope, conv)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Call):
            args = [self._eval(a, scope, conv) for a in node.args]
            return _CALLS[node.func.id](*args)  # type: ignore[attr-defined]
        raise ExprError(f"{type(node).__name__} is not allowed")


def to_node(value: Any) -> Any:
    """The display node of an evaluated value (the inverse of :func:`to_value` for display)."""
    from replay.replayer.tracer import display

    if isinstance(value, Fields):
        node: list[Any] = ["obj", value.type_path]
        for name, field in value.fields:
            node += [name, to_node(field)]
        return node
    if isinstance(value, _Cut):
        return ["+", value.count]
    if isinstance(value, Opaque):
        return ["?", value.type_path, value.text, value.reason]
    if isinstance(value, list | tuple):
        return ["l" if isinstance(value, list) else "t", *(to_node(v) for v in value)]
    if isinstance(value, dict):
        flat: list[Any] = ["d"]
        for k, v in value.items():
            flat += [to_node(k), to_node(v)]
        return flat
    return display(value)


def show(value: Any, width: int = 200) -> str:
    """One line of text for an evaluated value (control characters escaped)."""
    return render(to_node(value), width=width)
