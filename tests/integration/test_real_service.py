"""A small but realistic service, recorded for real and replayed against itself and changed copies.

The ``shop`` package places an order: it reads a JSON config file, asks a price service for
the item's price over HTTP with ``requests`` (http.client/urllib3 underneath), reads and
writes the orders with ``sqlite-utils`` (sqlite3 underneath) on a database file, stamps the
order with ``uuid4`` and ``datetime.now``, computes a checksum in a subprocess and POSTs a
notification. Everything real: a loopback HTTP server, a sqlite file, a child interpreter.

It is recorded in a fresh process; then the server is stopped and the database and config
deleted, and every replay must reproduce without them (the server's hit list does not move,
the database is not recreated). Candidates: the same steps reordered (UNCHANGED), a new
price lookup (DIVERGED with a report naming the request and the code that made it), a
different notification body (CHANGED through one changed http effect), and a fix for a
recorded failure (FIXED).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify
from tests.integration.service_server import price_server

pytestmark = pytest.mark.integration

CONFIG = {"currency": "EUR", "tax_percent": 20}

SHOP_CONFIG = """
import json


def load(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
"""

SHOP_PRICING = """
import requests


def fetch_price(service_url, item):
    response = requests.get(service_url + "/price", params={"item": item}, timeout=5)
    response.raise_for_status()
    return response.json()["price_cents"]
"""

SHOP_STORE = """
import sqlite_utils


def open_db(path):
    return sqlite_utils.Database(path)


def orders_for(db, item):
    return list(db["orders"].rows_where("item = ?", [item], order_by="created"))


def save(db, order):
    db["orders"].insert(order, pk="id")
"""

SHOP_CHECKSUM = """
import json
import subprocess
import sys

SCRIPT = "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])"


def of(order):
    payload = json.dumps(order, sort_keys=True)
    done = subprocess.run([sys.executable, "-c", SCRIPT], input=payload, capture_output=True, text=True, check=True)
    return done.stdout.strip()
"""

SHOP_NOTIFY = """
import requests


def send(service_url, order, currency):
    body = {"order": order["id"], "item": order["item"], "amount": f"{order['amount_cents'] / 100:.2f} {currency}"}
    response = requests.post(service_url + "/notify", json=body, timeout=5)
    return response.status_code
"""

SHOP_ORDERS = """
import datetime
import uuid

import replay

from shop import checksum, config, notify, pricing, store


@replay.capture(on="always")
def place_order(service_url, db_path, config_path, item, quantity):
    conf = config.load(config_path)
    price = pricing.fetch_price(service_url, item)
    db = store.open_db(db_path)
    previous = store.orders_for(db, item)
    amount = price * quantity * (100 + conf["tax_percent"]) // 100
    order = {
        "id": str(uuid.uuid4()),
        "item": item,
        "quantity": quantity,
        "amount_cents": amount,
        "created": datetime.datetime.now().isoformat(),
        "previous_orders": len(previous),
    }
    store.save(db, order)
    order["checksum"] = checksum.of(order)
    order["notified"] = notify.send(service_url, order, conf["currency"])
    return order
"""

# (a) the config read, the price lookup and the database query in the opposite order
REORDERED = SHOP_ORDERS.replace(
    "    conf = config.load(config_path)\n"
    "    price = pricing.fetch_price(service_url, item)\n"
    "    db = store.open_db(db_path)\n"
    "    previous = store.orders_for(db, item)\n",
    "    db = store.open_db(db_path)\n"
    "    previous = store.orders_for(db, item)\n"
    "    price = pricing.fetch_price(service_url, item)\n"
    "    conf = config.load(config_path)\n")

# (b) gift wrapping: a price lookup the recording never made
GIFTWRAP = SHOP_ORDERS.replace(
    "    price = pricing.fetch_price(service_url, item)\n",
    "    price = pricing.fetch_price(service_url, item)\n"
    "    price += pricing.fetch_price(service_url, \"giftwrap\")\n")

# (c) the notification carries the amount in cents instead of a formatted amount
CENTS_NOTIFY = SHOP_NOTIFY.replace(
    "\"amount\": f\"{order['amount_cents'] / 100:.2f} {currency}\"",
    "\"amount_cents\": order[\"amount_cents\"], \"currency\": currency")

# (d) the fix for a price service failing: the order is refused, nothing else is done
HANDLES_500 = SHOP_ORDERS.replace(
    "import replay\n",
    "import replay\nimport requests\n").replace(
    "    price = pricing.fetch_price(service_url, item)\n",
    "    try:\n"
    "        price = pricing.fetch_price(service_url, item)\n"
    "    except requests.HTTPError as exc:\n"
    "        return {\"item\": item, \"refused\": \"price unavailable\", \"status\": exc.response.status_code}\n")


@pytest.fixture
def shop(app, tmp_path):
    """The app with the ``shop`` package, its config and database (outside the app), and the server."""
    app.write("shop/__init__.py", "")
    for name, source in [("config", SHOP_CONFIG), ("pricing", SHOP_PRICING), ("store", SHOP_STORE),
                         ("checksum", SHOP_CHECKSUM), ("notify", SHOP_NOTIFY), ("orders", SHOP_ORDERS)]:
        app.write(f"shop/{name}.py", source)
    world = tmp_path / "world"
    world.mkdir()
    config = world / "shop.json"
    config.write_text(json.dumps(CONFIG))
    db_path = world / "orders.db"
    db = sqlite_utils.Database(db_path)
    db["orders"].insert({"id": "earlier-1", "item": "widget", "quantity": 1, "amount_cents": 1500,
                         "created": "2026-01-02T03:04:05", "previous_orders": 0}, pk="id")
    db.close()
    server = price_server()
    app.server, app.config, app.db_path = server, config, db_path
    yield app
    with contextlib.suppress(OSError):
        server.stop()


def _record(shop: Any, item: str, quantity: int) -> Path:
    return shop.record(f"from shop import orders\n"
                       f"try:\n"
                       f"    orders.place_order({shop.server.url!r}, {str(shop.db_path)!r}, {str(shop.config)!r}, "
                       f"{item!r}, {quantity})\n"
                       f"except Exception as exc:\n"
                       f"    print('raised', type(exc).__name__)\n")


def _take_the_world_away(shop: Any) -> list[tuple[str, str]]:
    """Stop the server, delete the config and the database; returns the server's hits."""
    hits = list(shop.server.hits)
    shop.server.stop()
    shop.config.unlink()
    shop.db_path.unlink()
    return hits


def _assert_untouched(shop: Any, hits: list[tuple[str, str]]) -> None:
    assert shop.server.hits == hits
    assert not shop.db_path.exists() and not shop.config.exists()
    assert list(shop.db_path.parent.iterdir()) == []


def _rows(db_path: Path) -> list[dict[str, Any]]:
    return list(sqlite_utils.Database(db_path)["orders"].rows_where(order_by="created"))


def test_order_service_reproduces_and_candidates_are_judged(shop):
    snap = _record(shop, "widget", 2)

    # what production did, for real
    with open_snapshot(snap) as s:
        order = decode(s.outcome["value"])
        channels = dict(s.channel_counts())
        tape = list(s.tape)
    assert order["item"] == "widget" and order["quantity"] == 2
    assert order["amount_cents"] == 1250 * 2 * 120 // 100 == 3000
    assert order["previous_orders"] == 1 and order["notified"] == 201
    assert len(order["id"]) == 36 and len(order["checksum"]) == 16
    assert [r["id"] for r in _rows(shop.db_path)] == ["earlier-1", order["id"]]
    assert [(m, p) for m, p in shop.server.hits] == [("GET", "/price?item=widget"), ("POST", "/notify")]
    assert json.loads(shop.server.bodies[0]) == {"order": order["id"], "item": "widget", "amount": "30.00 EUR"}
    for channel in ("file", "http", "db", "random", "clock", "subprocess"):
        assert channels.get(channel, 0) >= 1, channels
    assert channels["http"] == 2
    # the request each library made reached its channel (requests -> http.client, sqlite-utils -> sqlite3)
    http_requests = [decode(i.args)[:2] for i in tape if i.channel == "http"]
    assert http_requests == [("GET", shop.server.url + "/price?item=widget"), ("POST", shop.server.url + "/notify")]
    sql = [decode(i.args)[1] for i in tape if i.channel == "db" and i.op == "execute"]
    assert any(q.startswith("INSERT INTO [orders]") or q.startswith('INSERT INTO "orders"') for q in sql), sql
    assert any("item = ?" in q for q in sql), sql

    hits = _take_the_world_away(shop)

    # the same code: reproduced from the tape alone
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert result.effects == []
    _assert_untouched(shop, hits)

    # (a) reordered: every answer still goes to the request that asked for it
    reordered = shop.candidate("reordered", {"shop/orders.py": REORDERED})
    result = verify(snap, [str(reordered)])
    assert result.verdict is Verdict.UNCHANGED, (result.reason, result.divergence)
    assert result.changed_files == ["shop/orders.py"]
    assert result.effects == [] and result.unconsumed == [] and result.divergence is None
    _assert_untouched(shop, hits)

    # (b) a new price lookup: nothing on the tape answers it, and the report says where it came from
    giftwrap = shop.candidate("giftwrap", {"shop/orders.py": GIFTWRAP})
    result = verify(snap, [str(giftwrap)])
    assert result.verdict is Verdict.DIVERGED, result.reason
    d = result.divergence
    assert d["channel"] == "http" and d["op"] == "request"
    assert f"'GET', '{shop.server.url}/price?item=giftwrap'" in d["asked"]
    assert d["recorded"] in (None, "")
    assert any(f"{shop.server.url}/price?item=widget" in c for c in d["candidates"]), d["candidates"]
    assert not any("giftwrap" in c for c in d["candidates"])
    assert any(str(giftwrap / "shop" / "pricing.py") in line and "fetch_price" in line for line in d["stack"]), d["stack"]
    assert any(str(giftwrap / "shop" / "orders.py") in line and "place_order" in line for line in d["stack"]), d["stack"]
    assert d["diff"] == [["[1]", f"'{shop.server.url}/price?item=widget'", f"'{shop.server.url}/price?item=giftwrap'"]]
    assert "giftwrap" in result.reason and "inconclusive" in result.reason
    _assert_untouched(shop, hits)

    # (c) a different notification body to the same URL: one changed effect, same return value
    cents = shop.candidate("cents", {"shop/notify.py": CENTS_NOTIFY})
    result = verify(snap, [str(cents)])
    assert result.verdict is Verdict.CHANGED, (result.reason, result.divergence)
    assert result.divergence is None and result.changes == []
    [effect] = result.effects
    assert effect["status"] == "changed" and effect["channel"] == "http" and effect["op"] == "request"
    assert f"{shop.server.url}/notify" in effect["asked"] and f"{shop.server.url}/notify" in effect["recorded"]
    assert "30.00 EUR" in effect["recorded"] and '"amount_cents": 3000' in effect["asked"]
    assert any("30.00 EUR" in str(old) and "3000" in str(new) for _path, old, new in effect["diff"]), effect["diff"]
    assert "same return value as recorded; effects differ: http request changed" in result.reason
    _assert_untouched(shop, hits)


def test_recorded_price_failure_reproduces_and_the_fix_is_fixed(shop):
    snap = _record(shop, "broken", 1)
    with open_snapshot(snap) as s:
        outcome = s.outcome
    assert outcome["kind"] == "exception" and outcome["type"] == "requests.exceptions:HTTPError"
    assert "500 Server Error" in outcome["message"]
    assert outcome["place"][0] == "shop/pricing.py" and outcome["place"][1] == "fetch_price"
    assert shop.server.hits == [("GET", "/price?item=broken")]
    assert [r["id"] for r in _rows(shop.db_path)] == ["earlier-1"]
    hits = _take_the_world_away(shop)

    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert result.recorded.startswith("HTTPError('500 Server Error")

    unfixed = shop.candidate("unfixed", {"shop/notify.py": CENTS_NOTIFY})  # touches nothing on this path
    result = verify(snap, [str(unfixed)])
    assert result.verdict is Verdict.STILL_FAILING, result.reason

    fixed = shop.candidate("fixed", {"shop/orders.py": HANDLES_500})
    result = verify(snap, [str(fixed)])
    assert result.verdict is Verdict.FIXED, (result.reason, result.divergence)
    assert result.observed == "returned {'item': 'broken', 'refused': 'price unavailable', 'status': 500}"
    assert result.effects == [] and result.unconsumed == []
    _assert_untouched(shop, hits)


def test_cli_verify_json_reports_the_divergence(shop):
    snap = _record(shop, "widget", 1)
    hits = _take_the_world_away(shop)
    giftwrap = shop.candidate("giftwrap", {"shop/orders.py": GIFTWRAP})
    proc = subprocess.run([sys.executable, "-m", "replay", "verify", str(snap), "--code", str(giftwrap), "--json"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # DIVERGED is reported, not failing by default
    data = json.loads(proc.stdout)
    assert data["summary"] == {"DIVERGED": 1} and data["exit_code"] == 0
    [res] = data["results"]
    assert res["verdict"] == "DIVERGED" and res["snapshot"] == str(snap)
    assert res["entry"] == "shop.orders:place_order"
    assert res["changed_files"] == ["shop/orders.py"]
    d = res["divergence"]
    assert d["channel"] == "http" and d["op"] == "request" and "/price?item=giftwrap" in d["asked"]
    assert any("giftwrap" in str(entry[2]) and "widget" in str(entry[1]) for entry in d["diff"]), d["diff"]
    assert any("shop/pricing.py" in line and "fetch_price" in line for line in d["stack"]), d["stack"]
    # the replay stopped at the divergence: the writes it never reached are not "missing" effects
    assert res["effects"] == []
    assert d["strand"] == "0" and d["reason"] == "no recorded answer for this request"
    _assert_untouched(shop, hits)


def test_a_diverged_candidate_does_not_report_unreached_effects_as_missing(shop):
    snap = _record(shop, "widget", 1)
    _take_the_world_away(shop)
    giftwrap = shop.candidate("giftwrap", {"shop/orders.py": GIFTWRAP})
    result = verify(snap, [str(giftwrap)])
    assert result.verdict is Verdict.DIVERGED
    # the divergence is the first thing the candidate did differently: what it would have written
    # after it is unknown, not missing (a "missing" POST /notify reads as "the candidate no longer notifies")
    assert result.effects == []
