"""Entry points of every kind replay end to end: block, async, method, script, keyword args."""

from __future__ import annotations

import pytest

from replay.snapshot import open_snapshot
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration


def test_recording_block_replays_inside_its_enclosing_function(app):
    app.write("jobs.py", """
        import time, random, replay

        def nightly(batch, *, dry_run=False):
            prefix = "job"                       # before the block: runs live on replay
            with replay.recording():
                started = time.time()
                pick = random.choice(batch)
                if pick == batch[-1] or True:
                    raise RuntimeError(f"{prefix} failed on {pick} at {started}")
            return "not reached"
    """)
    snap = app.record("""
        import jobs
        try:
            jobs.nightly(["a", "b", "c"], dry_run=True)
        except RuntimeError:
            pass
    """)
    with open_snapshot(snap) as s:
        assert s.entry["kind"] == "block"
        assert s.header["replayable"], s.header["reasons"]
    assert reproduce(snap).verdict is Verdict.REPRODUCED
    fixed = app.candidate("fixed", {"jobs.py": """
        import time, random, replay

        def nightly(batch, *, dry_run=False):
            with replay.recording():
                started = time.time()
                pick = random.choice(batch)
            return pick
    """})
    assert verify(snap, [str(fixed)]).verdict is Verdict.FIXED


def test_async_entry_point_replays(app):
    app.write("svc.py", """
        import asyncio, time, replay

        @replay.capture
        async def fetch(url, retries=2):
            await asyncio.sleep(0)
            deadline = time.monotonic() + 0.5
            raise TimeoutError(f"{url} after {retries} retries, deadline {deadline}")
    """)
    snap = app.record("""
        import asyncio, svc
        try:
            asyncio.run(svc.fetch("https://example.invalid/x", retries=3))
        except TimeoutError:
            pass
    """)
    assert reproduce(snap).verdict is Verdict.REPRODUCED


def test_method_entry_point_with_an_application_object_as_self(app):
    app.write("shop/__init__.py", "")
    app.write("shop/cart.py", """
        import dataclasses, random, replay
        from decimal import Decimal

        @dataclasses.dataclass
        class Line:
            sku: str
            price: Decimal
            qty: int

        class Cart:
            def __init__(self, owner):
                self.owner = owner
                self.lines = []

            @replay.capture
            def checkout(self, coupon=None):
                total = sum(l.price * l.qty for l in self.lines)
                if coupon and random.random() < 2:
                    total -= Decimal(coupon)
                if total < 0:
                    raise ValueError(f"negative total {total} for {self.owner}")
                return total
    """)
    snap = app.record("""
        from decimal import Decimal
        from shop.cart import Cart, Line
        cart = Cart("ann")
        cart.lines.append(Line("tea", Decimal("3.50"), 2))
        try:
            cart.checkout(coupon="10")
        except ValueError:
            pass
    """)
    assert reproduce(snap).verdict is Verdict.REPRODUCED
    fixed = app.candidate("fixed", {"shop/cart.py": (app.root / "shop/cart.py").read_text().replace(
        "if total < 0:\n            raise", "if total < 0:\n            total = Decimal(0)\n        if False:\n            raise")})
    result = verify(snap, [str(fixed)])
    assert result.verdict is Verdict.FIXED, result.reason


def test_script_entry_point_in_main(app):
    app.write("tool.py", """
        import os, replay

        @replay.capture
        def main(argv):
            mode = os.environ.get("TOOL_MODE", "safe")
            raise SystemError(f"{mode}: {argv}")

        if __name__ == "__main__":
            try:
                main(["--all"])
            except SystemError:
                pass
    """)
    from tests.conftest import run_recording

    run_recording(app.root, "import runpy; runpy.run_path('tool.py', run_name='__main__')",
                  snap_dir=app.snaps, env={"TOOL_MODE": "fast"})
    (snap,) = list(app.snaps.glob("*.rsnap"))
    with open_snapshot(snap) as s:
        assert s.entry["module"] == "__main__"
    assert reproduce(snap).verdict is Verdict.REPRODUCED
