"""Serving the tape during replay: matching, divergence and effects.

:class:`TapePlayer` is the replay-mode boundary session. Two matching modes (DESIGN.md
section 6):

* ``strict`` (baseline, recorded code): every request must be the next interaction of its
  strand (thread or task) on the tape, with the same channel, operation and arguments.
* ``keyed`` (candidate): clock readings are served in order per strand and clock stream,
  random words and urandom bytes in order per strand, whatever function asks; other
  requests are matched by channel + operation + normalised request (the channel's
  :class:`~replay.capture.boundary.ChannelSpec` key), first-in first-out per key. When clock
  or randomness runs out, deterministic values are synthesized (seeded from the snapshot;
  the clock extrapolated from its last readings) and reported; information from the
  outside world (env, files, HTTP, databases, subprocesses) is never invented: an
  unanswerable request is a divergence.

Effects (writes to the outside world) are never performed on replay. Each one the replay
asks for is logged with how it compares to the recording: ``same``, ``changed`` (served the
answer of the recorded effect to the same target, with a field diff of the request), and,
after the call, recorded effects never asked for are ``missing``.

The first divergence is stored on the player and raised as
:class:`replay.errors.ReplayDiverged` (a BaseException) into the replayed program. Its
report names the tape index, what was recorded, what was asked (with a field diff), the
nearest recorded candidates and the replayed code's stack at that point.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import os
import random
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from replay.capture.boundary import CLOCK_STREAMS, PACKAGE_DIR, STRAND, channel_spec, suspended
from replay.capture.interceptors import exempt
from replay.capture.redact_rules import redacted_match
from replay.errors import ReplayDiverged
from replay.snapshot.codec import Decoder, Encoder, TypeResolver, render
from replay.snapshot.model import Interaction
from replay.verify.valuediff import diff_values

MAX_STACK = 12
MAX_CANDIDATES = 3
MAX_NOTES = 200
MAX_ADOPT_WINDOW = 8  # clock readings before an adopt whose order strict mode relaxes


@dataclasses.dataclass
class Divergence:
    """The first point where replay asked something the tape could not answer.

    Attributes:
        index: Tape index of the interaction expected at this point (strict), or the
            number of requests answered before this one (keyed).
        channel: Channel asked.
        op: Operation asked.
        asked: Rendered arguments of the request.
        recorded: Rendered interaction expected at this point, or None (the tape ran out,
            or no recorded request has this key).
        candidates: Nearest unconsumed recorded interactions, most similar first, rendered.
        reason: One sentence.
        diff: ``(field path, recorded, asked)`` renderings between the request and the
            recorded interaction (or the nearest candidate) it was compared with.
        stack: The replayed code's stack when it asked, innermost last: ``file:line in
            function`` (frames of this package left out).
        strand: The thread or task that asked (``"0"``: the entry point's).
    """

    index: int
    channel: str
    op: str
    asked: str
    recorded: str | None
    candidates: list[str]
    reason: str
    diff: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    stack: list[str] = dataclasses.field(default_factory=list)
    strand: str = "0"

    def __str__(self) -> str:
        lines = [f"divergence at interaction #{self.index}: {self.reason}",
                 f"  asked:    {self.channel} {self.op}{self.asked}",
                 f"  recorded: {self.recorded if self.recorded is not None else '(nothing that answers it)'}"]
        lines += [f"  differs:  {path}: recorded {old}, asked {new}" for path, old, new in self.diff]
        lines += [f"  nearest:  {c}" for c in self.candidates]
        if self.stack:
            lines.append("  stack (innermost last):")
            lines += [f"    {s}" for s in self.stack]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON)."""
        out = dataclasses.asdict(self)
        out["diff"] = [list(d) for d in self.diff]
        return out


def describe(inter: Interaction) -> str:
    """One-line rendering of an interaction: ``#3 clock time.time() -> 2026-11-21 ...``."""
    if inter.error is not None:
        answer = f"raises {render(inter.error, width=120)}"
    elif inter.channel == "clock" and isinstance(inter.result, int):
        answer = _clock_text(inter.op, inter.result)
    elif inter.channel == "random" and isinstance(inter.result, list):
        words = " ".join(f"{int(w):08x}" for w in inter.result[:4])
        answer = f"MT words [{words}{' ...' if len(inter.result) > 4 else ''}]"
    else:
        answer = render(inter.result, width=120)
    where = f" [strand {inter.strand}]" if inter.strand != "0" else ""
    return f"#{inter.index}{where} {inter.channel} {inter.op}{_args_text(inter.args)} -> {answer}"


def _clock_text(op: str, ns: int) -> str:
    if CLOCK_STREAMS.get(op) == "wall":
        stamp = _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.UTC)
        return f"{ns} ns ({stamp:%Y-%m-%d %H:%M:%S}.{ns % 1_000_000_000 // 1000:06d} UTC)"
    return f"{ns} ns ({ns / 1e9:.6f} s)"


def _args_text(node: Any) -> str:
    text = render(node, width=160)
    if text.endswith(",)"):
        text = text[:-2] + ")"
    return text if text.startswith("(") else f"({text})"


def replay_stack(skip: int = 2) -> list[str]:
    """The calling thread's stack as ``file:line in function``, innermost last.

    Frames of this package (interceptors, the player, the replay child) and frozen
    importlib/runpy frames are left out, so the last line is the replayed code that made
    the request.
    """
    out: list[str] = []
    frame: Any = sys._getframe(skip)
    while frame is not None and len(out) < 64:
        file = frame.f_code.co_filename
        if not file.startswith("<frozen ") and not os.path.abspath(file).startswith(PACKAGE_DIR):
            out.append(f"{file}:{frame.f_lineno} in {getattr(frame.f_code, 'co_qualname', frame.f_code.co_name)}")
        frame = frame.f_back
    out.reverse()
    return out[-MAX_STACK:]


@dataclasses.dataclass(frozen=True)
class Served:
    """An answer that did not come from a tape interaction (see :meth:`TapePlayer.find`)."""

    value: Any


class TapePlayer:
    """Answers boundary requests from a recorded tape (a replay-mode boundary session).

    Args:
        tape: The snapshot's interactions, in order.
        mode: ``"strict"`` or ``"keyed"``.
        seed: Seed for synthesized clock/random values (stable per snapshot).
        resolver: Which types answers may be rebuilt as.
        environ: The recorded process environment (keyed mode answers env reads the tape
            lacks from it: real recorded values, not inventions).
        withheld: Names of variables whose values were withheld from ``environ``.
        app_roots: The code roots of this replay (see ``BoundarySession.app_roots``).

    Thread-safe: threads and tasks of the replayed call share one player.
    """

    replaying = True

    def __init__(self, tape: list[Interaction], mode: str, seed: int, resolver: TypeResolver,
                 environ: dict[str, str] | None = None, withheld: list[str] | None = None,
                 app_roots: list[str] | None = None):
        self.tape = tape
        self.app_roots = [os.path.abspath(r) for r in app_roots or []]
        self.environ = environ
        self.withheld = set(withheld or [])
        self.from_environment = 0
        self.mode = mode
        self.resolver = resolver
        self.requests = 0
        self.consumed: set[int] = set()
        self.synthesized: dict[str, int] = {}
        self.reused: dict[str, int] = {}
        self.divergence: Divergence | None = None
        self.effects: list[dict[str, Any]] = []
        self.blocked: list[dict[str, Any]] = []
        # requests a channel answered without a tape interaction (see served_aside)
        self.notes: list[str] = []
        self._lock = threading.RLock()
        # called with the tape index of each interaction served (the trace links steps to them)
        self.on_consume: Callable[[int], None] | None = None
        self._rng = exempt(random.Random(seed))  # synthesized values: never recorded nor served
        self._children: dict[str, int] = {}
        # strict: each strand's interactions in order
        self._strands: dict[str, deque[Interaction]] = {}
        # keyed
        self._clock: dict[tuple[str, str], deque[Interaction]] = {}
        self._clock_last: dict[tuple[str, str], list[int]] = {}
        self._words: dict[str, deque[tuple[int, int]]] = {}  # strand -> (interaction index, word)
        self._bytes: dict[str, deque[tuple[int, bytes]]] = {}  # strand -> (interaction index, chunk)
        self._keyed: dict[tuple[str, str, str], deque[Interaction]] = {}
        self._targets: dict[tuple[str, str, str], list[Interaction]] = {}
        self._last_answer: dict[tuple[str, str, str], Interaction] = {}
        self._streams: dict[tuple[str, str], deque[Interaction]] = {}
        self._decoded: dict[int, Any] = {}
        self._adopt_clock: dict[int, list[list[Any]]] = {}  # adopt index -> its unserved connect-time readings
        for inter in tape:
            self._strands.setdefault(inter.strand, deque()).append(inter)
            if mode == "strict":
                continue
            if inter.channel == "clock":
                stream = CLOCK_STREAMS.get(inter.op, inter.op)
                if inter.op == "time.sleep":
                    stream = "sleep"
                self._clock.setdefault((inter.strand, stream), deque()).append(inter)
            elif inter.channel == "random" and inter.op == "os.urandom":
                if isinstance(inter.result, bytes):
                    self._bytes.setdefault(inter.strand, deque()).append((inter.index, inter.result))
            elif inter.channel == "random":
                if isinstance(inter.result, list):
                    self._words.setdefault(inter.strand, deque()).extend((inter.index, int(w)) for w in inter.result)
            elif inter.channel == "uuid":
                self._streams.setdefault((inter.strand, inter.op), deque()).append(inter)
            else:
                spec = channel_spec(inter.channel)
                args = self._args_of(inter)
                self._keyed.setdefault(self._key(inter.channel, inter.op, args), deque()).append(inter)
                if spec.target is not None and spec.effect(inter.op, args):
                    target = (inter.channel, inter.op, repr(spec.target(inter.op, args)))
                    self._targets.setdefault(target, []).append(inter)

    # ----------------------------------------------------------------- helpers

    def _args_of(self, inter: Interaction) -> Any:
        if inter.index not in self._decoded:
            self._decoded[inter.index] = Decoder(self.resolver).decode(inter.args)
        return self._decoded[inter.index]

    @staticmethod
    def _key(channel: str, op: str, args: Any) -> tuple[str, str, str]:
        try:
            key = channel_spec(channel).key(op, args)
        except Exception:  # noqa: BLE001 - a key function must not turn a replay into a crash
            key = args
        return channel, op, repr(key)

    def _redacted_queue(self, channel: str, op: str, args_node: Any) -> deque[Interaction] | None:
        """The queue of an unanswered recorded request whose redacted secrets (tokens) are
        the only difference from this one (see replay.capture.redact_rules.redacted_match)."""
        for inter in self.tape:
            if (inter.channel == channel and inter.op == op and inter.index not in self.consumed
                    and "~redacted~" in repr(inter.args) and redacted_match(inter.args, args_node)):
                return self._keyed.get(self._key(channel, op, self._args_of(inter)))
        return None

    def _synth(self, what: str) -> None:
        self.synthesized[what] = self.synthesized.get(what, 0) + 1

    def _take(self, inter: Interaction) -> Interaction:
        self._consume(inter.index)
        return inter

    def _consume(self, index: int) -> None:
        self.consumed.add(index)
        if self.on_consume is not None:
            self.on_consume(index)

    def _nearest(self, channel: str, op: str, args_node: Any) -> list[Interaction]:
        """Recorded interactions of the channel most like the request: same operation
        first, then by textual similarity; ones already answered are included (the
        candidate may be asking twice) but rank after unanswered ones of equal likeness."""
        asked = render(args_node, width=400)
        scored = []
        for inter in self.tape:
            if inter.channel != channel:
                continue
            ratio = difflib.SequenceMatcher(None, asked, render(inter.args, width=400)).ratio()
            scored.append((inter.op == op, round(ratio, 2), inter.index not in self.consumed, -inter.index, inter))
            if len(scored) > 2000:  # a bound on the work for huge tapes
                break
        scored.sort(key=lambda t: t[:4], reverse=True)
        return [t[4] for t in scored[:MAX_CANDIDATES]]

    def _diverge(self, channel: str, op: str, args_node: Any, reason: str, recorded: Interaction | None) -> ReplayDiverged:
        with self._lock, suspended():  # building the report must not ask the boundary itself
            if self.divergence is None:
                near = self._nearest(channel, op, args_node)
                compare = recorded if recorded is not None else (near[0] if near else None)
                diff = []
                if compare is not None and compare.channel == channel:
                    diff = [(p, old, new) for p, old, new in diff_values(compare.args, args_node)]
                strand = STRAND.get()
                index = self.requests - 1
                if self.mode == "strict":
                    index = recorded.index if recorded is not None else len(self.tape)
                self.divergence = Divergence(
                    index=index,
                    channel=channel,
                    op=op,
                    asked=_args_text(args_node),
                    recorded=describe(recorded) if recorded is not None else None,
                    candidates=[describe(i) + (" (already answered)" if i.index in self.consumed else "")
                                for i in near if i is not recorded],
                    reason=reason,
                    diff=diff,
                    stack=replay_stack(3),
                    strand=strand,
                )
            return ReplayDiverged(self.divergence)

    def _strict_next(self, channel: str, op: str, args_node: Any) -> Interaction:
        with self._lock:
            self.requests += 1
            if self.divergence is not None:
                raise ReplayDiverged(self.divergence)
            strand = STRAND.get()
            queue = self._strands.get(strand)
            if not queue:
                raise self._diverge(channel, op, args_node,
                                    f"the replay asked for more than was recorded{_in_strand(strand)}", None)
            inter = queue[0]
            if (channel, op) == ("db", "adopt") and inter.channel == "clock":
                self._skip_clock_before_adopt(queue, args_node)
                inter = queue[0]
            if (inter.channel, inter.op) != (channel, op):
                raise self._diverge(channel, op, args_node, "a different call than the one recorded", inter)
            if channel != "clock" and repr(inter.args) != repr(args_node) and not redacted_match(inter.args, args_node):
                raise self._diverge(channel, op, args_node, "the same call with different arguments", inter)
            queue.popleft()
            return self._take(inter)

    # ----------------------------------------------------------------- adopted db connections

    # A recorded call that used a database connection an earlier call opened has an ``adopt``
    # on its tape (see replay.capture.channels.db). The replay, a fresh process, opens that
    # connection itself, and the code that manages connections reads the clock around it
    # where the recording did not (SQLAlchemy's pool stamps a new connection with
    # ``time.time()``; Django computes CONN_MAX_AGE's deadline at connect and checks it at
    # request start only when a connection exists). Strict mode therefore relaxes the order of
    # clock readings in the run of readings just before an ``adopt``, and only there: a
    # reading may be taken out of order within that run, one the run lacks is served from
    # the readings recorded just before the original connect (kept with the ``adopt``), and
    # readings of the run the replay never asks for are passed over when the ``adopt`` is
    # reached. Each case is noted in ``notes``.

    def _adopt_window(self, queue: deque[Interaction]) -> tuple[int, Interaction] | None:
        """``(n, adopt)`` when the strand's next ``n`` interactions are clock readings followed
        by a db ``adopt``; else None."""
        for n, inter in enumerate(queue):
            if inter.channel != "clock" or n >= MAX_ADOPT_WINDOW:
                return (n, inter) if inter.channel == "db" and inter.op == "adopt" else None
        return None

    def _clock_near_adopt(self, op: str) -> int | None:
        """Strict mode: a clock reading asked just before an adopted connection (see above)."""
        with self._lock:
            queue = self._strands.get(STRAND.get())
            if self.divergence is not None or not queue or (queue[0].channel, queue[0].op) == ("clock", op):
                return None
            found = self._adopt_window(queue)
            if found is None:
                return None
            n, adopt = found
            for k in range(n):
                if queue[k].op == op:
                    inter = queue[k]
                    del queue[k]
                    self.requests += 1
                    return int(self._take(inter).result)
            readings = self._adopt_clock.get(adopt.index)
            if readings is None:
                answer = Decoder(self.resolver).decode(adopt.result) if adopt.error is None else None
                clock = answer.get("clock") if isinstance(answer, dict) else None
                readings = [list(r) for r in clock or () if isinstance(r, list | tuple) and len(r) == 2]
                self._adopt_clock[adopt.index] = readings
            for k, (recorded_op, value) in enumerate(readings):
                if recorded_op == op and isinstance(value, int):
                    del readings[k]
                    self.requests += 1
                    self.reused["clock"] = self.reused.get("clock", 0) + 1
                    self._note(f"clock {op}() answered with the reading recorded when the connection adopted at "
                               f"#{adopt.index} was opened")
                    return value
            return None

    def _skip_clock_before_adopt(self, queue: deque[Interaction], args_node: Any) -> None:
        """Strict mode, an ``adopt`` asked: pass over the clock readings recorded before it."""
        found = self._adopt_window(queue)
        if found is None or repr(found[1].args) != repr(args_node):
            return
        for _ in range(found[0]):
            inter = queue.popleft()
            self.consumed.add(inter.index)
            self._note(f"clock {inter.op}() #{inter.index} not asked: read by the recorded call's connection "
                       f"management before the connection adopted at #{found[1].index}")

    def _note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    # ----------------------------------------------------------------- session API

    def new_strand(self, kind: str, name: str) -> str:
        with self._lock:
            parent = STRAND.get()
            n = self._children.get(parent, 0) + 1
            self._children[parent] = n
            return f"{parent}.{n}"

    def clock_ns(self, op: str, real: Callable[[], int]) -> int:
        if self.mode == "strict":
            value = self._clock_near_adopt(op)
            if value is not None:
                return value
            return int(self._strict_next("clock", op, ["t"]).result)
        with self._lock:
            self.requests += 1
            stream = CLOCK_STREAMS.get(op, op)
            strand = STRAND.get()
            queue = self._clock.get((strand, stream))
            last = self._clock_last.setdefault((strand, stream), [])
            if queue:
                value = int(self._take(queue.popleft()).result)
            else:
                self._synth(f"clock.{stream}")
                recorded = [int(i.result) for i in self.tape if i.channel == "clock"
                            and CLOCK_STREAMS.get(i.op, i.op) == stream and isinstance(i.result, int)]
                history = last or recorded
                step = (history[-1] - history[0]) // (len(history) - 1) if len(history) > 1 else 1_000
                base = history[-1] if history else 0
                value = base + max(step, 1)
            last.append(value)
            return value

    def sleep(self, op: str, args: tuple[Any, ...], real: Callable[[], Any] | None = None) -> None:
        """A recorded ``time.sleep``: matched in order (strict) or consumed if present (keyed); never slept."""
        node = Encoder().encode(args)
        if self.mode == "strict":
            self._strict_next("clock", op, node)
            return
        with self._lock:
            self.requests += 1
            queue = self._clock.get((STRAND.get(), "sleep"))
            if queue:
                self._take(queue.popleft())

    def mt_words(self, op: str, args: tuple[Any, ...], count: int, real: Callable[[], int]) -> list[int]:
        if self.mode == "strict":
            node = ["t", *args]
            inter = self._strict_next("random", op, node)
            words = [int(w) for w in inter.result]
            if len(words) != count:
                raise self._diverge("random", op, node, "a different number of random words", inter)
            return words
        with self._lock:
            self.requests += 1
            queue = self._words.get(STRAND.get())
            out = []
            for _ in range(count):
                if queue:
                    index, word = queue.popleft()
                    self._consume(index)
                    out.append(word)
                else:
                    self._synth("random.mt")
                    out.append(self._rng.getrandbits(32))
            return out

    def urandom(self, op: str, size: int, real: Callable[[int], bytes]) -> bytes:
        if self.mode == "strict":
            return bytes(self._strict_next("random", op, ["t", size]).result)
        with self._lock:
            self.requests += 1
            queue = self._bytes.get(STRAND.get())
            out = bytearray()
            while len(out) < size and queue:
                index, chunk = queue.popleft()
                take = size - len(out)
                out += chunk[:take]
                if len(chunk) > take:
                    queue.appendleft((index, chunk[take:]))
                self._consume(index)
            if len(out) < size:
                self._synth("random.urandom")
                out += self._rng.randbytes(size - len(out))
            return bytes(out)

    def call(self, channel: str, op: str, args: tuple[Any, ...], real: Callable[[], Any] | None = None) -> Any:
        found = self.find(channel, op, args)
        if isinstance(found, Served):
            return found.value
        return self.answer(channel, op, found)

    def find(self, channel: str, op: str, args: Any) -> Interaction | Served:
        """Consume and return the recorded interaction that answers a request.

        Channel modules use this with :meth:`answer` (or read ``result`` themselves) when an
        answer must be rebuilt into a live object (an HTTP response, a database cursor).

        Returns:
            The interaction; for ``env`` and ``uuid`` requests the tape lacks in keyed mode,
            a :class:`Served` value (from the recorded environment, or a synthesized uuid).

        Raises:
            ReplayDiverged: nothing on the tape answers it (after recording the report).
        """
        args_node = Encoder().encode(args)
        spec = channel_spec(channel)
        if self.mode == "strict":
            inter = self._strict_next(channel, op, args_node)
            if spec.effect(op, args):
                self._log_effect("same", channel, op, args_node, inter)
            return inter
        with self._lock:
            self.requests += 1
            if self.divergence is not None:
                raise ReplayDiverged(self.divergence)
            if channel == "uuid":
                queue = self._streams.get((STRAND.get(), op))
                if not queue:
                    self._synth(op)
                    return Served(uuid.UUID(int=self._rng.getrandbits(128), version=1))
                return self._take(queue.popleft())
            key = self._key(channel, op, args)
            queue = self._keyed.get(key) or self._redacted_queue(channel, op, args_node)
            is_effect = spec.effect(op, args)
            if queue:
                inter = self._take(queue.popleft())
                self._last_answer[key] = inter
                if is_effect:
                    self._log_effect("same", channel, op, args_node, inter)
                return inter
            if channel == "env" and self.environ is not None:
                return Served(self._from_environment(op, args, args_node))
            if spec.constant and not is_effect and key in self._last_answer:
                self.reused[channel] = self.reused.get(channel, 0) + 1
                return self._last_answer[key]
            if is_effect and spec.target is not None:
                target = (channel, op, repr(spec.target(op, args)))
                for inter in self._targets.get(target, []):
                    if inter.index not in self.consumed:
                        self._take(inter)
                        queue = self._keyed.get(self._key(channel, op, self._args_of(inter)))
                        if queue and inter in queue:
                            queue.remove(inter)
                        self._log_effect("changed", channel, op, args_node, inter)
                        return inter
            raise self._diverge(channel, op, args_node, "no recorded answer for this request", None)

    def answer(self, channel: str, op: str, inter: Interaction) -> Any:
        """Rebuild the recorded answer of ``inter``: its value, or its exception raised."""
        decoder = Decoder(self.resolver)
        if inter.error is not None:
            exc = decoder.decode(inter.error)
            if isinstance(exc, BaseException):
                raise exc
            raise self._diverge(channel, op, inter.args, f"the recorded exception cannot be rebuilt ({exc!r})", inter)
        return decoder.decode(inter.result)

    def peek(self, channel: str, op: str, args: Any) -> Interaction | None:
        """The recorded interaction that would answer a request, without consuming it.

        Strict: the first unconsumed one of the asking strand with this channel, op and
        arguments; keyed: the head of its key's queue. None when there is none.
        """
        with self._lock:
            if self.mode == "strict":
                node = repr(Encoder().encode(args))
                for inter in self._strands.get(STRAND.get(), ()):
                    if inter.channel == channel and inter.op == op and repr(inter.args) == node:
                        return inter
                return None
            queue = self._keyed.get(self._key(channel, op, args))
            return queue[0] if queue else None

    def _log_effect(self, status: str, channel: str, op: str, args_node: Any, inter: Interaction) -> None:
        entry: dict[str, Any] = {"status": status, "channel": channel, "op": op, "index": inter.index,
                                 "asked": _args_text(args_node), "recorded": _args_text(inter.args)}
        if status == "changed":
            entry["diff"] = [list(d) for d in diff_values(inter.args, args_node)]
        self.effects.append(entry)

    def _from_environment(self, op: str, args: tuple[Any, ...], args_node: Any) -> Any:
        assert self.environ is not None
        names = sorted(set(self.environ) | self.withheld)
        if op == "environ.get":
            key = args[0]
            if key in self.withheld:
                raise self._diverge("env", op, args_node, "the variable's value was withheld from the snapshot "
                                    "(secret-like name) and the original call never read it", None)
            self.from_environment += 1
            if key not in self.environ:
                raise KeyError(key)
            return self.environ[key]
        self.from_environment += 1
        return names if op == "environ.keys" else len(names)

    def served_aside(self, channel: str, op: str, args: Any, how: str) -> None:
        """Note a request that its channel answered without consuming a tape interaction.

        Used by the db channel for the set-up statements of a connection the replay opens
        where the recorded call used one opened earlier (an ``adopt`` on the tape).

        Args:
            channel: The channel (``db``).
            op: The operation (``execute``).
            args: The request (plain data, rendered into the note).
            how: ``"reused"``: a recorded answer kept elsewhere in the snapshot was served
                (counted in :attr:`reused` per channel); ``"empty"``: an empty answer to a
                statement that only configures a connection (counted in
                :attr:`synthesized` as ``<channel>.setup``).

        Raises:
            ValueError: ``how`` is neither.
        """
        if how not in ("reused", "empty"):
            raise ValueError(f"served_aside how={how!r}: expected 'reused' or 'empty'")
        with self._lock, suspended():
            if how == "reused":
                self.reused[channel] = self.reused.get(channel, 0) + 1
                what = "answered with the recorded set-up of the adopted connection"
            else:
                self._synth(f"{channel}.setup")
                what = "answered empty (connection set-up the recording did not repeat)"
            self._note(f"{channel} {op}{_args_text(Encoder().encode(args))} {what}")

    def block(self, channel: str, detail: str) -> None:
        """Log an attempt of the replayed code to touch a real system (see the sandbox)."""
        with self._lock, suspended():
            if len(self.blocked) < 200:
                self.blocked.append({"kind": channel, "detail": detail, "stack": replay_stack(3)[-4:]})

    # ----------------------------------------------------------------- after the call

    def unconsumed(self) -> list[Interaction]:
        """Recorded interactions the replay never asked for."""
        return [i for i in self.tape if i.index not in self.consumed]

    def missing_effects(self) -> list[dict[str, Any]]:
        """Recorded effects the replay never asked for, as effect log entries."""
        out = []
        for inter in self.unconsumed():
            spec = channel_spec(inter.channel)
            if spec.effect(inter.op, self._args_of(inter)):
                out.append({"status": "missing", "channel": inter.channel, "op": inter.op, "index": inter.index,
                            "asked": None, "recorded": _args_text(inter.args)})
        return out

    def finish_strict(self) -> None:
        """In strict mode, a replay that stops asking early has diverged too."""
        if self.mode != "strict" or self.divergence is not None:
            return
        left = [q[0] for q in self._strands.values() if q]
        if left:
            inter = min(left, key=lambda i: i.index)
            total = sum(len(q) for q in self._strands.values())
            self.divergence = Divergence(
                index=inter.index, channel=inter.channel, op=inter.op, asked="(nothing: the call ended)",
                recorded=describe(inter), candidates=[],
                reason=f"the replay ended without asking for {total} recorded interaction(s)",
                strand=inter.strand,
            )


def _in_strand(strand: str) -> str:
    return "" if strand == "0" else f" in strand {strand}"
