"""A real Flask app using SQLAlchemy's pooled engine on sqlite, under waitress on loopback.

The engine is created at import; its pool opens the connection during the first request
and keeps it, so the failing request that follows runs on a connection an earlier request
opened: its tape has an ``adopt``, not a ``connect``. The snapshot is replayed in a fresh
process (the server and the database file are gone): the replay's pool opens a connection,
which the ``adopt`` answers, and SQLAlchemy's first-connect set-up (``PRAGMA
read_uncommitted``, a rollback) is answered from the set-up recorded with the ``adopt``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify
from tests.integration.test_middleware import candidate, serve  # noqa: F401 - serve is a fixture

pytestmark = pytest.mark.integration

SHOP = """
import os

from flask import Flask, jsonify, request
from sqlalchemy import ForeignKey, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from replay.capture.middleware import ReplayWSGIMiddleware

HERE = os.path.dirname(os.path.abspath(__file__))
engine = create_engine("sqlite:///" + os.path.join(HERE, "shop.db"), pool_size=2)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "product"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str]
    price_cents: Mapped[int]
    pack_size: Mapped[int]


class View(Base):
    __tablename__ = "view"
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))


app = Flask(__name__)


@app.get("/price/<sku>")
def unit_price(sku):
    with Session(engine) as session:
        product = session.scalars(select(Product).where(Product.sku == sku)).one()
        session.add(View(product_id=product.id))
        session.commit()
        count = int(request.args.get("packs", "1")) * product.pack_size
        return jsonify(sku=sku, unit_cents=product.price_cents // count)


app.wsgi_app = ReplayWSGIMiddleware(app.wsgi_app)
"""

FIX = ("        count = int(request.args.get(\"packs\", \"1\")) * product.pack_size\n",
       "        count = int(request.args.get(\"packs\", \"1\")) * product.pack_size\n"
       "        if not count:\n"
       "            return jsonify(error=\"no unit price\"), 422\n")


def _make_db(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE product (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, price_cents INT, pack_size INT)")
        con.execute("CREATE TABLE view (id INTEGER PRIMARY KEY, product_id INT REFERENCES product (id))")
        con.executemany("INSERT INTO product (sku, price_cents, pack_size) VALUES (?, ?, ?)",
                        [("tea", 1200, 12), ("sample", 0, 0)])


def test_pooled_sqlalchemy_connection_replays_and_a_fix_verifies(serve, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "app").mkdir(exist_ok=True)
    db_file = tmp_path / "app" / "shop.db"
    _make_db(db_file)
    server = serve("wsgi", "shop:app", {"shop.py": SHOP})
    status, _, body = server.request("/price/tea?packs=2")
    assert status == 200 and json.loads(body) == {"sku": "tea", "unit_cents": 50}
    assert server.request("/price/sample")[0] == 500  # a pack size of 0: ZeroDivisionError
    snaps = server.snapshots(1)
    server.stop()
    assert len(snaps) == 1
    with sqlite3.connect(db_file) as con:
        assert con.execute("SELECT count(*) FROM view").fetchone() == (2,)  # both requests committed
    db_file.unlink()

    with open_snapshot(snaps[0]) as s:
        assert s.outcome["http_status"] == 500
        db = [i for i in s.tape if i.channel == "db"]
    ops = [i.op for i in db]
    assert ops[0] == "adopt" and "connect" not in ops, ops  # the pool's connection, opened by request 1
    assert "commit" in ops
    setup = decode(db[0].result)["setup"]
    assert any(e[0] == "execute" and "PRAGMA read_uncommitted" in e[1][1] for e in setup), setup

    run = reproduce(snaps[0], timeout_s=60)
    assert run.verdict is Verdict.REPRODUCED, run.reason
    assert run.baseline.reused.get("db", 0) >= 1 and run.baseline.blocked == []
    assert not db_file.exists()

    fixed = candidate(tmp_path, "fixed", {"shop.py": SHOP.replace(*FIX)})
    result = verify(snaps[0], [fixed], timeout_s=60)
    assert result.verdict is Verdict.FIXED, result.reason
    assert not db_file.exists()
