"""The pytest plugin (registered through the ``pytest11`` entry point).

Imports nothing heavy at load time: it is loaded in every pytest session of a project
that installs replay-debugger.
"""

from __future__ import annotations
