"""Build the optional C speed-up of the trace recorder (metadata lives in pyproject.toml).

``replay.replayer._fastline`` is optional: when it cannot be built (no compiler, no Python
headers) the package installs without it and the pure-Python tracer is used.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("replay.replayer._fastline", ["replay/replayer/_fastline.c"], optional=True)])
