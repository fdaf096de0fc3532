"""The redaction key is per snapshot: one process writes two snapshots holding the same secret.

Within one snapshot the secret is the same token everywhere (the argument, the environment
read on the tape, the exception message in the outcome and in the header, the locals of the
embedded flight-recorder trace); the two snapshots' tokens differ; each snapshot replays.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import zstandard

from replay.snapshot.reader import SnapshotFile
from replay.verify import reproduce
from tests.conftest import App, run_recording

SECRET = "Vt8-qW3zN6-pL1xR7-mK4sD9"  # fake; matched by its names, not by its shape

APP = '''
import os
import replay


@replay.capture(trace=True, rate_limit_per_failure="off", background="sync")
def charge(order_id, password):
    expected = os.environ["PAYMENT_PASSWORD"]
    if password == expected:
        raise RuntimeError(f"order {order_id}: gateway refused password {password}")
    return "bad password"
'''

SCRIPT = '''
import os, sys
sys.path.insert(0, os.getcwd())
import shop
for order in (1, 2):
    try:
        shop.charge(order, os.environ["PAYMENT_PASSWORD"])
    except RuntimeError:
        pass
'''

_TOKEN = re.compile(r"~redacted~[a-z0-9_]+~([0-9a-f]{8})~")


def _contents(path: Path) -> tuple[str, dict]:
    """Every decompressed frame and the header of a snapshot, as text; and the header."""
    dctx = zstandard.ZstdDecompressor()
    with SnapshotFile(path) as f:
        header = dict(f.header)
        frames = [dctx.decompress(f.raw_payload(n), max_output_size=64 << 20) for n in range(f.frame_count)]
        assert f.count(7) > 0, "no flight-recorder trace embedded"
    text = json.dumps(header, default=str) + "".join(b.decode("latin-1") for b in frames)
    return text, header


def test_equal_secrets_share_a_token_within_a_snapshot_and_not_across(app: App) -> None:
    app.write("shop.py", APP)
    proc = run_recording(app.root, SCRIPT, env={"PAYMENT_PASSWORD": SECRET}, snap_dir=app.snaps)
    snaps = sorted(app.snaps.glob("**/*.rsnap"))
    assert len(snaps) == 2, proc.stderr
    digests = []
    for snap in snaps:
        text, header = _contents(snap)
        assert SECRET not in text and SECRET.encode().hex() not in text
        found = set(_TOKEN.findall(text))
        # the argument, the env read, the message, the header and the trace: one token
        assert len(found) == 1, found
        assert found.pop() in header["exception_message"]
        assert header["redaction"]["hits"]
        digests.append(_TOKEN.search(text).group(1))  # type: ignore[union-attr]
    assert digests[0] != digests[1]
    for snap in snaps:
        result = reproduce(snap)
        assert result.verdict.name == "REPRODUCED", result.reason
