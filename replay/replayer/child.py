"""The replay subprocess: ``python -P -m replay.replayer.child REQUEST RESULT``.

Runs one replay in a fresh interpreter (clean module state): sets up ``sys.path`` (code
roots first, then the recorded sources, then the recorded extra path entries), installs
the interceptors before any application module is imported, serves the tape, calls the
entry point and writes what happened to RESULT (msgpack). The parent
(:mod:`replay.replayer.runner`) sets the recorded hash seed and time zone in the
environment before starting this process. With ``--serve READ_FD WRITE_FD`` it is a fork
server instead (:mod:`replay.replayer.forkserver`): it forks one such process per request.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os

# subprocess binds time.monotonic when imported (``from time import monotonic``); a recorded
# process imported it before the interceptors, so the replay does too (imported during
# install(), Popen.wait/communicate would read the tape's clock).
import subprocess  # noqa: F401
import sys
import tempfile
import traceback
from typing import Any

import msgpack

from replay.capture import api
from replay.capture.boundary import ACTIVE
from replay.capture.interceptors import REAL, install
from replay.capture.logged import logged_exception
from replay.capture.recorder import describe_exception, relative_to_roots, return_outcome
from replay.errors import ReplayDiverged, ReplaySetupError
from replay.replayer import sandbox, web
from replay.replayer.tape import TapePlayer, describe
from replay.snapshot import open_snapshot
from replay.snapshot.codec import Decoder, TypeResolver
from replay.snapshot.model import header_reasons

MAIN_ALIAS = "__replay_main__"


class _Resolver(TypeResolver):
    """Maps ``__main__`` type paths to the replayed script module."""

    def is_application(self, path: str) -> bool:
        return path.startswith(("__main__:", MAIN_ALIAS + ":")) or super().is_application(path)

    def resolve(self, path: str) -> type | None:
        if isinstance(path, str) and path.startswith("__main__:"):
            path = MAIN_ALIAS + path[len("__main__") :]
        return super().resolve(path)


def _extract_sources(files: list[dict[str, Any]], workdir: str | None) -> str:
    """Write the embedded sources under ``workdir`` (which the parent removes afterwards)."""
    root = tempfile.mkdtemp(prefix="src-", dir=workdir)
    for record in files:
        source = record.get("source")
        rel = record.get("path", "")
        if source is None or rel.startswith("/") or ".." in rel.split("/"):
            continue
        target = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(source)
    return root


def _load_entry(entry: dict[str, Any], roots: list[str]) -> Any:
    module_name = entry["module"]
    if module_name == "__main__":
        rel = os.path.basename(entry.get("main_file") or "")
        for root in roots:
            candidate = os.path.join(root, rel)
            if rel and os.path.isfile(candidate):
                spec = importlib.util.spec_from_file_location(MAIN_ALIAS, candidate)
                if spec is None or spec.loader is None:
                    break
                module = importlib.util.module_from_spec(spec)
                sys.modules[MAIN_ALIAS] = module
                spec.loader.exec_module(module)
                break
        else:
            raise ReplaySetupError(f"the recorded script {rel or '?'} is not in the recorded sources or code roots")
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ReplaySetupError(f"cannot import the entry module {module_name}: {exc}") from exc
    target: Any = module
    for part in entry["qualname"].split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ReplaySetupError(f"{module_name} has no {entry['qualname']} (the entry point was renamed or removed)")
    return getattr(target, api.ENTRY_ATTRIBUTE, target)


def _script_entry(entry: dict[str, Any], roots: list[str]) -> Any:
    """The callable that re-runs a recorded script (entry kind ``script``) from the code roots."""
    from replay.capture import script

    info = entry.get("script") or {}
    kind, target = info.get("kind", "path"), info.get("target") or os.path.basename(entry.get("main_file") or "")
    if kind == "path":
        for root in roots:
            if target and os.path.isfile(os.path.join(root, target)):
                target = os.path.join(root, target)
                break
        else:
            raise ReplaySetupError(f"the recorded script {target or '?'} is not in the recorded sources or code roots")
    return lambda argv: script.run_target(kind, target, argv)


def _app_modules(entry: dict[str, Any]) -> set[str]:
    """Top-level names of the recorded application (packages, modules, the script)."""
    names = set(entry.get("app_packages") or [])
    if entry.get("main_file"):
        names.add(os.path.splitext(os.path.basename(entry["main_file"]))[0])
    return names


def _code_identity(roots: list[str], app_modules: set[str]) -> dict[str, str]:
    """sha256 of each application file this replay loaded, by path relative to its root."""
    out = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not file.endswith(".py"):
            continue
        rel = relative_to_roots(os.path.abspath(file), roots)
        if rel is None or rel.split("/")[0].removesuffix(".py") not in app_modules:
            continue
        try:
            with open(file, "rb") as fh:
                out[rel] = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            continue
    return out


def _invoke(fn: Any, kind: str, args: list[Any], kwargs: dict[str, Any], player: TapePlayer) -> Any:
    if kind in web.KINDS:
        return web.invoke(fn, kind, args[0], player)
    if kind == "async" or inspect.iscoroutinefunction(fn):
        import asyncio  # only async entry points pay for it (and for ssl, which it loads)

        async def runner() -> Any:
            token = ACTIVE.set(player)  # only the entry task's context is served from the tape
            try:
                return await fn(*args, **kwargs)
            finally:
                ACTIVE.reset(token)

        return asyncio.run(runner())
    if kind == "block":
        return _invoke_block(fn, args, kwargs, player)
    token = ACTIVE.set(player)
    try:
        return fn(*args, **kwargs)
    finally:
        ACTIVE.reset(token)


def _invoke_block(fn: Any, args: list[Any], kwargs: dict[str, Any], player: TapePlayer) -> Any:
    state: dict[str, Any] = {"token": None, "done": False, "exc": None}

    def hook(event: str, exc: Any) -> bool:
        if event == "enter":
            if state["token"] is not None or state["done"]:
                return False
            state["token"] = ACTIVE.set(player)
            return True
        ACTIVE.reset(state["token"])
        state["done"], state["exc"] = True, exc
        return True

    api.block_replay_hook = hook
    try:
        fn(*args, **kwargs)
    except api.BlockFinished:
        pass
    finally:
        api.block_replay_hook = None
    if not state["done"]:
        raise ReplaySetupError("the replayed function never entered its replay.recording() block")
    if state["exc"] is not None:
        raise state["exc"]
    return None


def replay_once(request: dict[str, Any]) -> dict[str, Any]:
    """Run the replay described by ``request`` in this process; return the result map."""
    snap = open_snapshot(request["snapshot"])
    header, entry, env = snap.header, snap.entry, snap.environment
    if not header.get("replayable", False):
        return {"status": "not_replayable", "reason": "; ".join(header_reasons(header) or ["marked not replayable"])}
    code_dirs = [os.path.abspath(d) for d in request.get("code_dirs", [])]
    roots = list(code_dirs)
    if request.get("use_recorded_sources", True):
        roots.append(_extract_sources(snap.code_files, request.get("workdir")))
    extra = [p for p in env.get("extra_sys_path", []) if os.path.isdir(p) and p not in roots]
    sys.path[:0] = roots + extra
    install()
    # The child runs the application's code already: classes of modules it imported are
    # trusted; $REPLAY_ALLOW_MODULES names more to import when a recorded value needs them.
    extra = os.environ.get("REPLAY_ALLOW_MODULES", "").replace(",", " ").split()
    resolver = _Resolver(entry.get("app_packages", []), extra, trust_imported=True)
    player = TapePlayer(snap.tape, request["mode"], int(header.get("snapshot_id", "0") or "0", 16), resolver,
                        environ=env.get("environ"), withheld=env.get("environ_withheld"), app_roots=roots)
    is_script = entry.get("kind") == "script"
    fn = _script_entry(entry, roots) if is_script else _load_entry(entry, roots)
    decoder = Decoder(resolver)
    args = decoder.decode(entry["args"])
    kwargs = decoder.decode(entry["kwargs"])
    allowed = [request["workdir"]] if request.get("workdir") else []
    sandbox.install(allowed, player.block)
    saved_stdout = sys.stdout
    output = None
    if is_script:
        from replay.capture.script import Tee

        output = Tee(saved_stdout, passthrough=False)
        sys.stdout = output  # type: ignore[assignment]
    recorder, tracer = _tracing(request, snap, roots, player)
    t0 = REAL["time.perf_counter_ns"]()
    sandbox.activate(request.get("sandbox", True))
    try:
        if tracer is not None:
            tracer.start()
        try:
            value = _invoke(fn, entry.get("kind", "function"), args, kwargs, player)
        finally:
            if tracer is not None:
                tracer.stop()
        sandbox.activate(False)
        outcome = (web.response_outcome(value, logged_exception(player), roots, _app_modules(entry))
                   if entry.get("kind") in web.KINDS else return_outcome(value))
    except ReplayDiverged:
        outcome = {"kind": "diverged"}
    except ReplaySetupError:
        raise
    except Exception as exc:  # the application's own failure is the outcome
        sandbox.activate(False)
        outcome = describe_exception(exc, roots, _app_modules(entry))
    finally:
        sandbox.activate(False)
        sys.stdout = saved_stdout
    outcome["duration_ns"] = REAL["time.perf_counter_ns"]() - t0
    if output is not None:
        outcome["stdout"] = output.text()
    player.finish_strict()
    # after a divergence the replay stopped: recorded effects it never reached are not
    # "missing" (they stay in the unconsumed list)
    effects = player.effects + ([] if player.divergence else player.missing_effects())
    effects += [{"status": "blocked", "channel": b["kind"], "op": b["detail"], "index": None, "asked": b["detail"],
                 "recorded": None, "stack": b["stack"]} for b in player.blocked]
    trace = None
    if recorder is not None:
        trace = {"path": recorder.close({"outcome": outcome.get("kind"),
                                         "divergence": str(player.divergence) if player.divergence else None}),
                 "steps": recorder.base, "truncated": recorder.truncated}
    return {
        "status": "ok",
        "trace": trace,
        "outcome": outcome,
        "divergence": player.divergence.to_dict() if player.divergence else None,
        "unconsumed": [describe(i) for i in player.unconsumed()[:20]],
        "unconsumed_count": len(player.unconsumed()),
        "unconsumed_channels": _count_channels(player.unconsumed()),
        "synthesized": player.synthesized,
        "reused": player.reused,
        "notes": list(player.notes),
        "effects": effects,
        "blocked": player.blocked,
        "from_environment": player.from_environment,
        "code": _code_identity(roots, _app_modules(entry)),
        "code_dirs": code_dirs,
    }


def _tracing(request: dict[str, Any], snap: Any, roots: list[str], player: TapePlayer) -> tuple[Any, Any]:
    """The trace recorder and tracer a request asks for (``request["trace"]``), or (None, None).

    The recorder opens its file now, before the sandbox is active (later writes go to the
    open file; the final rename happens after the sandbox is off).
    """
    options = request.get("trace")
    if not options:
        return None, None
    from replay.replayer.tracer import DEFAULT_MAX_STEPS, Scope, TraceRecorder, make_tracer

    scope = Scope(roots, options.get("include") or [], options.get("exclude") or [])
    entry = snap.entry
    header = {
        "snapshot_id": snap.header.get("snapshot_id"),
        "entry": f"{entry.get('module')}:{entry.get('qualname')}",
        "mode": request["mode"],
        "code_dirs": request.get("code_dirs", []),
        "scope": scope.describe(),
        "python": sys.version.split()[0],
        **(options.get("header") or {}),
    }
    recorder = TraceRecorder(options["path"], scope, header, int(options.get("max_steps") or DEFAULT_MAX_STEPS))
    tracer = make_tracer(recorder, options.get("backend") or "auto")
    recorder.header_backend = tracer.name
    player.on_consume = recorder.link
    return recorder, tracer


def _count_channels(interactions: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for inter in interactions:
        out[inter.channel] = out.get(inter.channel, 0) + 1
    return out


def main(argv: list[str]) -> int:
    """Entry of the subprocess: read the request, replay, write the result."""
    request_path, result_path = argv[1], argv[2]
    with open(request_path, "rb") as fh:
        request = msgpack.unpackb(fh.read(), raw=False)
    try:
        result = replay_once(request)
    except ReplaySetupError as exc:
        result = {"status": "setup_error", "reason": exc.reason}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        result = {"status": "setup_error", "reason": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    with open(result_path, "wb") as fh:
        fh.write(msgpack.packb(result, use_bin_type=True))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:  # a fork server: this module as __main__, as in a fresh child
        from replay.replayer.forkserver import serve

        sys.exit(serve(main, sys.argv))
    sys.exit(main(sys.argv))
