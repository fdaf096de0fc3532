"""Applying redaction to a snapshot's records (entry, tape, outcome, environment, code, trace).

Walks codec nodes (:mod:`replay.snapshot.codec`) and plain msgpack records with the names
that bind each value: dict keys, object fields, exception attributes, argument names,
``[name, value]`` pairs (HTTP headers, form fields), environment variable names of ``env``
interactions, DB column names of result rows and of SQL parameters. Containers keep their
shape (node ids of back-references stay valid); leaves go through
:class:`~replay.capture.redact.Redactor`.

:func:`redact_snapshot` runs two passes: the first only remembers values bound to secret
names, so the second replaces the same text wherever it occurs, in any record. HTTP
request bodies that change get a matching ``Content-Length``; raw HTTP responses whose
headers or body change are re-framed (de-chunked, content decoded, redacted, re-encoded,
``Content-Length`` set) so the replayed client parses them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Final

import msgpack

from replay.capture.redact import POLICY_VERSION, UNSCANNED, Policy, Redactor
from replay.capture.redact_http import http_response, httpx_answer, set_length
from replay.capture.redact_rules import CODE, DISPLAY, NUMERIC, SQL, VALUE

_LEAF_TAGS: Final = frozenset({"@", "+", "i", "dt", "date", "time", "td", "dec", "uuid", "c", "range", "type",
                               "...", "?", "tz", "zi"})
_SQL_PARAM: Final = re.compile(r"\?|%s|:\w+|\$\d+")
_SQL_NAMED: Final = re.compile(r"([A-Za-z_][\w.]*)\s*(?:=|<>|!=|<=|>=|<|>|\bLIKE\b|\bIN\b)\s*\(?\s*(?:\?|%s|:\w+|\$\d+)", re.I)
_SQL_INSERT: Final = re.compile(r"(?is)\bINSERT\b.*?\(([^()]*)\)\s*VALUES\s*\(([^()]*)\)")


class NodeWalker:
    """Redacts codec nodes and plain records with one :class:`Redactor`."""

    def __init__(self, redactor: Redactor):
        self.r = redactor
        # values the recorded code received (arguments, tape answers) whose tail beyond the
        # scan limit was replaced by a token: replay cannot give the code what it read there
        self.cut_inputs = 0

    # ----------------------------------------------------------------- codec nodes

    def node(self, n: Any, rule: str | None = None, mode: str = VALUE) -> Any:  # noqa: C901 - the node language
        r = self.r
        t = type(n)
        if t is str:
            return r.text(n, rule, mode=mode)
        if t is bytes or t is bytearray:
            return r.data(n, rule, mode=mode)
        if t is int:
            return r.integer(n, rule) if rule in NUMERIC else n
        if t is not list and t is not tuple:
            return n
        if r.learning:
            rule = None  # pass 1 remembers values bound to a name directly, not whole containers under one
        if not n or type(n[0]) is not str:
            return [self.node(x, rule, mode) for x in n]
        tag = n[0]
        if tag in ("l", "t"):
            if len(n) == 3 and type(n[1]) is str:  # a [name, value] pair: headers, form fields
                pair = r.name_rule(n[1])
                if pair is not None:
                    return [tag, n[1], self.node(n[2], pair, mode)]
            return [tag, *[self.node(x, rule, mode) for x in n[1:]]]
        if tag in ("s", "f", "nt", "enum"):
            start = 1 if tag in ("s", "f") else 2
            return [*n[:start], *[self.node(x, rule, mode) for x in n[start:]]]
        if tag == "d":
            return ["d", *self._fields(n[1:], rule, mode, keys_are_nodes=True)]
        if tag in ("obj", "dc"):
            return [tag, n[1], *self._fields(n[2:], rule, mode, keys_are_nodes=False)]
        if tag == "exc":
            return ["exc", n[1], [self.node(a, rule, mode) for a in n[2]], r.text(n[3], rule, mode=mode),
                    self._fields(n[4], rule, mode, keys_are_nodes=False)]
        if tag == "S":
            cut = r.text(n[1], rule, mode=mode)
            return ["S", r.cut_tail(cut) if rule is None else cut, *n[2:]]
        if tag in ("B", "su", "ba"):
            return [tag, r.data(n[1], rule, mode=mode), *n[2:]]
        if tag == "path":
            return ["path", n[1], r.text(n[2], rule, mode=mode)]
        if tag in _LEAF_TAGS:
            return n
        return [tag, *[self.node(x, rule, mode) for x in n[1:]]]  # unknown tag: scan everything

    def _fields(self, items: Any, rule: str | None, mode: str, *, keys_are_nodes: bool) -> list[Any]:
        out: list[Any] = []
        i = 0
        while i < len(items):
            key = items[i]
            if i + 1 >= len(items) or (type(key) in (list, tuple) and key[:1] == ["+"]):
                out.append(key)  # the "+ n more" marker of a cut container
                i += 1
                continue
            name = key if type(key) is str else (key[1] if type(key) in (list, tuple) and key[:1] == ["S"] else None)
            bound = self.r.name_rule(name) or rule
            out.append(self.node(key, rule, mode) if keys_are_nodes else key)
            out.append(self.node(items[i + 1], bound, mode))
            i += 2
        return out

    # ----------------------------------------------------------------- plain records

    def plain(self, v: Any, rule: str | None = None, mode: str = VALUE) -> Any:
        """A msgpack record that is not a codec node (environment, header)."""
        t = type(v)
        if t is str:
            return self.r.text(v, rule, mode=mode)
        if t is bytes or t is bytearray:
            return self.r.data(v, rule, mode=mode)
        if t is int:
            return self.r.integer(v, rule) if rule in NUMERIC else v
        if self.r.learning:
            rule = None
        if t is dict:
            return {k: self.plain(x, self.r.name_rule(k) or rule, mode) for k, x in v.items()}
        if t is list or t is tuple:
            if len(v) == 2 and type(v[0]) is str and self.r.name_rule(v[0]):
                return [v[0], self.plain(v[1], self.r.name_rule(v[0]), mode)]
            return [self.plain(x, rule, mode) for x in v]
        return v

    # ----------------------------------------------------------------- records

    def entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        before = self.r.hits[UNSCANNED]
        out = self._entry(entry)
        self.cut_inputs += self.r.hits[UNSCANNED] - before
        return out

    def _entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        out = dict(entry)
        args: Any = entry.get("args")
        names = entry.get("arg_names") or []
        if isinstance(args, list | tuple) and args[:1] in (["l"], ("l",)):
            out["args"] = ["l", *[self.node(a, self.r.name_rule(names[i]) if i < len(names) else None)
                                  for i, a in enumerate(args[1:])]]
        elif args is not None:
            out["args"] = self.node(args)
        if entry.get("kwargs") is not None:
            out["kwargs"] = self.node(entry["kwargs"])
        return out

    def outcome(self, outcome: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in outcome.items():
            if key == "value":
                out[key] = self.node(value)
            elif key == "display":
                out[key] = self.node(value, mode=DISPLAY)
            elif key == "traceback" and type(value) is list:
                out[key] = [self._frame(f) for f in value]
            elif key in ("kind", "type", "place", "lossy", "duration_ns"):
                out[key] = value
            else:
                out[key] = self.plain(value)
        return out

    def _frame(self, frame: Any) -> Any:
        if type(frame) is not dict:
            return self.plain(frame)
        out = dict(frame)
        if frame.get("locals") is not None:
            out["locals"] = self.node(frame["locals"], mode=DISPLAY)
        if type(frame.get("code")) is str:
            out["code"] = self.r.text(frame["code"], mode=CODE)
        return out

    def code(self, record: Any) -> Any:
        if type(record) is dict and type(record.get("source")) is str:
            source = self.r.text(record["source"], mode=CODE)
            if source != record["source"]:
                return {**record, "source": source, "redacted": True}
        return record

    def tape(self, record: Any) -> Any:
        """One tape record ``(channel, op, args, result, error, ...)``."""
        if type(record) not in (list, tuple) or len(record) < 5:
            return self.plain(record)
        channel, op, args, result, error = record[:5]
        before = self.r.hits[UNSCANNED]
        adapter = _ADAPTERS.get(channel)
        if adapter is not None:
            args, result = adapter(self, op, args, result)
        else:
            args, result = self.node(args), self.node(result)
        error = self.node(error)
        if self.r.hits[UNSCANNED] != before and (_has_unscanned(result) or _has_unscanned(error)):
            self.cut_inputs += 1  # an answer was cut (a request cut still matches: see redact._bounded)
        return [channel, op, args, result, error, *record[5:]]


_UNSCANNED_MARK: Final = f"~redacted~{UNSCANNED}"
_UNSCANNED_MARK_BYTES: Final = _UNSCANNED_MARK.encode()


def _has_unscanned(node: Any) -> bool:
    """Whether a redacted node holds an unscanned tail's token (in any string or bytes)."""
    kind = type(node)
    if kind is str:
        return _UNSCANNED_MARK in node
    if kind is bytes:
        return _UNSCANNED_MARK_BYTES in node
    if kind in (list, tuple):
        return any(_has_unscanned(item) for item in node)
    if kind is dict:
        return any(_has_unscanned(k) or _has_unscanned(v) for k, v in node.items())
    return False


# ------------------------------------------------------------------------------ channel adapters


def _items(node: Any) -> list[Any] | None:
    """The items of a list or tuple node, or None."""
    if type(node) in (list, tuple) and node[:1] in (["l"], ["t"], ("l",), ("t",)):
        return list(node[1:])
    return None


def _env(w: NodeWalker, op: str, args: Any, result: Any) -> tuple[Any, Any]:
    items = _items(args)
    if op == "environ.get" and items and type(items[0]) is str:
        return args, w.node(result, w.r.name_rule(items[0]))
    return w.node(args), w.node(result)


def sql_parameter_names(sql: str) -> list[str | None]:
    """The column each positional placeholder of ``sql`` binds (None where unknown).

    ``INSERT INTO t (a, b) VALUES (?, ?)`` gives ``["a", "b"]``; ``UPDATE t SET a = ?
    WHERE b = ?`` gives ``["a", "b"]``. A heuristic: values are still scanned.
    """
    names: list[str | None] = []
    insert = _SQL_INSERT.search(sql)
    if insert:
        cols = [c.strip().strip('`"[]') for c in insert.group(1).split(",")]
        vals = [v.strip() for v in insert.group(2).split(",")]
        names = [cols[i] if i < len(cols) else None for i, v in enumerate(vals) if _SQL_PARAM.fullmatch(v)]
    by_pos = {m.end(): m.group(1).rpartition(".")[2] for m in _SQL_NAMED.finditer(sql)}
    rest = sql[insert.end():] if insert else sql
    offset = insert.end() if insert else 0
    for m in _SQL_PARAM.finditer(rest):
        names.append(by_pos.get(offset + m.end()))
    return names


def _params(w: NodeWalker, params: Any, names: list[str | None]) -> Any:
    items = _items(params)
    if items is None:
        return w.node(params)  # a dict of named parameters: its keys are the names
    tag = params[0]
    return [tag, *[w.node(v, w.r.name_rule(names[i]) if i < len(names) else None) for i, v in enumerate(items)]]


def _db(w: NodeWalker, op: str, args: Any, result: Any) -> tuple[Any, Any]:
    items = _items(args)
    if op in ("execute", "executemany") and items and len(items) >= 3 and type(items[1]) is str:
        db, sql, params = items[0], items[1], items[2]
        names = sql_parameter_names(sql)
        if op == "executemany" and _items(params) is not None:
            params = [params[0], *[_params(w, p, names) for p in params[1:]]]
        else:
            params = _params(w, params, names)
        args = [args[0], w.r.text(db, mode=SQL), w.r.text(sql, mode=SQL), params, *[w.node(x) for x in items[3:]]]
    elif op == "executescript" and items and len(items) >= 2 and type(items[1]) is str:
        args = [args[0], w.r.text(items[0], mode=SQL), w.r.text(items[1], mode=SQL)]
    else:
        args = w.node(args)
    return args, _db_answer(w, result)


def _db_answer(w: NodeWalker, result: Any) -> Any:
    if type(result) not in (list, tuple) or result[:1] not in (["d"], ("d",)):
        return w.node(result)
    fields = dict(zip(result[1::2], result[2::2], strict=False))
    columns: list[str | None] = []
    for col in _items(fields.get("description")) or []:
        if type(col) is str:
            columns.append(col)
        else:
            inner = _items(col)
            columns.append(inner[0] if inner and type(inner[0]) is str else None)
    out: list[Any] = ["d"]
    for key, value in fields.items():
        if key == "rows" and _items(value) is not None:
            rows = [value[0]]
            for row in value[1:]:
                cells = _items(row)
                if cells is None:
                    rows.append(w.node(row))
                    continue
                rows.append([row[0], *[w.node(c, w.r.name_rule(columns[i]) if i < len(columns) else None)
                                       for i, c in enumerate(cells)]])
            value = rows
        elif key != "description":
            value = w.node(value, w.r.name_rule(key))
        out += [key, value]
    return out


def _http(w: NodeWalker, op: str, args: Any, result: Any) -> tuple[Any, Any]:
    items = _items(args)
    if op != "request" or not items or len(items) < 4:
        return w.node(args), w.node(result)
    method, url, body, headers = items[:4]
    new_body = w.r.data(body) if type(body) in (bytes, bytearray) else w.node(body)
    new_headers = w.node(headers)
    if new_body != body and type(new_body) is bytes:  # replay sends the real or the token's length
        new_headers = set_length(new_headers, w.r.token(str(len(body)), "content_length"))
    args = [args[0], method, w.r.text(url) if type(url) is str else w.node(url), new_body, new_headers,
            *[w.node(x) for x in items[4:]]]
    if type(result) in (bytes, bytearray):
        result = http_response(w, bytes(result))
    elif _items(result) is not None and len(result) >= 6:
        result = httpx_answer(w, result)
    else:
        result = w.node(result)
    return args, result


def _exempt(w: NodeWalker, op: str, args: Any, result: Any) -> tuple[Any, Any]:
    """Clock readings, random words and bytes, uuids: raw numbers, never text (and
    redacting the generator's output would change every value drawn from it on replay)."""
    return args, result


_ADAPTERS: Final[dict[str, Callable[[NodeWalker, str, Any, Any], tuple[Any, Any]]]] = {
    "env": _env, "db": _db, "http": _http, "clock": _exempt, "random": _exempt, "uuid": _exempt,
}


# ------------------------------------------------------------------------------ whole snapshots


def manifest(r: Redactor) -> dict[str, Any]:
    """The header's ``redaction`` map: policy, hit counts per rule, never any text."""
    return {
        "version": POLICY_VERSION,
        "enabled": r.policy.enabled,
        "policy": r.policy.digest(),
        "strict": r.policy.strict,
        "scan_limit": r.policy.scan_limit,
        "hits": {k: v for k, v in sorted(r.hits.items()) if v > 0},
        "errors": r.errors,
    }


def literal_checker(code: list[dict[str, Any]]) -> Callable[[str], bool]:
    """True for text found in the application's embedded sources (not a secret of this run)."""
    sources = [c["source"] for c in code if isinstance(c, dict) and isinstance(c.get("source"), str)]
    return lambda text: any(text in s for s in sources)


_ENV_KEPT: Final = frozenset({"python", "implementation", "executable", "platform", "machine", "byteorder",
                              "pid", "project_root", "extra_sys_path", "libraries", "timezone", "hash_seed",
                              "environ_withheld"})


@dataclasses.dataclass
class Redacted:
    """A snapshot's records after redaction, and the header's manifest."""

    entry: dict[str, Any]
    tape: list[Any]
    outcome: dict[str, Any]
    environment: dict[str, Any]
    code: list[Any]
    manifest: dict[str, Any]
    walker: NodeWalker


def redact_snapshot(*, entry: dict[str, Any], tape: list[Any], outcome: dict[str, Any],
                    environment: dict[str, Any], code: list[Any], policy: Policy | None = None) -> Redacted:
    """Redact every record of a snapshot (fail closed: an error here means no snapshot).

    Args:
        entry, tape, outcome, environment, code: The records as the recorder built them
            (not modified; new records are returned).
        policy: The policy to apply; default the process's (:func:`redact.current_policy`).

    Returns:
        The redacted records and the manifest for the header's ``redaction`` key.

    Raises:
        Exception: any failure of the walk itself; the caller must then write nothing.
    """
    r = Redactor(policy, allow_text=literal_checker(code))
    w = NodeWalker(r)
    if not r.policy.enabled:
        return Redacted(entry, list(tape), outcome, environment, code, manifest(r), w)
    r.learning = True  # pass 1: remember what secret names hold, anywhere in the snapshot
    w.entry(entry)
    for record in tape:
        w.tape(record)
    w.outcome(outcome)
    w.plain(environment.get("environ"))
    r.learning = False
    w.cut_inputs = 0  # counted in the pass that writes
    red_entry = w.entry(entry)
    red_tape = [w.tape(record) for record in tape]
    red_outcome = w.outcome(outcome)
    red_env = {k: v if k in _ENV_KEPT else w.plain(v, r.name_rule(k)) for k, v in environment.items()}
    red_code = [w.code(c) for c in code]
    man = manifest(r)
    if w.cut_inputs:
        # what the call received past the scan limit is a token on replay: code that reads
        # it does not reproduce (code that reads only its length, or nothing, does)
        man["cut_inputs"] = w.cut_inputs
    return Redacted(red_entry, red_tape, red_outcome, red_env, red_code, man, w)


def trace_record(w: NodeWalker, section: int, record: Any) -> Any:
    """A record of an embedded trace (flight recorder) with its values redacted.

    Steps records (section 7) hold the changed locals as packed node arrays and a packed
    keyframe; sources (section 12) are source text. Other sections hold no values.
    """
    from replay.snapshot.format import Section

    if section == Section.TRACE_SOURCES and type(record) in (list, tuple) and len(record) == 2:
        return [record[0], w.r.text(record[1], mode=CODE) if type(record[1]) is str else record[1]]
    if section != Section.TRACE_STEPS or type(record) is not dict:
        return record
    out = dict(record)
    names = record.get("c_name") or []
    if type(record.get("c_nodes")) is bytes:
        nodes = msgpack.unpackb(record["c_nodes"], raw=False, strict_map_key=False)
        nodes = [None if n is None else w.node(n, w.r.name_rule(names[i]) if i < len(names) else None, DISPLAY)
                 for i, n in enumerate(nodes)]
        out["c_nodes"] = msgpack.packb(nodes, use_bin_type=True)
    if type(record.get("changes")) is list:  # trace format 1
        out["changes"] = [[*c[:3], w.node(c[3], w.r.name_rule(c[2]), DISPLAY)] if len(c) > 3 else c
                          for c in record["changes"]]
    keyframe = record.get("keyframe")
    if type(keyframe) is bytes:
        out["keyframe"] = msgpack.packb(_keyframe(w, msgpack.unpackb(keyframe, raw=False, strict_map_key=False)),
                                        use_bin_type=True)
    elif type(keyframe) is list:
        out["keyframe"] = _keyframe(w, keyframe)
    return out


def _keyframe(w: NodeWalker, frames: Any) -> Any:
    out = []
    for frame in frames:
        if type(frame) is list and len(frame) >= 3 and type(frame[2]) is list:
            frame = [frame[0], frame[1], w._fields(frame[2], None, DISPLAY, keys_are_nodes=False), *frame[3:]]
        out.append(frame)
    return out


def embed_trace(writer: Any, path: str, w: NodeWalker) -> dict[str, Any]:
    """Copy a trace file's records into ``writer`` with their values redacted.

    Frames of sections without values are copied compressed as they are; steps and sources
    are decoded, redacted and re-encoded (the flight recorder's cost, paid at write time).

    Returns:
        The trace's header (without ``kind``), for the snapshot header's ``trace`` key.
    """
    from replay.snapshot.format import Section
    from replay.snapshot.reader import SnapshotFile

    with SnapshotFile(path) as f:
        for number, frame in enumerate(f.frames):
            if frame.section not in (Section.TRACE_STEPS, Section.TRACE_SOURCES) or not w.r.policy.enabled:
                writer.write_frame(frame.section, frame.records, f.raw_payload(number))
        for section in (Section.TRACE_STEPS, Section.TRACE_SOURCES):
            if w.r.policy.enabled:
                writer.write_section(section, (trace_record(w, section, rec) for rec in f.iter_records(section)))
        header = dict(f.header)
    header.pop("kind", None)
    return header


def redact_recording(entry: dict[str, Any], tape: list[Any], outcome: dict[str, Any],
                     environment: dict[str, Any], code: list[Any]) -> Redacted:
    """:func:`redact_snapshot` for the recorder, counting failures (then nothing is written)."""
    entry = dict(entry)
    if "arg_names" not in entry:
        entry["arg_names"] = entry_argument_names(entry)
    try:
        return redact_snapshot(entry=entry, tape=tape, outcome=outcome, environment=environment, code=code)
    except Exception:
        from replay.capture.recorder import count

        count("redaction_errors")
        raise


def entry_argument_names(entry: dict[str, Any]) -> list[str | None] | None:
    """Parameter names of the entry point's positional arguments, from its loaded function."""
    import sys

    from replay.capture.redact import argument_names

    try:
        obj: Any = sys.modules.get(entry["module"])
        for part in str(entry["qualname"]).split("."):
            obj = getattr(obj, part)
        obj = getattr(obj, "__replay_entry__", obj)
        obj = getattr(obj, "__func__", obj)
        code = getattr(obj, "__wrapped__", obj).__code__
        args: Any = entry.get("args")
        count = len(args) - 1 if isinstance(args, list | tuple) else 0
        return argument_names(code, count)
    except Exception:  # noqa: BLE001 - names are a hint: values are still scanned
        return None
