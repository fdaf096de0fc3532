"""TUI fixtures: a sample snapshot whose trace is already in a private cache, and helpers that
wait for the app's workers instead of sleeping."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from replay.replayer.traces import regenerate

REPO = Path(__file__).resolve().parents[2]
SAMPLE = next((REPO / "sample_snapshots" / "snapshots" / "jan31-monthly").glob("*.rsnap"))
SAMPLE_REL = os.path.relpath(SAMPLE, REPO)
FIX = REPO / "sample_snapshots" / "fixes" / "correct"


@pytest.fixture(scope="session")
def trace_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trace cache holding the sample's trace (regenerated once per test session)."""
    cache = str(tmp_path_factory.mktemp("trace-cache"))
    regenerate(str(SAMPLE), directory=cache)
    return cache


@pytest.fixture
def sample(trace_cache: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sample snapshot's path, relative to the repository (the app shows it)."""
    monkeypatch.setenv("REPLAY_TRACE_CACHE", trace_cache)
    monkeypatch.chdir(REPO)
    return SAMPLE_REL


async def wait_for(pilot: Any, predicate: Any, timeout_s: float = 30.0) -> None:
    """Let the app run until ``predicate()`` holds (workers finish off the UI thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(0.02)


async def opened(pilot: Any) -> None:
    """Wait until the app's trace is open and the first screen is drawn."""
    await wait_for(pilot, lambda: pilot.app.opened_s is not None)
    await pilot.pause()


def text_of(widget: Any) -> str:
    """What a Static shows, as plain text (its content rendered by rich, wide enough not to wrap)."""
    from rich.console import Console

    console = Console(width=300, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(widget.content)
    return console.export_text()
