"""``python -m tui SNAP``: the same as ``replay tui SNAP``."""

from __future__ import annotations

import sys

from replay.cli import main

sys.exit(main(["tui", *sys.argv[1:]]))
