"""The installed ``replay tui`` in a real terminal (tmux): open a sample, move, look, quit."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.tui.conftest import REPO, SAMPLE_REL

TMUX = shutil.which("tmux")
REPLAY = Path(sys.executable).parent / "replay"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it where it can)"),
    pytest.mark.skipif(not REPLAY.exists(), reason="the replay command is not installed in this environment"),
]


class Tmux:
    def __init__(self, cache: str):
        self.socket = f"replay-test-{uuid.uuid4().hex[:8]}"
        self.cache = cache

    def run(self, *args: str) -> str:
        out = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=30, check=False)
        return out.stdout

    def start(self, command: str, width: int, height: int) -> None:
        env = f"REPLAY_TRACE_CACHE={self.cache} TERM=xterm-256color"
        self.run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                 f"sleep 0.3; cd {REPO} && env {env} {command}; echo EXITED $?; sleep 30")  # sized before it starts

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def wait_for(self, text: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen shows:\n{shown}")
            time.sleep(0.2)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def close(self) -> None:
        self.run("kill-server")


@pytest.fixture
def tmux(trace_cache):
    t = Tmux(trace_cache)
    yield t
    t.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_replay_tui_in_a_real_terminal(tmux, size):
    tmux.start(f"{REPLAY} tui {SAMPLE_REL}", *size)
    shown = tmux.wait_for("Ready.")
    assert "subscriptions.service:renew" in shown and "ValueError" in shown
    tmux.keys("Enter")
    shown = tmux.wait_for("step 0/16")
    assert "subscriptions/service.py" in shown and "call stack" in shown
    tmux.keys("e")
    shown = tmux.wait_for("step 13/16")
    assert "✖" in shown  # the failing line in the gutter
    assert "<exception> = ValueError" in shown
    tmux.keys("S")  # reverse step into: the line before the exception
    tmux.wait_for("step 12/16")
    tmux.keys("q")
    tmux.wait_for("EXITED 0")
    # nothing the app drew is left garbled: every captured line fits the terminal
    assert all(len(line) <= size[0] for line in tmux.screen().splitlines())


def test_a_value_with_escape_sequences_is_shown_escaped(tmux, app, tmp_path):
    """A local holding ANSI escapes and control characters is drawn as text, not obeyed."""
    app.write("hostile.py", '''
        import replay

        @replay.capture(on="always")
        def greet(name):
            banner = name + "\\x1b[2J\\x1b]0;owned\\x07\\r"
            return len(banner)
    ''')
    snap = app.record("import hostile; hostile.greet('\\x1b[31mred')")
    tmux.start(f"{REPLAY} tui --step {snap}", 120, 40)
    tmux.wait_for("step 0/")
    tmux.keys("n", "n")
    shown = tmux.wait_for("step 2/3")
    banner = next(line for line in shown.splitlines() if "banner = " in line)
    assert "\\x1b[2J" in banner and "\\x07" in banner and "owned" in banner  # printed as text, not obeyed
    assert "\\x1b[31mred" in shown
    tmux.keys("q")
    tmux.wait_for("EXITED 0")
