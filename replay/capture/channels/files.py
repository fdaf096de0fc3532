"""The files channel: reads and metadata of data files, and writes as effects.

Recorded (channel ``file``), while a session is active:

* ``open`` / ``io.open`` (so ``pathlib.Path.open/read_text/read_bytes/write_text/...``,
  ``codecs.open``): a read records the file's whole content once, at open (op ``open``,
  request ``(path, mode)``, answer ``{"data": bytes, "encoding": ...}``); the application
  gets an in-memory file object built from that content, in record and replay alike, with
  the ``name``, ``mode``, encoding, errors and newline handling it asked for. A text-mode
  open with ``encoding=None`` records the encoding actually used (the locale's then), so a
  replay under another locale decodes the same characters.
* Writes (modes ``w``, ``a``, ``x`` and ``+``) are effects. The open is an interaction
  (op ``open``: its answer is the encoding and, for ``r+``/``a+``, the prior content; or
  the error), and the data written is one effect (op ``write``, request ``(path, mode,
  data)``) recorded when the file is closed (or garbage-collected). While recording the
  write really happens; on replay nothing touches the disk: the application writes into
  an in-memory sink and the effect is matched against the recording at close.
* ``os.stat``, ``os.lstat`` (and so ``os.path.exists/isfile/isdir/islink/getsize/
  getmtime`` and ``pathlib.Path.exists/is_file/is_dir/stat``), ``os.listdir`` (so
  ``Path.iterdir``), ``os.scandir`` (so ``glob``, ``Path.glob``, ``os.walk``): answers are
  recorded as plain data and rebuilt (a real ``os.stat_result``; DirEntry-like entries).
* ``os.remove/unlink``, ``os.rename/replace``, ``os.mkdir`` (so ``os.makedirs``),
  ``os.rmdir``, ``os.chmod`` and ``os.utime`` (so ``shutil.copy/copy2/copystat``) are
  effects: performed while recording, never on replay.

A failed call (``FileNotFoundError``, ``PermissionError``, ...) is recorded and raised
again on replay, with the errno, message and file name the real call gave.

Which files: by default every file that is not code. Not recorded (the real function
runs): paths under ``sys.prefix``/``sys.base_prefix``/``sys.exec_prefix``,
``site-packages``/``dist-packages`` directories, this package, ``/proc``, ``/sys``,
``/dev``, and ``.py/.pyc/.pyi/.so/.pyd`` files under the session's application roots (or
given as relative paths). Data files under an application root are recorded with the path
written ``<app>/data/prices.json``, so the recording and a replay running another copy of
the code agree. Relative paths are recorded as given (normalised): replay runs in another
working directory. :func:`configure` (or ``$REPLAY_FILE_INCLUDE`` /
``$REPLAY_FILE_EXCLUDE``, ``os.pathsep``-separated) narrows this: with ``include`` only
files under those directories are recorded; ``exclude`` directories never are.

Not intercepted: integer file descriptors (``open(fd)``, ``os.fdopen``, ``os.scandir(fd)``),
calls with ``dir_fd``, ``os.open``/``os.read``/``os.write``, ``io.FileIO``,
``io.open_code``, ``_io.open`` (``tempfile``'s file objects), ``mmap``.

Matching: a candidate replay matches reads by ``(op, path)`` (text or binary, the content
is the same), writes by ``(path, mode, sha256 of the data)`` with the target ``(path,
mode)``: different data written to the same file is a *changed* effect.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import logging
import os
import site
import sys
from collections.abc import Callable
from typing import Any, Final

from replay.capture.boundary import (
    ACTIVE,
    PACKAGE_DIR,
    ChannelSpec,
    app_path,
    not_replayable,
    register_channel,
)

try:  # the C module behind os: never replaced by a channel (os.getcwd may be)
    import posix as _osmod
except ImportError:  # pragma: no cover - Windows
    import nt as _osmod  # type: ignore[no-redef]

log = logging.getLogger("replay.capture")

CHANNEL: Final = "file"
MAX_CONTENT: Final = 64 * 1024 * 1024  # bytes of one file read or written that are recorded
_CODE_SUFFIXES: Final = (".py", ".pyc", ".pyi", ".pyo", ".so", ".pyd")
_SYSTEM_DIRS: Final = ("/proc", "/sys", "/dev")
_EFFECT_OPS: Final = frozenset({"write", "remove", "rename", "replace", "mkdir", "rmdir", "chmod", "utime"})
_PACKAGE_DIR: Final = PACKAGE_DIR.rstrip(os.sep)

_real_open = io.open
_real_stat = os.stat
_real_lstat = os.lstat
_real_listdir = os.listdir
_real_access = os.access
_real_scandir = os.scandir
_real_remove = os.remove
_real_unlink = os.unlink
_real_rename = os.rename
_real_replace = os.replace
_real_mkdir = os.mkdir
_real_rmdir = os.rmdir
_real_chmod = os.chmod
_real_utime = os.utime
_real_getcwd = _osmod.getcwd
_real_fstat = _osmod.fstat

_installed = False


# ------------------------------------------------------------------------ configuration


def _abs_dirs(dirs: Any) -> tuple[str, ...]:
    out = []
    for d in dirs or ():
        if d:
            out.append(os.path.normpath(os.path.join(_real_getcwd(), os.fspath(d))))
    return tuple(out)


def _prefixes(dirs: Any) -> tuple[str, ...]:
    """Directories as prefixes for ``str.startswith`` (each ending with the separator)."""
    return tuple(d if d.endswith(os.sep) else d + os.sep for d in dirs)


def _default_skips() -> tuple[str, ...]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, getattr(sys, "base_exec_prefix", sys.prefix), _PACKAGE_DIR}
    with contextlib.suppress(Exception):  # some embedded interpreters lack these
        dirs.update(site.getsitepackages())
    with contextlib.suppress(Exception):
        dirs.add(site.getusersitepackages())
    return tuple(sorted(os.path.normpath(d) for d in dirs if d))


_include: tuple[str, ...] | None = None
_exclude: tuple[str, ...] = ()
_include_prefixes: tuple[str, ...] = ()
_exclude_prefixes: tuple[str, ...] = ()
_skip_dirs: tuple[str, ...] = _default_skips()
_skip_prefixes: tuple[str, ...] = _prefixes(_skip_dirs)
_always_skip_exact: tuple[str, ...] = (*_SYSTEM_DIRS, _PACKAGE_DIR)
_always_skip: tuple[str, ...] = _prefixes(_always_skip_exact)


def configure(include: list[str] | None = None, exclude: list[str] | None = None) -> None:
    """Choose which files are recorded (process-wide).

    Args:
        include: When given (and not empty), only files under these directories are
            recorded (the default code exclusions still apply to this package and to
            /proc, /sys, /dev).
        exclude: Files under these directories are never recorded.
    """
    global _include, _exclude, _include_prefixes, _exclude_prefixes
    _include = _abs_dirs(include) or None
    _exclude = _abs_dirs(exclude)
    _include_prefixes = _prefixes(_include or ())
    _exclude_prefixes = _prefixes(_exclude)


def _configure_from_environment() -> None:
    inc = [d for d in os.environ.get("REPLAY_FILE_INCLUDE", "").split(os.pathsep) if d]
    exc = [d for d in os.environ.get("REPLAY_FILE_EXCLUDE", "").split(os.pathsep) if d]
    configure(inc or None, exc)


def _under(path: str, dirs: tuple[str, ...] | list[str]) -> bool:
    return path.startswith(_prefixes(dirs)) or path in dirs


def _request_path(s: Any, file: Any) -> str | None:
    """The recorded form of a path argument, or None when the call is not recorded."""
    if isinstance(file, int):
        return None
    try:
        p = os.fspath(file)
    except TypeError:
        return None
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not isinstance(p, str) or "\x00" in p:
        return None
    relative = not os.path.isabs(p)
    absolute = os.path.normpath(os.path.join(_real_getcwd(), p) if relative else p)
    if absolute.startswith(_always_skip) or absolute in _always_skip_exact:
        return None
    if _exclude and (absolute.startswith(_exclude_prefixes) or absolute in _exclude):
        return None
    if _include is not None:
        if not (absolute.startswith(_include_prefixes) or absolute in _include):
            return None
    else:
        if absolute.startswith(_skip_prefixes) or absolute in _skip_dirs:
            return None
        parts = absolute.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return None
        if absolute.endswith(_CODE_SUFFIXES) and (relative or _under(absolute, s.app_roots)):
            return None
    if relative:
        return os.path.normpath(p) if p else p
    return app_path(absolute, s.app_roots) or absolute


# ------------------------------------------------------------------------------ helpers


def _norm_mode(mode: Any) -> str | None:
    """``r``, ``rb``, ``w``, ``ab``, ``r+``, ``w+b``, ... or None for a mode open() would refuse."""
    if not isinstance(mode, str):
        return None
    chars = set(mode)
    if len(chars) != len(mode) or not chars <= set("rwaxbt+"):
        return None
    kinds = chars & set("rwax")
    if len(kinds) != 1 or ("b" in chars and "t" in chars):
        return None
    return kinds.pop() + ("+" if "+" in chars else "") + ("b" if "b" in chars else "")


def _fileio_mode(nmode: str) -> str:
    # what FileIO.mode reports (Modules/_io/fileio.c mode_string)
    kind, plus = nmode[0], "+" in nmode
    if kind == "x":
        return "xb+" if plus else "xb"
    if kind == "a":
        return "ab+" if plus else "ab"
    if plus:
        return "rb+"
    return "rb" if kind == "r" else "wb"


def _valid_open_args(nmode: str, buffering: Any, encoding: Any, errors: Any, newline: Any, closefd: Any) -> bool:
    """False when real open() would refuse the arguments (it is then left to raise)."""
    if not closefd or not isinstance(buffering, int):
        return False
    if "b" in nmode:
        return encoding is None and errors is None and newline is None
    return buffering != 0 and newline in (None, "", "\n", "\r", "\r\n")


def stat_plain(st: os.stat_result) -> list[Any]:
    """An ``os.stat_result`` as plain data: its 10 sequence fields and the named extras."""
    _cls, (seq, extras) = st.__reduce__()  # type: ignore[misc]
    return [list(seq), dict(extras)]


def stat_result(plain: Any) -> os.stat_result:
    """Rebuild the ``os.stat_result`` recorded by :func:`stat_plain`."""
    return os.stat_result(tuple(plain[0]), dict(plain[1]))


def _data_node(data: Any) -> Any:
    return hashlib.sha256(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)).hexdigest()


def _raise_recorded(s: Any, op: str, inter: Any, given: Any, given2: Any = None) -> None:
    """Raise the recorded error of ``inter``: an OSError keeps errno, message and file names."""
    node = inter.error
    if isinstance(node, list) and len(node) >= 3 and node[0] == "exc" and isinstance(node[1], str):
        module, _, name = node[1].partition(":")
        cls = getattr(builtins, name, None) if module == "builtins" else None
        args = node[2]
        if (isinstance(cls, type) and issubclass(cls, OSError) and isinstance(args, list) and len(args) == 2
                and isinstance(args[0], int) and isinstance(args[1], str)):
            names: list[Any] = []
            if given is not None:
                names = [_fs(given)]
                if given2 is not None:
                    names += [0, _fs(given2)]
            raise cls(args[0], args[1], *names)
    s.answer(CHANNEL, op, inter)  # raises the decoded error
    raise OSError(f"replay: the recorded {op} failed")  # pragma: no cover - answer raised


def _fs(path: Any) -> Any:
    try:
        return os.fspath(path)
    except TypeError:
        return path


def _served(s: Any, op: str, args: tuple[Any, ...], given: Any, given2: Any = None) -> Any:
    """Replay: the recorded answer of a request, or its recorded error raised."""
    inter = s.find(CHANNEL, op, args)
    if inter.error is not None:
        _raise_recorded(s, op, inter, given, given2)
    return s.answer(CHANNEL, op, inter)


# ------------------------------------------------------------------------- memory files


def _memory_file(data: bytes, name: Any, mode: str, nmode: str, buffering: int, encoding: Any, errors: Any,
                 newline: Any) -> Any:
    """An in-memory file object shaped like what ``open(name, mode, ...)`` returns."""
    raw = io.BytesIO(data)
    raw.name = name  # type: ignore[attr-defined]
    raw.mode = _fileio_mode(nmode)  # type: ignore[attr-defined]
    if nmode[0] == "a":
        raw.seek(0, io.SEEK_END)
    if "b" in nmode and buffering == 0:
        return raw
    buffer: Any
    if "+" in nmode:
        buffer = io.BufferedRandom(raw)
    elif nmode[0] == "r":
        buffer = io.BufferedReader(raw)
    else:
        buffer = io.BufferedWriter(raw)
    if "b" in nmode:
        return buffer
    text = io.TextIOWrapper(buffer, encoding, errors, newline, line_buffering=buffering == 1)
    text.mode = mode  # type: ignore[misc]
    return text


class RecordedWrite:
    """A file opened for writing inside a session: writes are collected into one effect.

    Wraps the real file while recording and an in-memory sink on replay; every attribute
    not defined here is the wrapped file's. The effect (``write``, ``(path, mode, data)``)
    is recorded (or matched, on replay) when the file is closed, or garbage-collected.
    """

    def __init__(self, inner: Any, session: Any, path: str, nmode: str):
        self._inner = inner
        self._session = session
        self._path = path
        self._nmode = nmode
        self._text = "b" not in nmode
        self._chunks: list[Any] = []
        self._size = 0
        self._hash: Any = None
        self._done = False

    # what the application writes
    def write(self, data: Any) -> Any:
        n = self._inner.write(data)
        try:
            self._collect(data, n)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not collect a file write", exc_info=True)
        return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _collect(self, data: Any, n: Any) -> None:
        if self._text:
            chunk = data if isinstance(data, str) else str(data)
        else:
            chunk = bytes(data)
            if isinstance(n, int) and 0 <= n < len(chunk):
                chunk = chunk[:n]
        self._size += len(chunk)
        if self._hash is None and self._size > MAX_CONTENT:
            self._hash = hashlib.sha256()
            for c in self._chunks:
                self._hash.update(c.encode("utf-8", "surrogatepass") if self._text else c)
            self._chunks = []
        if self._hash is not None:
            self._hash.update(chunk.encode("utf-8", "surrogatepass") if self._text else chunk)
        else:
            self._chunks.append(chunk)

    def _data(self) -> Any:
        if self._hash is not None:
            return ["sha256", self._hash.hexdigest(), self._size]
        return ("" if self._text else b"").join(self._chunks)

    def close(self) -> None:
        if self._done:
            self._inner.close()
            return
        self._done = True
        try:
            self._inner.close()
        finally:
            self._finish()

    def _finish(self) -> None:
        s = self._session
        args = (self._path, self._nmode, self._data())
        if s.replaying:
            s.find(CHANNEL, "write", args)  # ReplayDiverged when no recorded effect answers it
            return
        try:
            s.record(CHANNEL, "write", args)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not record a file write", exc_info=True)

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)

    def __enter__(self) -> RecordedWrite:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return next(self._inner)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<recorded write {self._inner!r}>"

    def __del__(self) -> None:
        if not self.__dict__.get("_done", True):
            with contextlib.suppress(BaseException):  # a divergence is kept on the player
                self.close()


# ------------------------------------------------------------------------------- open


def _open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None, errors: str | None = None,
          newline: str | None = None, closefd: bool = True, opener: Callable[[str, int], int] | None = None) -> Any:
    s = ACTIVE.get()
    if s is None:
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    return _open_in_session(s, file, mode, buffering, encoding, errors, newline, closefd, opener)


_open.__name__ = "open"
_open.__qualname__ = "open"
_open.__doc__ = _real_open.__doc__


def _open_in_session(s: Any, file: Any, mode: Any, buffering: Any, encoding: Any, errors: Any, newline: Any,
                     closefd: Any, opener: Any) -> Any:
    try:
        path = _request_path(s, file)
        nmode = _norm_mode(mode) if path is not None else None
        ok = nmode is not None and _valid_open_args(nmode, buffering, encoding, errors, newline, closefd)
    except Exception:  # noqa: BLE001 - fail open
        log.warning("replay: file channel error", exc_info=True)
        ok = False
    if not ok:
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    assert path is not None and nmode is not None
    args = (path, nmode)
    name = _fs(file)
    if s.replaying:
        answer = _served(s, "open", args, file)
        answer = answer if isinstance(answer, dict) else {}
        enc = encoding if encoding is not None else answer.get("encoding")
        if nmode[0] == "r" and "+" not in nmode:
            return _memory_file(answer.get("data") or b"", name, mode, nmode, buffering, enc, errors, newline)
        sink = _memory_file(answer.get("initial") or b"", name, mode, nmode, buffering, enc, errors, newline)
        return RecordedWrite(sink, s, path, nmode)
    if nmode[0] == "r" and "+" not in nmode:
        return _record_read(s, args, file, name, mode, nmode, buffering, encoding, errors, newline, opener)
    return _record_write(s, args, file, mode, nmode, buffering, encoding, errors, newline, opener)


def _read_all(file: Any, opener: Any) -> bytes | None:
    """The content of a file (None: larger than MAX_CONTENT); raises what open/read raise."""
    with _real_open(file, "rb", -1, None, None, None, True, opener) as fh:
        try:
            size = _real_fstat(fh.fileno()).st_size
        except OSError:
            size = 0
        if size > MAX_CONTENT:
            return None
        data = fh.read(MAX_CONTENT + 1)
        return None if len(data) > MAX_CONTENT else data


def _record_read(s: Any, args: tuple[Any, ...], file: Any, name: Any, mode: str, nmode: str, buffering: int,
                 encoding: Any, errors: Any, newline: Any, opener: Any) -> Any:
    token = ACTIVE.set(None)
    try:
        data = _read_all(file, opener)
    except Exception as exc:
        ACTIVE.reset(token)
        s.record(CHANNEL, "open", args, None, exc)
        raise
    ACTIVE.reset(token)
    if data is None:
        not_replayable(s, f"file {args[0]} is larger than {MAX_CONTENT} bytes: its content was not recorded")
        return _real_open(file, mode, buffering, encoding, errors, newline, True, opener)
    result = _memory_file(data, name, mode, nmode, buffering, encoding, errors, newline)
    s.record(CHANNEL, "open", args, {"data": data, "encoding": getattr(result, "encoding", None)})
    return result


def _record_write(s: Any, args: tuple[Any, ...], file: Any, mode: str, nmode: str, buffering: int, encoding: Any,
                  errors: Any, newline: Any, opener: Any) -> Any:
    token = ACTIVE.set(None)
    initial = None
    try:
        if nmode[0] in "ra" and "+" in nmode:
            try:
                initial = _read_all(file, opener)
            except OSError:
                initial = b""  # open() below reports the problem (or creates the file)
            if initial is None:
                not_replayable(s, f"file {args[0]} is larger than {MAX_CONTENT} bytes: its content was not recorded")
        inner = _real_open(file, mode, buffering, encoding, errors, newline, True, opener)
    except Exception as exc:
        ACTIVE.reset(token)
        s.record(CHANNEL, "open", args, None, exc)
        raise
    ACTIVE.reset(token)
    s.record(CHANNEL, "open", args, {"encoding": getattr(inner, "encoding", None), "initial": initial})
    return RecordedWrite(inner, s, args[0], nmode)


# ------------------------------------------------------------------------ directories


class RecordedDirEntry:
    """An ``os.DirEntry`` served from the tape (recorded: name, types and stat results)."""

    __slots__ = ("name", "path", "_is_dir", "_is_file", "_is_symlink", "_stat", "_lstat")

    def __init__(self, parent: Any, record: list[Any]):
        name = record[0]
        self.name = name
        if isinstance(name, bytes):
            parent = os.fsencode(parent)
        self.path = os.path.join(parent, name)
        self._is_dir, self._is_file, self._is_symlink = bool(record[1]), bool(record[2]), bool(record[3])
        self._stat = record[4]
        self._lstat = record[5] if record[5] is not None else (record[4] if not record[3] else None)

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._is_dir if follow_symlinks or not self._is_symlink else False

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._is_file if follow_symlinks or not self._is_symlink else False

    def is_symlink(self) -> bool:
        return self._is_symlink

    def is_junction(self) -> bool:
        return False

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        plain = self._stat if follow_symlinks else self._lstat
        if plain is None:
            raise FileNotFoundError(2, "No such file or directory", self.path)
        return stat_result(plain)

    def inode(self) -> int:
        plain = self._lstat or self._stat
        return int(plain[0][1]) if plain else 0

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"


class RecordedScandir:
    """The iterator ``os.scandir`` returns, over recorded entries (a context manager too)."""

    def __init__(self, entries: list[RecordedDirEntry]):
        self._it = iter(entries)

    def __iter__(self) -> RecordedScandir:
        return self

    def __next__(self) -> RecordedDirEntry:
        return next(self._it)

    def close(self) -> None:
        self._it = iter(())

    def __enter__(self) -> RecordedScandir:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _scan_records(path: Any) -> list[list[Any]]:
    out = []
    with _real_scandir(path) as it:
        for entry in it:
            is_link = entry.is_symlink()
            try:
                st: Any = stat_plain(entry.stat())
            except OSError:
                st = None
            lst = None
            if is_link:
                try:
                    lst = stat_plain(entry.stat(follow_symlinks=False))
                except OSError:
                    lst = None
            out.append([entry.name, entry.is_dir(), entry.is_file(), is_link, st, lst])
    return out


def _scandir(path: Any = None) -> Any:
    s = ACTIVE.get()
    if s is None:
        return _real_scandir(path)
    req = _request_path(s, "." if path is None else path)
    if req is None:
        return _real_scandir(path)
    given = "." if path is None else _fs(path)
    parent = os.fsdecode(given) if isinstance(given, bytes) else given
    if s.replaying:
        records = _served(s, "scandir", (req,), given)
    else:
        records = s.call(CHANNEL, "scandir", (req,), lambda: _scan_records(path))
    return RecordedScandir([RecordedDirEntry(parent, r) for r in records])


_scandir.__name__ = "scandir"


def _listdir(path: Any = None) -> Any:
    s = ACTIVE.get()
    if s is None:
        return _real_listdir(path)
    req = _request_path(s, "." if path is None else path)
    if req is None:
        return _real_listdir(path)
    if s.replaying:
        return list(_served(s, "listdir", (req,), "." if path is None else path))
    return s.call(CHANNEL, "listdir", (req,), lambda: _real_listdir(path))


_listdir.__name__ = "listdir"


def _stat(path: Any, *, dir_fd: Any = None, follow_symlinks: bool = True) -> os.stat_result:
    s = ACTIVE.get()
    if s is None or dir_fd is not None:
        return _real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    return _stat_in_session(s, "stat" if follow_symlinks else "lstat", path, follow_symlinks)


def _lstat(path: Any, *, dir_fd: Any = None) -> os.stat_result:
    s = ACTIVE.get()
    if s is None or dir_fd is not None:
        return _real_lstat(path, dir_fd=dir_fd)
    return _stat_in_session(s, "lstat", path, False)


_stat.__name__ = "stat"
_lstat.__name__ = "lstat"


def _access(path: Any, mode: int, *, dir_fd: Any = None, effective_ids: bool = False,
            follow_symlinks: bool = True) -> bool:
    """``os.access``: whether the file was there and usable, as the recording saw it."""
    s = ACTIVE.get()
    if s is None or dir_fd is not None or effective_ids or not follow_symlinks or isinstance(path, int):
        return _real_access(path, mode, dir_fd=dir_fd, effective_ids=effective_ids, follow_symlinks=follow_symlinks)
    req = _request_path(s, path)
    if req is None:
        return _real_access(path, mode)
    if s.replaying:
        return bool(_served(s, "access", (req, int(mode)), path))
    return bool(s.call(CHANNEL, "access", (req, int(mode)), lambda: _real_access(path, mode)))


_access.__name__ = "access"


def _stat_in_session(s: Any, op: str, path: Any, follow: bool) -> os.stat_result:
    req = _request_path(s, path)
    if req is None:
        return _real_stat(path, follow_symlinks=follow)
    if s.replaying:
        return stat_result(_served(s, op, (req,), path))
    return stat_result(s.call(CHANNEL, op, (req,), lambda: stat_plain(_real_stat(path, follow_symlinks=follow))))


# ---------------------------------------------------------------------------- effects


def _effect1(op: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def fn(path: Any, *, dir_fd: Any = None) -> Any:
        s = ACTIVE.get()
        if s is None or dir_fd is not None:
            return real(path, dir_fd=dir_fd)
        req = _request_path(s, path)
        if req is None:
            return real(path)
        if s.replaying:
            return _served(s, op, (req,), path)
        return s.call(CHANNEL, op, (req,), lambda: real(path))

    fn.__name__ = fn.__qualname__ = real.__name__
    fn.__doc__ = real.__doc__
    return fn


def _mkdir(path: Any, mode: int = 0o777, *, dir_fd: Any = None) -> None:
    s = ACTIVE.get()
    if s is None or dir_fd is not None:
        return _real_mkdir(path, mode, dir_fd=dir_fd)
    req = _request_path(s, path)
    if req is None:
        return _real_mkdir(path, mode)
    if s.replaying:
        return _served(s, "mkdir", (req, mode), path)  # type: ignore[no-any-return]
    return s.call(CHANNEL, "mkdir", (req, mode), lambda: _real_mkdir(path, mode))  # type: ignore[no-any-return]


def _chmod(path: Any, mode: int, *, dir_fd: Any = None, follow_symlinks: bool = True) -> None:
    s = ACTIVE.get()
    if s is None or dir_fd is not None:
        return _real_chmod(path, mode, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    req = _request_path(s, path)
    if req is None:
        return _real_chmod(path, mode, follow_symlinks=follow_symlinks)
    args = (req, mode) if follow_symlinks else (req, mode, False)
    if s.replaying:
        return _served(s, "chmod", args, path)  # type: ignore[no-any-return]
    return s.call(CHANNEL, "chmod", args,  # type: ignore[no-any-return]
                  lambda: _real_chmod(path, mode, follow_symlinks=follow_symlinks))


def _utime(path: Any, times: Any = None, *, ns: Any = None, dir_fd: Any = None, follow_symlinks: bool = True) -> None:
    s = ACTIVE.get()
    kw: dict[str, Any] = {"follow_symlinks": follow_symlinks}
    if ns is not None:
        kw["ns"] = ns
    if s is None or dir_fd is not None:
        return _real_utime(path, times, dir_fd=dir_fd, **kw)
    req = _request_path(s, path)
    if req is None:
        return _real_utime(path, times, **kw)
    plain = tuple(times) if isinstance(times, tuple | list) else times
    args = (req, plain, tuple(ns) if isinstance(ns, tuple | list) else ns, follow_symlinks)
    if s.replaying:
        return _served(s, "utime", args, path)  # type: ignore[no-any-return]
    return s.call(CHANNEL, "utime", args, lambda: _real_utime(path, times, **kw))  # type: ignore[no-any-return]


_mkdir.__name__ = "mkdir"
_chmod.__name__ = "chmod"
_utime.__name__ = "utime"


def _effect2(op: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def fn(src: Any, dst: Any, *, src_dir_fd: Any = None, dst_dir_fd: Any = None) -> Any:
        s = ACTIVE.get()
        if s is None or src_dir_fd is not None or dst_dir_fd is not None:
            return real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        a, b = _request_path(s, src), _request_path(s, dst)
        if a is None or b is None:
            return real(src, dst)
        if s.replaying:
            return _served(s, op, (a, b), src, dst)
        return s.call(CHANNEL, op, (a, b), lambda: real(src, dst))

    fn.__name__ = fn.__qualname__ = real.__name__
    fn.__doc__ = real.__doc__
    return fn


# --------------------------------------------------------------------------- matching


def _key(op: str, args: Any) -> Any:
    if op == "open" and isinstance(args, tuple) and len(args) == 2:
        path, nmode = args
        if isinstance(nmode, str) and nmode[:1] == "r" and "+" not in nmode:
            return ("read", path)  # text or binary: the same content answers both
        return ("open", path, nmode)
    if op == "write" and isinstance(args, tuple) and len(args) == 3:
        data = args[2]
        digest = data[1] if isinstance(data, list) else _data_node(data)
        return (args[0], args[1], digest)
    return args


def _is_effect(op: str, args: Any) -> bool:
    return op in _EFFECT_OPS


def _target(op: str, args: Any) -> Any:
    if op == "write" and isinstance(args, tuple):
        return tuple(args[:2])
    return args


# constant: a candidate that reads or stats a path more often than recorded (requests stats
# ~/.netrc on every call) gets the last recorded answer for that path, counted as reused.
SPEC: Final = register_channel(ChannelSpec(CHANNEL, key=_key, effect=_is_effect, target=_target, constant=True))


# ---------------------------------------------------------------------------- install


def install() -> None:
    """Replace ``open``/``io.open`` and the ``os`` file functions (once per process)."""
    global _installed
    if _installed:
        return
    from replay.capture.interceptors import replace

    _configure_from_environment()
    replace(builtins, "open", _open, gate=True)
    replace(io, "open", _open, gate=True)
    replace(os, "stat", _stat, gate=True)
    replace(os, "lstat", _lstat, gate=True)
    replace(os, "listdir", _listdir, gate=True)
    replace(os, "access", _access, gate=True)
    replace(os, "scandir", _scandir, gate=True)
    replace(os, "remove", _effect1("remove", _real_remove))
    replace(os, "unlink", _effect1("remove", _real_unlink))
    replace(os, "mkdir", _mkdir)
    replace(os, "rmdir", _effect1("rmdir", _real_rmdir))
    replace(os, "chmod", _chmod)
    replace(os, "utime", _utime)
    replace(os, "rename", _effect2("rename", _real_rename))
    replace(os, "replace", _effect2("replace", _real_replace))
    _installed = True
