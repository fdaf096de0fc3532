"""A price and notification service for the order-service test, on the loopback WSGI server.

Reuses :class:`tests.channels.http_server.LoopbackServer` (real HTTP on 127.0.0.1) with its
own WSGI application:

* ``GET /price?item=NAME``: ``{"item": NAME, "price_cents": N}`` from :data:`PRICES`;
  ``500`` for an item marked ``None`` (the price backend failing), ``404`` for an unknown one.
* ``POST /notify``: ``201`` ``{"received": <the JSON body>}``.

``server.hits`` lists ``(method, path?query)`` of every request that reached it and
``server.bodies`` the request bodies, in order.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.channels.http_server import LoopbackServer

PRICES: dict[str, int | None] = {"widget": 1250, "gizmo": 399, "giftwrap": 150, "broken": None}


def price_app(environ: dict[str, Any], start_response: Any) -> Any:
    server = environ["replay.server"]
    query = environ.get("QUERY_STRING", "")
    server.hits.append((environ["REQUEST_METHOD"], environ["PATH_INFO"] + ("?" + query if query else "")))
    params = dict(urllib.parse.parse_qsl(query))
    if environ["PATH_INFO"] == "/price" and environ["REQUEST_METHOD"] == "GET":
        item = params.get("item", "")
        if item not in PRICES:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [json.dumps({"error": f"no item {item}"}).encode()]
        price = PRICES[item]
        if price is None:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"price backend unavailable"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"item": item, "price_cents": price}).encode()]
    if environ["PATH_INFO"] == "/notify" and environ["REQUEST_METHOD"] == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        server.bodies.append(body)
        start_response("201 Created", [("Content-Type", "application/json")])
        return [json.dumps({"received": json.loads(body or b"null")}).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def price_server() -> LoopbackServer:
    """A started server answering :func:`price_app`."""
    server = LoopbackServer()
    server.set_app(price_app)
    server.bodies = []  # type: ignore[attr-defined]
    return server.start()
