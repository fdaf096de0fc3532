"""Re-execution: serving the tape, divergence, and running replays in a subprocess."""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay._lazy import lazy_attributes

if TYPE_CHECKING:
    from replay.replayer.runner import ReplayRun, run_replay
    from replay.replayer.tape import Divergence, TapePlayer

__all__ = ["Divergence", "ReplayRun", "TapePlayer", "run_replay"]
# The replay child imports replay.replayer.tape and sandbox; it must not pay for the runner
# (subprocess, the fork server), which only the parent uses.
__getattr__ = lazy_attributes(__name__, {
    "Divergence": "replay.replayer.tape", "TapePlayer": "replay.replayer.tape",
    "ReplayRun": "replay.replayer.runner", "run_replay": "replay.replayer.runner",
})
