"""Re-execution: serving the tape, divergence, and running replays in a subprocess."""

from __future__ import annotations

from replay.replayer.runner import ReplayRun, run_replay
from replay.replayer.tape import Divergence, TapePlayer

__all__ = ["Divergence", "ReplayRun", "TapePlayer", "run_replay"]
