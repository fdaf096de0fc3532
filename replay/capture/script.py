"""Record a whole script or ``-m`` module as one entry point.

``python -m replay.capture.script [--on always|error] [--dir DIR] [--snapshot-file F] --
script.py args`` (or ``-- -m package.module args``) runs the program as ``__main__`` with the
interceptors installed and the whole run recorded: the entry point is the script (kind
``script``, its argument the argv), the outcome is its exit status (``sys.exit(n)`` or the
end of the file: status 0) or the exception that ended it. What the program printed is kept
in the outcome (``stdout``, at most 1 MiB, display only) so ``replay check`` can compare
runs. ``replay record`` and ``replay check`` use this module.
"""

from __future__ import annotations

import io
import os
import runpy
import sys
from typing import Any, Final

from replay.capture.boundary import ACTIVE
from replay.capture.identity import project_root_of
from replay.capture.interceptors import REAL, install
from replay.capture.recorder import Recorder, describe_exception, write_snapshot
from replay.snapshot.codec import Encoder

MAX_OUTPUT: Final = 1 << 20
SCRIPT_QUALNAME: Final = "<script>"


class _TeeBuffer(io.BufferedIOBase):
    """``Tee.buffer``: bytes written here go through the tee (kept as UTF-8 text)."""

    def __init__(self, tee: Tee):
        self.tee = tee

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.tee.write(bytes(data))

    def flush(self) -> None:
        self.tee.flush()


class Tee(io.TextIOBase):
    """A text stream that writes through to ``inner`` and keeps the first ``limit`` characters."""

    def __init__(self, inner: Any, limit: int = MAX_OUTPUT, passthrough: bool = True):
        self.inner = inner
        self.limit = limit
        self.passthrough = passthrough
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        if isinstance(text, bytes | bytearray):  # some libraries write bytes to sys.stdout
            raw = bytes(text)
            if self.passthrough and self.inner is not None and hasattr(self.inner, "buffer"):
                self.inner.flush()
                self.inner.buffer.write(raw)
                self._keep(raw.decode("utf-8", "replace"))
                return len(raw)
            text = raw.decode("utf-8", "replace")
        self._keep(text)
        if self.passthrough and self.inner is not None:
            self.inner.write(text)
        return len(text)

    def _keep(self, text: str) -> None:
        if self.size < self.limit:
            part = text[: self.limit - self.size]
            self.parts.append(part)
            self.size += len(part)

    def flush(self) -> None:
        if self.passthrough and self.inner is not None:
            self.inner.flush()

    def text(self) -> str:
        """What was written (at most ``limit`` characters)."""
        return "".join(self.parts)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", None) or "utf-8"

    @property
    def buffer(self) -> _TeeBuffer:
        """The binary side (``sys.stdout.buffer.write(b"...")``, as pygments' CLI does)."""
        return _TeeBuffer(self)

    def isatty(self) -> bool:
        return bool(self.passthrough and self.inner is not None and self.inner.isatty())


def parse_target(argv: list[str]) -> tuple[str, str, list[str]]:
    """``(kind, target, sys.argv)`` for ``script.py args`` or ``-m module args``.

    Raises:
        ValueError: nothing to run.
    """
    if not argv:
        raise ValueError("nothing to run: give a script path or -m MODULE")
    if argv[0] == "-m":
        if len(argv) < 2:
            raise ValueError("-m needs a module name")
        return "module", argv[1], [argv[1], *argv[2:]]
    return "path", argv[0], list(argv)


def script_file(kind: str, target: str) -> str:
    """The file a script target runs (for ``-m``, the module's file without running it)."""
    if kind == "path":
        return os.path.abspath(target)
    import importlib.util

    spec = importlib.util.find_spec(target)
    if spec is None or not spec.origin:
        raise ValueError(f"no module named {target}")
    if spec.submodule_search_locations is not None:  # a package: python -m runs its __main__
        main = importlib.util.find_spec(f"{target}.__main__")
        if main is None or not main.origin:
            raise ValueError(f"{target} is a package without __main__")
        return main.origin
    return spec.origin


def run_target(kind: str, target: str, argv: list[str]) -> int:
    """Run the program as ``__main__`` (like ``python``) and return its exit status.

    Raises:
        Exception: whatever the program raised (not SystemExit: that is the status).
    """
    saved = sys.argv
    sys.argv = list(argv)
    try:
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0


def entry_record(kind: str, target: str, argv: list[str]) -> dict[str, Any]:
    """The entry record of a script run: kind ``script``, ``args`` = [argv], the target."""
    file = script_file(kind, target)
    module = target if kind == "module" else "__main__"
    root = project_root_of(module, file) if kind == "module" else os.path.dirname(file)
    enc = Encoder()
    return {
        "module": "__main__",
        "qualname": SCRIPT_QUALNAME,
        "file": file,
        "kind": "script",
        "script": {"kind": kind, "target": target if kind == "module" else os.path.basename(file)},
        "project_root": root,
        "main_file": file,
        "args": enc.encode([list(argv)]),
        "kwargs": enc.encode({}),
        "reasons": [],
    }


def record(argv: list[str], *, directory: str, on: str = "always") -> tuple[int, str | None]:
    """Run and record a program; returns (exit status, snapshot path or None).

    Args:
        argv: ``[script.py, args...]`` or ``["-m", module, args...]``.
        directory: Where the snapshot goes.
        on: ``always``, or ``error`` (write only when the program raised or exited non-zero).
    """
    kind, target, sys_argv = parse_target(argv)
    install()
    entry = entry_record(kind, target, sys_argv)
    if kind == "path":
        # absolute, as python itself makes __main__.__file__ (3.9+), and so that runpy does
        # not ask the (recorded) working directory to resolve it; replay runs it the same way
        target = entry["file"]
        sys.path.insert(0, os.path.dirname(target))
    rec = Recorder(app_roots=[entry["project_root"]])
    tee = Tee(sys.stdout)
    saved_stdout = sys.stdout
    sys.stdout = tee  # type: ignore[assignment]
    t0 = REAL["time.perf_counter_ns"]()
    token = ACTIVE.set(rec)
    failure: BaseException | None = None
    status = 0
    try:
        status = run_target(kind, target, sys_argv)
    except Exception as exc:  # noqa: BLE001 - the program's failure is the outcome
        failure = exc
        status = 1
    finally:
        ACTIVE.reset(token)
        rec.close()
        sys.stdout = saved_stdout
    if failure is not None:
        outcome = describe_exception(failure, entry["project_root"])
        import traceback

        traceback.print_exception(failure)
    else:
        outcome = {"kind": "return", "value": status, "lossy": [], "display": status}
    outcome["duration_ns"] = REAL["time.perf_counter_ns"]() - t0
    outcome["stdout"] = tee.text()
    if on == "error" and failure is None and status == 0:
        return status, None
    path = write_snapshot(directory=directory, entry=entry, recorder=rec, outcome=outcome)
    return status, path


def main(argv: list[str]) -> int:
    """``python -m replay.capture.script [--on MODE] [--dir DIR] [--path-file F] -- PROGRAM...``."""
    on, directory, path_file = "always", os.environ.get("REPLAY_DIR") or "snapshots", None
    args = list(argv)
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt in ("--on", "--dir", "--path-file") and args:
            value = args.pop(0)
            if opt == "--on":
                on = value
            elif opt == "--dir":
                directory = value
            else:
                path_file = value
        else:
            print(f"replay.capture.script: unknown option {opt}", file=sys.stderr)
            return 2
    if args and args[0] == "--":
        args.pop(0)
    try:
        status, path = record(args, directory=directory, on=on)
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if path_file and path:
        with open(path_file, "w", encoding="utf-8") as fh:
            fh.write(path)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
