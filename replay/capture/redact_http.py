"""Redacting HTTP bodies and raw responses without breaking what replay serves.

A raw HTTP/1.x response whose headers or body change is re-framed: de-chunked, its body
decoded (gzip, deflate), redacted, encoded again, ``Content-Length`` set, so the replayed
client parses it; a body in an encoding that cannot be decoded here is replaced by a token
(fail closed). Used by :mod:`replay.capture.redact_records`.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, Final

_MAX_BODY: Final = 64 << 20  # decoded response body scanned at most (larger: replaced whole)


def _items(node: Any) -> list[Any] | None:
    if type(node) in (list, tuple) and node[:1] in (["l"], ["t"], ("l",), ("t",)):
        return list(node[1:])
    return None


def set_length(headers: Any, size: int | str) -> Any:
    out = []
    for h in headers:
        if type(h) in (list, tuple) and len(h) == 3 and type(h[1]) is str and h[1].lower() == "content-length":
            h = [h[0], h[1], str(size)]
        out.append(h)
    return out


def _decode_body(body: bytes, encoding: str) -> bytes | None:
    if not encoding or encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        d = zlib.decompressobj(47 if encoding != "deflate" else 15)
        try:
            out = d.decompress(body, _MAX_BODY)
        except zlib.error:
            if encoding != "deflate":
                return None
            try:
                out = zlib.decompressobj(-15).decompress(body, _MAX_BODY)
            except zlib.error:
                return None
        return out if len(out) < _MAX_BODY else None
    return None


def _encode_body(body: bytes, encoding: str) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return gzip.compress(body, mtime=0)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


def _redact_body(w: Any, body: bytes, encoding: str) -> bytes:
    """A response body redacted through its content encoding (an undecodable one: replaced)."""
    decoded = _decode_body(body, encoding.strip().lower())
    if decoded is None:
        w.r.hits["undecodable_body"] += 1
        return _encode_body(w.r.token(body, "undecodable_body").encode(), "identity")
    red = w.r.data(decoded)
    return body if red == decoded else _encode_body(red, encoding.strip().lower())


def http_response(w: Any, raw: bytes) -> bytes:
    """Raw HTTP/1.x response bytes with secrets replaced, re-framed when anything changed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if w.r.learning:
        body = b""  # learning needs the headers only
    if not sep or not head.startswith(b"HTTP/"):
        return w.r.data(raw)
    lines = head.decode("latin-1").split("\r\n")
    headers = [line.partition(":") for line in lines[1:]]
    new_lines = [w.r.text(lines[0])]
    encoding, chunked, changed = "", False, False
    for name, colon, value in headers:
        low = name.strip().lower()
        if low == "content-encoding":
            encoding = value.strip()
        if low == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        new_value = w.r.text(value.strip(), w.r.name_rule(name.strip())) if colon else value
        changed |= new_value != value.strip()
        new_lines.append(f"{name}{colon} {new_value}" if colon else name)
    payload = _dechunk(body) if chunked else body
    new_body = _redact_body(w, payload, encoding)
    if not changed and new_body == payload:
        return raw
    out = [line for line in new_lines if line.partition(":")[0].strip().lower()
           not in ("content-length", "transfer-encoding")]
    out.append(f"Content-Length: {len(new_body)}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + new_body


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        try:
            size = int(data[pos:end].split(b";")[0], 16)
        except ValueError:
            return bytes(out) + data[pos:]
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 4 + size


def httpx_answer(w: Any, result: Any) -> Any:
    """``(tag, status, reason, version, headers, body, chunk sizes)`` of an httpx response."""
    headers = w.node(result[4])
    encoding = next((h[2] for h in _items(result[4]) or []
                     if _items(h) and len(h) == 3 and str(h[1]).lower() == "content-encoding"), "")
    body = bytes(result[5])
    new_body = _redact_body(w, body, str(encoding))
    sizes = result[6] if new_body == body else ["l", len(new_body)]
    if new_body != body:
        headers = set_length(headers, len(new_body))
    return [result[0], result[1], result[2], result[3], headers, new_body, sizes, *result[7:]]


