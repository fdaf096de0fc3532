"""Lazy package attributes (:pep:`562`): public names imported on first use.

A package ``__init__`` that re-exports from its submodules makes every import of any
submodule pay for all of them: ``import replay.replayer.tape`` (in the replay child) ran
``replay.replayer.runner`` and with it ``subprocess`` and the fork server. With
:func:`lazy_attributes` the package names the same public attributes but imports a
submodule only when one of its names is first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` serving ``names`` lazily.

    Args:
        package: The package's ``__name__``.
        names: Public name -> the module that defines it; a name that is itself a
            submodule of ``package`` (``"capture": "replay.capture"``) maps to that module.

    Returns:
        The function to assign to the package's ``__getattr__``. The first use of a name
        imports its module and stores the value on the package (later uses are plain
        attribute reads). An unknown name raises :class:`AttributeError`, so
        ``from package import submodule`` still imports the submodule.
    """

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(target)
        value = module if target == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
