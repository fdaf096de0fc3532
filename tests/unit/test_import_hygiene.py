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


def test_the_core_never_imports_the_tui():
    """tui -> replay, never back: the CLI loads `replay tui` through an entry point, and
    running the CLI's other commands never imports textual or the tui package."""
    code = (
        "import sys, replay.cli\n"
        "replay.cli._register()\n"
        "print(','.join(sorted(m for m in ('textual', 'tui.app', 'tui.session') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    listed = subprocess.run([sys.executable, "-c", "import replay.cli as c; c._register(); print(sorted(c.cli.commands))"],
                            capture_output=True, text=True, check=True).stdout
    assert "'tui'" in listed


def test_no_module_under_replay_names_the_tui():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "replay"
    offenders = [str(p) for p in root.rglob("*.py")
                 if any(line.lstrip().startswith(("import tui", "from tui", "import textual", "from textual"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
