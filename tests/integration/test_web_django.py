"""A real Django app under waitress, wrapped by ReplayWSGIMiddleware, driven over loopback.

The app configures its settings in code (``settings.configure``), reads a sqlite database
through the ORM, and fails on some inputs: Django turns the exception into its own 500
page, which is the recorded response. The snapshots are replayed in fresh processes (the
server is gone, the database file too) and must give the same response; a fix verifies.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
import zstandard

from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.snapshot.reader import SnapshotFile
from replay.verify import Verdict, reproduce, verify
from tests.integration.test_middleware import candidate, request_of, serve  # noqa: F401 - serve is a fixture

pytestmark = pytest.mark.integration

DJANGO_SHOP = """
import os

from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))
settings.configure(
    DEBUG=False,
    SECRET_KEY="django-insecure-test-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(HERE, "shop.db"),
                           "CONN_MAX_AGE": int(os.environ.get("SHOP_CONN_MAX_AGE", "0"))}},
    USE_TZ=True,
    LOGGING_CONFIG=None,
)

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import models  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from replay.capture.middleware import ReplayWSGIMiddleware  # noqa: E402


class Product(models.Model):
    sku = models.CharField(max_length=20, unique=True)
    price_cents = models.IntegerField()
    pack_size = models.IntegerField()

    class Meta:
        app_label = "shop"
        db_table = "product"


def unit_price(request, sku):
    product = Product.objects.get(sku=sku)
    count = int(request.GET.get("packs", "1")) * product.pack_size
    return JsonResponse({"sku": sku, "unit_cents": product.price_cents // count})


def hello(request):
    return JsonResponse({"hello": request.GET.get("name", "world")})


def upload(request):
    size = len(request.body)
    if size > 100_000:
        return HttpResponse(f"archive of {size} bytes failed", status=503, content_type="text/plain")
    return JsonResponse({"size": size})


urlpatterns = [path("price/<str:sku>", unit_price), path("hello", hello), path("upload", upload)]
application = ReplayWSGIMiddleware(get_wsgi_application())
"""

ZERO_PACK_FIX = (
    '    count = int(request.GET.get("packs", "1")) * product.pack_size\n',
    '    count = int(request.GET.get("packs", "1")) * product.pack_size\n'
    '    if not count:\n'
    '        return JsonResponse({"error": "no unit price"}, status=422)\n')


def _make_db(root: Path) -> None:
    with sqlite3.connect(root / "app" / "shop.db") as con:
        con.execute("CREATE TABLE product (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, price_cents INT, pack_size INT)")
        con.executemany("INSERT INTO product (sku, price_cents, pack_size) VALUES (?, ?, ?)",
                        [("tea", 1200, 12), ("sample", 0, 0)])


def test_django_failing_request_replays_and_a_fix_verifies(serve, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "app").mkdir(exist_ok=True)
    _make_db(tmp_path)
    server = serve("wsgi", "djshop:application", {"djshop.py": DJANGO_SHOP})
    status, _, body = server.request("/price/tea?packs=2")
    assert status == 200 and json.loads(body) == {"sku": "tea", "unit_cents": 50}
    assert server.request("/hello?name=ada")[0] == 200
    status, _, failed_body = server.request("/price/sample")  # a pack size of 0: ZeroDivisionError
    assert status == 500 and b"Server Error (500)" in failed_body
    snaps = server.snapshots(1)
    server.stop()
    assert len(snaps) == 1
    (tmp_path / "app" / "shop.db").unlink()  # replay answers the ORM from the tape
    with open_snapshot(snaps[0]) as s:
        assert s.entry["kind"] == "wsgi" and s.header["entry"] == "djshop:application"
        assert s.outcome["http_status"] == 500 and decode(s.outcome["value"])["body"] == failed_body
        # Django logged the view's exception (django.request): the outcome names the cause
        cause = s.outcome["logged_exception"]
        assert cause["type"] == "builtins:ZeroDivisionError" and cause["place"] == ["djshop.py", "unit_price"]
        sql = [i.args for i in s.tape if i.channel == "db" and i.op == "execute"]
    assert any("product" in json.dumps(args, default=str) for args in sql), "the ORM query is on the tape"
    assert request_of(snaps[0])["environ"]["PATH_INFO"] == "/price/sample"
    run = reproduce(snaps[0], timeout_s=60)
    assert run.verdict is Verdict.REPRODUCED, run.reason
    fixed = candidate(tmp_path, "fixed", {"djshop.py": DJANGO_SHOP.replace(*ZERO_PACK_FIX)})
    assert verify(snaps[0], [fixed], timeout_s=60).verdict is Verdict.FIXED


def test_django_large_body_keeps_its_length_and_hides_its_tail(serve, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "app").mkdir(exist_ok=True)
    _make_db(tmp_path)
    server = serve("wsgi", "djshop:application", {"djshop.py": DJANGO_SHOP})
    tail_marker = b"customer-notes-past-the-limit"
    payload = b"x" * 100_000 + b" " + tail_marker + b" " + b"y" * 50_000
    assert server.request("/upload", body=payload, headers={"Content-Type": "application/octet-stream"})[0] == 503
    snaps = server.snapshots(1)
    server.stop()
    recorded = request_of(snaps[0])["body"]
    # One token of the tail's length: the environ's CONTENT_LENGTH still holds on replay.
    assert len(recorded) == len(payload) and recorded[:65_000] == payload[:65_000]
    assert re.search(rb"~redacted~unscanned_*~[0-9a-f]{8}~$", recorded)
    dctx = zstandard.ZstdDecompressor()
    with SnapshotFile(snaps[0]) as f:
        assert f.header["redaction"]["hits"]["unscanned"] >= 1
        assert f.header["redaction"]["scan_limit"] == 65536
        frames = [dctx.decompress(f.raw_payload(n), max_output_size=64 << 20) for n in range(f.frame_count)]
    assert not any(tail_marker in frame for frame in frames)
    run = reproduce(snaps[0], timeout_s=60)  # the view reads only the body's length
    assert run.verdict is Verdict.REPRODUCED, run.reason


# CONN_MAX_AGE in the code: settings read from the environment at import are the replaying
# machine's, and a replay with CONN_MAX_AGE = 0 closes the connection at the end of the request
# (an interaction the recording, which kept it, does not have).
# The view reads the clock before its first query: with a persistent connection Django reads
# the monotonic clock at request start (the connection's age), a fresh process at connect.
PERSISTENT_SHOP = DJANGO_SHOP.replace('int(os.environ.get("SHOP_CONN_MAX_AGE", "0"))', "60").replace(
    "def unit_price(request, sku):\n",
    "def unit_price(request, sku):\n    from django.utils import timezone\n\n    request.started = timezone.now()\n")


def test_django_persistent_connection_replays(serve, tmp_path: Path) -> None:  # noqa: F811
    """CONN_MAX_AGE = 60: a request that reuses the connection an earlier request opened
    (an ``adopt`` on its tape, no ``connect``) replays in a fresh process, whose Django opens
    a connection (answered by the ``adopt``) and runs its set-up PRAGMAs on it (answered
    by the recorded set-up), with the database file gone; and a fix verifies."""
    (tmp_path / "app").mkdir(exist_ok=True)
    _make_db(tmp_path)
    assert "\"CONN_MAX_AGE\": 60}" in PERSISTENT_SHOP and "request.started" in PERSISTENT_SHOP
    server = serve("wsgi", "djshop:application", {"djshop.py": PERSISTENT_SHOP})
    assert server.request("/price/tea?packs=2")[0] == 200
    # waitress runs 4 threads, each keeps its connection: of 4 failing requests after the
    # first one, at least one runs on a thread whose connection is already open
    for _ in range(4):
        assert server.request("/price/sample")[0] == 500
    snaps = server.snapshots(4)
    server.stop()
    (tmp_path / "app" / "shop.db").unlink()
    adopted = []
    for snap in snaps:
        with open_snapshot(snap) as s:
            ops = [i.op for i in s.tape if i.channel == "db"]
            adopt = next((i for i in s.tape if i.channel == "db" and i.op == "adopt"), None)
        if adopt is not None:
            assert "connect" not in ops and ops[0] == "adopt", ops
            assert adopt.args == ["t", "sqlite3", "<app>/shop.db"]
            setup = decode(adopt.result)["setup"]
            assert [e[1][1] for e in setup if e[0] == "execute"][-2:] == [
                "PRAGMA foreign_keys = ON", "PRAGMA legacy_alter_table = OFF"]
            adopted.append(snap)
        else:
            assert ops[0] == "connect", ops
        run = reproduce(snap, timeout_s=60)
        assert run.verdict is Verdict.REPRODUCED, run.reason
        if adopt is not None:  # the fresh connection's set-up was served from the adopt, and said so
            assert run.baseline.reused.get("db", 0) >= 2 and run.baseline.blocked == []
    assert adopted, "no failing request reused a connection"
    assert not (tmp_path / "app" / "shop.db").exists()
    fixed = candidate(tmp_path, "fixed", {"djshop.py": PERSISTENT_SHOP.replace(*ZERO_PACK_FIX)})
    result = verify(adopted[0], [fixed], timeout_s=60)
    assert result.verdict is Verdict.FIXED, result.reason
