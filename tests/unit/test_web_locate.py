"""Where a wrapped web app is bound: replay imports it by ``module:attribute``."""

from __future__ import annotations

import sys
import types

import pytest

from replay.capture.webdata import locate


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> tuple[object, types.ModuleType]:
    app = object()
    module = types.ModuleType("shopsite.wsgi_application")
    module.application = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return app, module


def test_an_alias_of_main_loses_to_the_real_module(app_module, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server script binds the app in ``__main__``; multiprocessing (imported by Django's
    sqlite backend) aliases ``__main__`` as ``__mp_main__``, a shorter name than the app's."""
    app, module = app_module
    main = types.ModuleType("__main__")
    main.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setitem(sys.modules, "__mp_main__", main)
    assert locate([app]) == (module.__name__, "application")


def test_main_is_used_when_it_is_the_only_place(monkeypatch: pytest.MonkeyPatch) -> None:
    app = object()
    main = types.ModuleType("__main__")
    main.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert locate([app]) == ("__main__", "app")
