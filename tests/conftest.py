"""Shared fixtures: record a real call of a small program in a fresh process."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_snapshots"


def run_recording(app_dir: Path, script: str, *, env: dict[str, str] | None = None,
                  snap_dir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``python -c`` in a fresh interpreter, cwd ``app_dir``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    full_env.update(env or {})
    if snap_dir is not None:
        full_env["REPLAY_DIR"] = str(snap_dir)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=app_dir, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"recording script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class App:
    """A throw-away application: a project root with modules, recorded in subprocesses."""

    def __init__(self, root: Path):
        self.root = root / "app"
        self.root.mkdir()
        self.snaps = root / "snaps"

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def record(self, script: str, env: dict[str, str] | None = None) -> Path:
        """Run ``script``; return the one snapshot it wrote."""
        before = set(glob.glob(str(self.snaps / "**" / "*.rsnap"), recursive=True))
        run_recording(self.root, script, env=env, snap_dir=self.snaps)
        new = sorted(set(glob.glob(str(self.snaps / "**" / "*.rsnap"), recursive=True)) - before)
        assert len(new) == 1, f"expected one new snapshot, found {new}"
        return Path(new[0])

    def candidate(self, name: str, files: dict[str, str]) -> Path:
        """A candidate code root: a copy of the app with ``files`` replaced."""
        import shutil

        dest = self.root.parent / name
        shutil.copytree(self.root, dest)
        for rel, source in files.items():
            (dest / rel).write_text(textwrap.dedent(source))
        return dest


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path)
