"""What is traced, and what each line of traced code can change.

:class:`Scope` decides which files are the application's (traced line by line).
:func:`line_effects` analyses a code object's bytecode once: for each line, which locals it
can rebind or mutate, so the tracer (:mod:`replay.replayer.tracer`) compares only those at
each step.
"""

from __future__ import annotations

import dis
import fnmatch
import os
from types import CodeType
from typing import Any, Final

from replay.capture.boundary import PACKAGE_DIR

_VENDOR: Final = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}", f"{os.sep}lib{os.sep}python")

class Scope:
    """Which code is the application's (traced line by line) and how files are named.

    By default a file is in scope when it lies under one of ``roots`` and not in a library
    directory (``site-packages``, a virtualenv) nor in this package. ``include`` patterns
    add files (for example a library you want to step through); ``exclude`` patterns remove
    them. Patterns are :mod:`fnmatch` globs matched against the path relative to a root
    (``shop/*``) and against the absolute path (``*/sqlite_utils/*``).

    Args:
        roots: Application code roots (absolute directories).
        include: Globs of files to trace even outside the roots.
        exclude: Globs of files never to trace.
    """

    def __init__(self, roots: list[str], include: list[str] | tuple[str, ...] = (),
                 exclude: list[str] | tuple[str, ...] = ()):
        self.roots = [os.path.abspath(r) for r in roots]
        self.include = list(include)
        self.exclude = list(exclude)
        self._cache: dict[str, bool] = {}

    def describe(self) -> dict[str, Any]:
        """The scope as stored in the trace header."""
        return {"include": self.include, "exclude": self.exclude}

    def relative(self, filename: str) -> str:
        """``filename`` relative to the first root that holds it (``/``-separated), else as is."""
        path = os.path.abspath(filename)
        for root in self.roots:
            if path.startswith(root + os.sep):
                return path[len(root) + 1:].replace(os.sep, "/")
        return filename

    def contains(self, filename: str) -> bool:
        """True if code from ``filename`` is traced line by line."""
        known = self._cache.get(filename)
        if known is None:
            known = self._cache[filename] = self._decide(filename)
        return known

    def _decide(self, filename: str) -> bool:
        if filename.startswith("<") or not filename.endswith(".py"):
            return False
        path = os.path.abspath(filename)
        rel = self.relative(path)
        names = (rel, path)
        if any(fnmatch.fnmatch(n, p) for p in self.exclude for n in names):
            return False
        if any(fnmatch.fnmatch(n, p) for p in self.include for n in names):
            return True
        if path.startswith(PACKAGE_DIR) or rel == path:
            return False
        return not any(v in os.sep + rel for v in _VENDOR)


def _names(argval: Any) -> tuple[str, ...]:
    if isinstance(argval, tuple):
        return tuple(a for a in argval if isinstance(a, str))
    return (argval,) if isinstance(argval, str) else ()


_STORE_OPS: Final = frozenset({
    "STORE_FAST", "DELETE_FAST", "STORE_DEREF", "DELETE_DEREF", "STORE_NAME", "DELETE_NAME",
    "STORE_FAST_STORE_FAST", "STORE_FAST_LOAD_FAST", "LOAD_FAST_AND_CLEAR", "STORE_FAST_MAYBE_NULL",
})
_LOAD_PREFIXES: Final = ("LOAD_FAST", "LOAD_DEREF", "LOAD_NAME", "LOAD_CLOSURE", "STORE_FAST_LOAD_FAST")
_CALL_OPS: Final = frozenset({
    "CALL", "CALL_FUNCTION_EX", "CALL_KW", "IMPORT_NAME", "BEFORE_WITH", "BEFORE_ASYNC_WITH",
    "WITH_EXCEPT_START", "CALL_INTRINSIC_1", "CALL_INTRINSIC_2",
})
_SUSPEND_OPS: Final = frozenset({"YIELD_VALUE", "SEND", "GET_AWAITABLE", "GET_ANEXT", "END_ASYNC_FOR"})
_MUTATE_OPS: Final = frozenset({"STORE_ATTR", "STORE_SUBSCR", "DELETE_ATTR", "DELETE_SUBSCR", "STORE_SLICE"})

LineEffect = tuple[tuple[str, ...], tuple[str, ...], bool, bool]
"""(names to compare by identity, names to re-encode if mutable, compare everything, simple:
only identity comparisons are needed)."""


def line_effects(code: CodeType) -> dict[int, LineEffect]:
    """What each line of ``code`` can change in its frame's locals.

    Returns:
        ``{line: (check, reencode, full, simple)}``: ``check`` names the line may rebind (compared
        by identity); ``reencode`` names whose objects the line may mutate in place (calls,
        item or attribute stores, in-place operators: re-encoded and compared); ``full``
        when the line suspends (yield, await) and anything may change. Lines absent from the
        map change nothing. Instructions without a line number count for every line.
    """
    per_line: dict[int | None, list[Any]] = {}
    for ins in dis.get_instructions(code):
        positions = getattr(ins, "positions", None)
        line = positions.lineno if positions is not None else None
        if line is None and ins.starts_line not in (None, False, True):
            line = ins.starts_line
        entry = per_line.setdefault(line, [set(), set(), False, False, False, False])
        op = ins.opname
        if op in _STORE_OPS:
            entry[0].update(_names(ins.argval))
        if op.startswith(_LOAD_PREFIXES):
            entry[1].update(_names(ins.argval))
        if op in _CALL_OPS:
            entry[2] = True
        elif op in _MUTATE_OPS:
            entry[3] = True
        elif op in _SUSPEND_OPS:
            entry[4] = True
        elif op == "BINARY_OP" and str(ins.argrepr).endswith("=") and ins.argrepr not in ("==", "!=", "<=", ">="):
            entry[5] = True  # x += y may mutate x in place (lists, sets, user types)
    cells = tuple(code.co_cellvars) + tuple(code.co_freevars)
    always = per_line.pop(None, None)
    module_level = code.co_name == "<module>"
    out: dict[int, LineEffect] = {}
    for line, entry in per_line.items():
        stores, loads, calls, mutates, suspends, inplace = entry
        if always is not None:
            stores, loads = stores | always[0], loads | always[1]
            calls, mutates, suspends, inplace = (a or b for a, b in zip(entry[2:], always[2:], strict=False))
        check = set(stores)
        reencode: set[str] = set(stores) if inplace else set()
        if calls or mutates:
            check |= loads
            reencode |= loads | stores
        if calls:
            check |= set(cells)  # a nested function may rebind a nonlocal
        if not (check or reencode or suspends):
            continue
        assert line is not None
        simple = not (suspends or module_level)
        out[line] = (tuple(sorted(check)), tuple(sorted(reencode)), suspends, simple)
    return out


__all__ = ["LineEffect", "Scope", "line_effects"]
