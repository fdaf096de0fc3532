"""Serving the tape during replay, and divergence.

:class:`TapePlayer` is the replay-mode boundary session. Two matching modes (DESIGN.md
section 6):

* ``strict`` (baseline, recorded code): every request must be the next interaction on the
  tape, with the same channel, operation and arguments.
* ``keyed`` (candidate): clock readings are served in order per clock stream, random words
  and urandom bytes in order per generator, whatever function asks; other requests are
  matched by channel + operation + arguments, first-in first-out per key. When clock or
  randomness runs out, deterministic values are synthesized (seeded from the snapshot; the
  clock extrapolated from its last readings) and reported; information from the outside
  world (env, ...) is never invented: an unanswerable request is a divergence.

The first divergence is stored on the player and raised as
:class:`replay.errors.ReplayDiverged` (a BaseException) into the replayed program.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import random
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from replay.capture.boundary import CLOCK_STREAMS
from replay.errors import ReplayDiverged
from replay.snapshot.codec import Decoder, Encoder, TypeResolver, render
from replay.snapshot.model import Interaction


@dataclasses.dataclass
class Divergence:
    """The first point where replay asked something the tape could not answer.

    Attributes:
        index: Tape index where the answer was expected (strict), or the number of requests
            answered before this one (keyed).
        channel: Channel asked.
        op: Operation asked.
        asked: Rendered arguments of the request.
        recorded: Rendered interaction expected at this point, or None when the tape ran out.
        candidates: Nearest recorded interactions (same channel and operation), rendered.
        reason: One sentence.
    """

    index: int
    channel: str
    op: str
    asked: str
    recorded: str | None
    candidates: list[str]
    reason: str

    def __str__(self) -> str:
        lines = [f"divergence at interaction #{self.index}: {self.reason}",
                 f"  asked:    {self.channel} {self.op}{self.asked}",
                 f"  recorded: {self.recorded if self.recorded is not None else '(nothing: the tape has no more interactions)'}"]
        lines += [f"  nearest:  {c}" for c in self.candidates]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON)."""
        return dataclasses.asdict(self)


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
    return f"#{inter.index} {inter.channel} {inter.op}{_args_text(inter.args)} -> {answer}"


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


def _key(channel: str, op: str, args_node: Any) -> tuple[str, str, str]:
    return channel, op, repr(args_node)


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
    """

    def __init__(self, tape: list[Interaction], mode: str, seed: int, resolver: TypeResolver,
                 environ: dict[str, str] | None = None, withheld: list[str] | None = None):
        self.tape = tape
        self.environ = environ
        self.withheld = set(withheld or [])
        self.from_environment = 0
        self.mode = mode
        self.resolver = resolver
        self.pos = 0
        self.requests = 0
        self.consumed: set[int] = set()
        self.synthesized: dict[str, int] = {}
        self.divergence: Divergence | None = None
        self._rng = random.Random(seed)
        self._clock: dict[str, deque[Interaction]] = {}
        self._clock_last: dict[str, list[int]] = {}
        self._words: deque[tuple[int, int]] = deque()  # (interaction index, word)
        self._bytes: deque[tuple[int, bytes]] = deque()  # (interaction index, chunk)
        self._keyed: dict[tuple[str, str, str], deque[Interaction]] = {}
        self._streams: dict[str, deque[Interaction]] = {}
        for inter in tape:
            if inter.channel == "clock":
                self._clock.setdefault(CLOCK_STREAMS.get(inter.op, inter.op), deque()).append(inter)
            elif inter.channel == "random" and inter.op == "os.urandom":
                self._bytes.append((inter.index, bytes(inter.result)))
            elif inter.channel == "random":
                self._words.extend((inter.index, int(w)) for w in inter.result)
            elif inter.channel == "uuid":
                self._streams.setdefault(inter.op, deque()).append(inter)
            else:
                self._keyed.setdefault(_key(inter.channel, inter.op, inter.args), deque()).append(inter)

    # ----------------------------------------------------------------- divergence

    def _diverge(self, channel: str, op: str, args_node: Any, reason: str, recorded: Interaction | None) -> ReplayDiverged:
        if self.divergence is None:
            near = [describe(i) for i in self.tape if i.channel == channel and i.op == op and i.index not in self.consumed][:3]
            self.divergence = Divergence(
                index=self.pos if self.mode == "strict" else self.requests,
                channel=channel,
                op=op,
                asked=_args_text(args_node),
                recorded=describe(recorded) if recorded is not None else None,
                candidates=near,
                reason=reason,
            )
        return ReplayDiverged(self.divergence)

    def _strict_next(self, channel: str, op: str, args_node: Any) -> Interaction:
        if self.divergence is not None:
            raise ReplayDiverged(self.divergence)
        if self.pos >= len(self.tape):
            raise self._diverge(channel, op, args_node, "the replay asked for more than was recorded", None)
        inter = self.tape[self.pos]
        if (inter.channel, inter.op) != (channel, op):
            raise self._diverge(channel, op, args_node, "a different call than the one recorded", inter)
        if channel not in ("clock",) and repr(inter.args) != repr(args_node):
            raise self._diverge(channel, op, args_node, "the same call with different arguments", inter)
        self.pos += 1
        self.consumed.add(inter.index)
        return inter

    def _synth(self, what: str) -> None:
        self.synthesized[what] = self.synthesized.get(what, 0) + 1

    # ----------------------------------------------------------------- session API

    def clock_ns(self, op: str, real: Callable[[], int]) -> int:
        self.requests += 1
        if self.mode == "strict":
            return int(self._strict_next("clock", op, ["t"]).result)
        stream = CLOCK_STREAMS.get(op, op)
        queue = self._clock.get(stream)
        last = self._clock_last.setdefault(stream, [])
        if queue:
            inter = queue.popleft()
            self.consumed.add(inter.index)
            value = int(inter.result)
        else:
            self._synth(f"clock.{stream}")
            recorded = [int(i.result) for i in self.tape if i.channel == "clock" and CLOCK_STREAMS.get(i.op, i.op) == stream]
            history = last or recorded
            step = (history[-1] - history[0]) // (len(history) - 1) if len(history) > 1 else 1_000
            base = history[-1] if history else 0
            value = base + max(step, 1)
        last.append(value)
        return value

    def mt_words(self, op: str, args: tuple[Any, ...], count: int, real: Callable[[], int]) -> list[int]:
        self.requests += 1
        if self.mode == "strict":
            inter = self._strict_next("random", op, ["t", *args])
            words = [int(w) for w in inter.result]
            if len(words) != count:
                raise self._diverge("random", op, ["t", *args], "a different number of random words", inter)
            return words
        out = []
        for _ in range(count):
            if self._words:
                index, word = self._words.popleft()
                self.consumed.add(index)
                out.append(word)
            else:
                self._synth("random.mt")
                out.append(self._rng.getrandbits(32))
        return out

    def urandom(self, op: str, size: int, real: Callable[[int], bytes]) -> bytes:
        self.requests += 1
        if self.mode == "strict":
            inter = self._strict_next("random", op, ["t", size])
            return bytes(inter.result)
        out = bytearray()
        while len(out) < size and self._bytes:
            index, chunk = self._bytes.popleft()
            take = size - len(out)
            out += chunk[:take]
            if len(chunk) > take:
                self._bytes.appendleft((index, chunk[take:]))
            self.consumed.add(index)
        if len(out) < size:
            self._synth("random.urandom")
            out += self._rng.randbytes(size - len(out))
        return bytes(out)

    def call(self, channel: str, op: str, args: tuple[Any, ...], real: Callable[[], Any]) -> Any:
        self.requests += 1
        args_node = Encoder().encode(args)
        if self.mode == "strict":
            inter = self._strict_next(channel, op, args_node)
        elif channel == "uuid":
            queue = self._streams.get(op)
            if not queue:
                self._synth(op)
                return uuid.UUID(int=self._rng.getrandbits(128), version=1)
            inter = queue.popleft()
            self.consumed.add(inter.index)
        else:
            queue = self._keyed.get(_key(channel, op, args_node))
            if not queue and channel == "env" and self.environ is not None:
                return self._from_environment(op, args, args_node)
            if not queue:
                raise self._diverge(channel, op, args_node, "no recorded answer for this request", None)
            inter = queue.popleft()
            self.consumed.add(inter.index)
        decoder = Decoder(self.resolver)
        if inter.error is not None:
            exc = decoder.decode(inter.error)
            if isinstance(exc, BaseException):
                raise exc
            raise self._diverge(channel, op, args_node, f"the recorded exception cannot be rebuilt ({exc!r})", inter)
        return decoder.decode(inter.result)

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

    # ----------------------------------------------------------------- after the call

    def unconsumed(self) -> list[Interaction]:
        """Recorded interactions the replay never asked for."""
        return [i for i in self.tape if i.index not in self.consumed]

    def finish_strict(self) -> None:
        """In strict mode, a replay that stops asking early has diverged too."""
        if self.mode == "strict" and self.divergence is None and self.pos < len(self.tape):
            inter = self.tape[self.pos]
            self.divergence = Divergence(
                index=self.pos, channel=inter.channel, op=inter.op, asked="(nothing: the call ended)",
                recorded=describe(inter), candidates=[],
                reason=f"the replay ended without asking for {len(self.tape) - self.pos} recorded interaction(s)",
            )
