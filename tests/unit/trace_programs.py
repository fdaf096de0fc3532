"""Small programs the tracer backends are tested on (tests/unit/test_tracer_backends.py).

This file is application code for those tests (a ``Scope`` rooted at this directory traces
it line by line), so line numbers matter: tests find lines relative to ``def`` lines.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import json
import sys
import threading


def five_lines(n):
    total = 0
    for i in range(n):
        total += i
    return total


def square(x):
    return x * x


def sum_squares(n):
    acc = 0
    for i in range(n):
        acc += square(i)
    return acc


def nested(n):
    parts = [sum_squares(n), sum_squares(n + 1)]
    k = 0
    while k < 2:
        k += 1
    return parts, k


class Box:
    def __init__(self, items):
        self.items = items
        self.count = 0

    def add(self, item):
        self.items.append(item)
        self.count += 1


def mutate(n):
    items = []
    box = Box(items)
    for i in range(n):
        items.append(i)
        box.add(-i)
    box.label = "done"
    del items[0]
    return box.count


def fail(x):
    if x > 1:
        raise ValueError(f"too big: {x}")
    return x


def caught():
    try:
        fail(5)
    except ValueError as exc:
        message = str(exc)
    return message


def escaping():
    value = fail(1)
    value += fail(7)
    return value


def reraising():
    try:
        fail(3)
    except ValueError:
        note = "seen"
        raise
    finally:
        note = "finally"  # noqa: F841 - a step that rebinds a local


def countdown(n):
    while n > 0:
        yield n
        n -= 1


def use_generator():
    seen = []
    for v in countdown(3):
        seen.append(v)
    gen = countdown(2)
    first = next(gen)
    gen.close()
    return seen, first


def delegate():
    got = yield from countdown(2)
    return got


def use_delegate():
    return list(delegate())


def library_call():
    data = {"a": [1, 2], "b": None}
    text = json.dumps(data, sort_keys=True)
    back = json.loads(text)
    return back == data


def as_key(item):
    return -item


def lambdas_and_comprehensions(xs):
    double = lambda v: v * 2  # noqa: E731 - a lambda is the point
    doubled = [double(x) for x in xs]
    evens = {x for x in xs if x % 2 == 0}
    ordered = sorted(xs, key=as_key)
    total = sum(x for x in xs)
    for x in xs: total += x  # noqa: E701 - a loop on one line (settrace: a line event per pass)
    return doubled, evens, ordered, total


def recurse(n):
    if n <= 0:
        return 0
    return n + recurse(n - 1)


def _worker(out, n):
    local = sum_squares(n)
    out.append(local)


def threaded():
    out = []
    t = threading.Thread(target=_worker, args=(out, 3))
    t.start()
    t.join()
    return out


def loop_heavy(n):
    total = 0
    items = []
    for i in range(n):
        total += i * i
        if i % 3 == 0:
            items.append(i)
    return total, len(items)


PROGRAMS = {
    "five_lines": lambda: five_lines(3),
    "nested": lambda: nested(3),
    "mutate": lambda: mutate(3),
    "caught": caught,
    "escaping": escaping,
    "reraising": reraising,
    "generator": use_generator,
    "delegate": use_delegate,
    "library": library_call,
    "lambdas": lambda: lambdas_and_comprehensions([3, 1, 2]),
    "recurse": lambda: recurse(3),
    "threaded": threaded,
}
"""Program name -> a callable running it (a lambda is itself application code)."""


def _default(obj):
    return sorted(obj)


def library_callback():
    text = json.dumps({"s": {3, 1}}, default=_default)
    return text


def library_generator():
    lines = list(difflib.ndiff(["a", "b"], ["a", "c"]))
    for line in difflib.unified_diff(["x"], ["y"], lineterm=""):
        lines.append(line)
    return lines


def library_raises():
    try:
        json.loads("{bad")
    except ValueError as exc:
        return type(exc).__name__
    return None


def thrown():
    gen = countdown(3)
    next(gen)
    try:
        gen.throw(KeyError("k"))
    except KeyError:
        return "caught"
    return "not thrown"


async def tick(n):
    await asyncio.sleep(0)
    return n + 1


async def gather_ticks():
    a = await tick(1)
    b, c = await asyncio.gather(tick(2), tick(3))
    return a + b + c


def run_async():
    return asyncio.run(gather_ticks())


def import_module():
    name = f"{__package__}.trace_module_level" if __package__ else "trace_module_level"
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    return module.RESULT


def begin_inside(tracer, first):
    if not first:
        return square(2)
    tracer.start()
    value = begin_inside(tracer, False)
    value += 1
    return value


def waiting_worker(go, out):
    go.wait()
    out.append(sum_squares(2))


def shows_locals(values):
    for v in values:
        square(v)
    return len(values)


class _Cycle:
    pass


def collect_garbage():
    """A reference cycle with a weakref callback, freed by the collector while traced code
    runs: the callback (and the collector's other work) is not the program's step."""
    import gc
    import weakref

    seen = []
    node = _Cycle()
    node.me = node
    ref = weakref.ref(node, lambda r: seen.append(r))  # application code, run by the collector
    weakref.finalize(node, seen.append, 2)  # a library function (weakref.finalize.__call__)
    del node
    gc.collect()
    return len(seen), ref() is None
