"""The production path stays light: importing it loads neither textual nor rich."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_capture_path_loads_no_ui_libraries():
    code = (
        "import sys, replay, replay.capture, replay.snapshot\n"
        "heavy = sorted(m for m in ('textual', 'rich', 'click', 'pygments') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_replayer_and_verify_do_not_import_rich_either():
    code = (
        "import sys, replay.replayer, replay.verify\n"
        "print(','.join(sorted(m for m in ('textual', 'rich') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
