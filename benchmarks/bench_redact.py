"""Cost of redaction: per value, and per snapshot of a typical web request.

Run: ``python benchmarks/bench_redact.py [--repeat N]``. Prints medians of N runs:

* per value: :meth:`Redactor.text` on short identifiers, ordinary sentences, a URL with a
  query, a JSON body of about 1 KB, bytes of a 2 KB HTTP response, and two values of about
  1.5 MB (a JSON body and a base64 upload), which the per-value scan limit bounds;
* per snapshot: :func:`redact_snapshot` (both passes) over the records of a typical web
  request (a request dict with headers, cookies and a JSON body as the argument; 24
  environment reads, a DB connect and a 10-row select, one HTTP exchange with a 2 KB
  response, an exception outcome with two frames of locals), with the number of leaf
  values it visits and the cost per leaf.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from replay.capture.redact import Redactor
from replay.capture.redact_records import NodeWalker, redact_snapshot
from replay.snapshot.codec import DISPLAY, Encoder

SHORT = ["alice", "GET", "en-US", "application/json", "42", "order-1234", "ok", "/api/v1/orders"]
SENTENCES = ["payment failed: the card was declined by the issuer", "user alice updated her shipping address",
             "timeout after 30 s while waiting for the inventory service"]
URL = "https://api.example.com:443/v1/orders?customer=alice&page=2&sort=created_at&limit=50"
BODY = json.dumps({"order": {"id": "ord_93817", "items": [{"sku": f"SKU-{i:04d}", "qty": i, "price": 9.99 + i}
                                                            for i in range(12)], "note": "leave at the door"},
                   "customer": {"name": "Alice Example", "tier": "gold"}})
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
            + json.dumps({"rows": [{"id": i, "status": "shipped", "carrier": "UPS"} for i in range(40)]}).encode()[:2000])
# Large values: a JSON export with secret-looking keys (so the ``name=value`` reader works on
# every line) and the base64 of a binary upload (one long high-entropy word per line).
BIG_JSON = json.dumps({"rows": [{"id": i, "user": f"user{i}", "session_id": f"s{i:08d}", "note": "leave at the door"}
                                for i in range(16_000)]})
BIG_UPLOAD = base64.encodebytes(random.Random(7).randbytes(1_100_000))


def _request() -> dict[str, Any]:
    return {"method": "POST", "path": "/v1/orders", "query": "page=2",
            "headers": {"Host": "shop.example.com", "User-Agent": "Mozilla/5.0", "Accept": "application/json",
                        "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlMTIzNDU2Nzg",
                        "Cookie": "sessionid=Zk81Qw72Er63Ty54Ab; theme=dark"},
            "body": BODY.encode()}


def snapshot_records() -> dict[str, Any]:
    """Records shaped like a recorded web request (what write_snapshot hands to redaction)."""
    enc = Encoder()
    entry = {"module": "shop.views", "qualname": "create_order", "args": enc.encode([_request()]),
             "kwargs": ["d"], "arg_names": ["request"]}
    tape: list[Any] = [["env", "environ.get", ["t", f"SETTING_{i}"], f"value-{i}", None] for i in range(22)]
    tape += [["env", "environ.get", ["t", "DATABASE_URL"], "postgres://shop:Pa55-w0rd-x@db:5432/shop", None],
             ["env", "environ.get", ["t", "STRIPE_KEY"], "sk_live_4eC39HqLyjWDarjtT1zdp7dc", None],
             ["db", "connect", ["t", "sqlite3", "shop.db", ["d"]], ["t", 0, False, ""], None],
             ["db", "execute", ["t", "shop.db", "SELECT id, sku, qty, price, email FROM items WHERE order_id = ?",
                                ["l", 93817]],
              Encoder().encode({"description": ("id", "sku", "qty", "price", "email"), "rowcount": -1,
                                "rows": [(i, f"SKU-{i:04d}", i, 9.99, f"user{i}@mail.com") for i in range(10)]}),
              None],
             ["http", "request", ["t", "POST", "https://api.stripe.com:443/v1/charges", b"amount=1999&currency=usd",
                                  ["l", ["l", "Authorization", "Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc"],
                                   ["l", "Content-Length", "24"]]], RESPONSE, None]]
    locals_node = ["d", "request", Encoder(DISPLAY).encode(_request()), "total", 129.87, "card_last4", "4242",
                   "customer", Encoder(DISPLAY).encode({"name": "Alice", "email": "alice@mail.com"})]
    outcome = {"kind": "exception", "type": "shop.errors:PaymentError", "message": "card declined for alice",
               "value": ["exc", "shop.errors:PaymentError", ["card declined for alice"], "card declined", []],
               "traceback": [{"file": "/srv/shop/views.py", "path": "shop/views.py", "line": 40,
                              "function": "create_order", "code": "charge(order)", "locals": locals_node},
                             {"file": "/srv/shop/pay.py", "path": "shop/pay.py", "line": 12, "function": "charge",
                              "code": "raise PaymentError(msg)", "locals": ["d", "msg", "card declined"]}],
               "place": ["shop/pay.py", "charge"]}
    environment = {"environ": {f"SETTING_{i}": f"value-{i}" for i in range(22)}, "argv": ["gunicorn", "shop.wsgi"],
                   "cwd": "/srv/shop"}
    return {"entry": entry, "tape": tape, "outcome": outcome, "environment": environment, "code": []}


def _leaves(node: Any) -> int:
    if isinstance(node, dict):
        return sum(_leaves(v) for v in node.values())
    if isinstance(node, list | tuple):
        return sum(_leaves(v) for v in node)
    return 1 if isinstance(node, str | bytes | bytearray) else 0


def _median_us(fn: Callable[[], Any], inner: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - t0) / inner * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    r = Redactor()
    cases: list[tuple[str, Callable[[], Any], int]] = [
        ("short identifier (8 values)", lambda: [r.text(s) for s in SHORT], 2000),
        ("sentence (~50 chars)", lambda: [r.text(s) for s in SENTENCES], 2000),
        ("URL with a query (85 chars)", lambda: r.text(URL), 2000),
        (f"JSON body ({len(BODY)} chars)", lambda: r.text(BODY), 300),
        (f"HTTP response bytes ({len(RESPONSE)} B)", lambda: r.data(RESPONSE), 300),
        # a fresh redactor each: the secrets one run remembers would be hunted in the next
        (f"large JSON body ({len(BIG_JSON) / 1e6:.1f} MB)", lambda: Redactor().text(BIG_JSON), 1),
        (f"large base64 upload bytes ({len(BIG_UPLOAD) / 1e6:.1f} MB)", lambda: Redactor().data(BIG_UPLOAD), 1),
    ]
    print(f"{'value':42} {'median us/call':>15} {'us/value':>10}")
    for name, fn, inner in cases:
        us = _median_us(fn, inner, args.repeat)
        per = us / (len(SHORT) if name.startswith("short") else len(SENTENCES) if name.startswith("sentence") else 1)
        print(f"{name:42} {us:15.2f} {per:10.2f}")
    records = snapshot_records()
    leaves = _leaves(records)

    def whole() -> Any:
        return redact_snapshot(**records)

    us = _median_us(whole, 30, args.repeat)
    print(f"\nsnapshot of a typical web request: {leaves} leaf values, {len(records['tape'])} interactions")
    print(f"redact_snapshot (two passes): median {us / 1000:.2f} ms per snapshot, {us / leaves:.2f} us per leaf value")
    walker = NodeWalker(Redactor())
    node = records["entry"]["args"]
    us_node = _median_us(lambda: walker.node(node), 300, args.repeat)
    print(f"entry argument (request dict, {_leaves(node)} leaves): median {us_node:.1f} us")


if __name__ == "__main__":
    main()
