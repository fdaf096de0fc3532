"""Build the optional C speed-ups (metadata lives in pyproject.toml).

``replay.replayer._fastline`` (the trace recorder) and ``replay.capture._fastcapture``
(production capture) are optional: when they cannot be built (no compiler, no Python
headers) the package installs without them and the pure-Python code is used. Each one's
source is one translation unit: ``module.c`` includes the other parts of its ``_src``
folder (listed as ``depends`` so that editing any of them rebuilds the extension).
"""

from glob import glob

from setuptools import Extension, setup


def unity(name: str, src: str) -> Extension:
    return Extension(name, [f"{src}/module.c"], depends=sorted(glob(f"{src}/*.[ch]")), optional=True)


setup(ext_modules=[unity("replay.replayer._fastline", "replay/replayer/_fastline_src"),
                   unity("replay.capture._fastcapture", "replay/capture/_fastcapture_src")])
