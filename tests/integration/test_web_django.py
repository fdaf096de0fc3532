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
        sql = [i.args for i in s.tape if i.channel == "db" and i.op == "execute"]
    assert any("product" in json.dumps(args, default=str) for args in sql), "the ORM query is on the tape"
    assert request_of(snaps[0])["environ"]["PATH_INFO"] == "/price/sample"
    run = reproduce(snaps[0], timeout_s=60)
    assert run.verdict is Verdict.REPRODUCED, run.reason
    fixed = candidate(tmp_path, "fixed", {"djshop.py": DJANGO_SHOP.replace(
        '    count = int(request.GET.get("packs", "1")) * product.pack_size\n',
        '    count = int(request.GET.get("packs", "1")) * product.pack_size\n'
        '    if not count:\n'
        '        return JsonResponse({"error": "no unit price"}, status=422)\n')})
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


@pytest.mark.xfail(strict=True, reason="a request that reuses a DB connection opened by an earlier request has no "
                   "'connect' on its tape; replay opens one and diverges (needs the db channel: see docs/web.md)")
def test_django_persistent_connection_replays(serve, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "app").mkdir(exist_ok=True)
    _make_db(tmp_path)
    server = serve("wsgi", "djshop:application", {"djshop.py": DJANGO_SHOP}, extra_env={"SHOP_CONN_MAX_AGE": "60"})
    for _ in range(8):  # every server thread opens its persistent connection
        assert server.request("/price/tea?packs=2")[0] == 200
    assert server.request("/price/sample")[0] == 500
    snaps = server.snapshots(1)
    server.stop()
    with open_snapshot(snaps[0]) as s:
        if any(i.channel == "db" and i.op == "connect" for i in s.tape):
            pytest.skip("the failing request happened to open its own connection")
    assert reproduce(snaps[0], timeout_s=60).verdict is Verdict.REPRODUCED
