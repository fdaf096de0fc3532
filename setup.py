"""Build the optional C speed-up of the trace recorder (metadata lives in pyproject.toml).

``replay.replayer._fastline`` is optional: when it cannot be built (no compiler, no Python
headers) the package installs without it and the pure-Python tracer is used. Its source is
one translation unit: ``module.c`` includes the other parts of ``_fastline_src`` (listed as
``depends`` so that editing any of them rebuilds the extension).
"""

from glob import glob

from setuptools import Extension, setup

SRC = "replay/replayer/_fastline_src"

setup(ext_modules=[Extension("replay.replayer._fastline", [f"{SRC}/module.c"],
                             depends=sorted(glob(f"{SRC}/*.[ch]")), optional=True)])
