"""Code identity and environment of a recorded process.

What a replay needs to run the recorded code elsewhere: the project root and the
application's own source files (hashed, and embedded up to a size budget), the extra
``sys.path`` entries the process had, library versions, the time zone and the hash seed.
Computed only when a snapshot is written; file hashes are cached per process.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
import threading
from typing import Any, Final

MAX_SOURCE_FILE_BYTES: Final = 1 << 20  # a file larger than this is hashed, not embedded
MAX_SOURCES_BYTES: Final = 8 << 20  # embedded sources per snapshot
_VENDOR_DIRS: Final = ("site-packages", "dist-packages", ".venv", "venv", ".tox", "node_modules")

_cache_lock = threading.Lock()
_file_cache: dict[str, tuple[int, int, str, str | None]] = {}
_dist_cache: dict[str, list[str]] | None = None
_version_cache: dict[str, str] = {}


def project_root_of(module_name: str, module_file: str | None) -> str | None:
    """The directory that holds the module's top-level package (or the script's directory).

    For module ``a.b.c`` in ``/x/a/b/c.py`` this is ``/x``; for a package ``a.b`` in
    ``/x/a/b/__init__.py`` it is also ``/x``. Returns None when the module has no file.
    """
    if not module_file:
        return None
    path = os.path.abspath(module_file)
    depth = 1 if module_name == "__main__" else len(module_name.split("."))
    if os.path.basename(path) == "__init__.py":
        depth += 1
    root = path
    for _ in range(depth):
        root = os.path.dirname(root)
    return root


def vendored(path: str) -> bool:
    """Whether ``path`` has an installed-packages or virtualenv directory among its parts
    (``site-packages``, ``.venv``, ...): code there is a library, not the application."""
    return any(p in _VENDOR_DIRS for p in path.split(os.sep))


def _in_root(path: str, root: str) -> bool:
    rel = os.path.relpath(path, root)
    return not rel.startswith("..") and not vendored(rel)


def _hash_file(path: str) -> tuple[str, int, str | None]:
    st = os.stat(path)
    with _cache_lock:
        hit = _file_cache.get(path)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2], hit[1], hit[3]
    with open(path, "rb") as fh:
        data = fh.read()
    digest = hashlib.sha256(data).hexdigest()
    source: str | None = None
    if len(data) <= MAX_SOURCE_FILE_BYTES:
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError:
            source = None
    with _cache_lock:
        _file_cache[path] = (st.st_mtime_ns, st.st_size, digest, source)
    return digest, len(data), source


def collect_code(root: str, main_file: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Hash (and embed) the application's loaded source files under ``root``.

    Args:
        root: Project root.
        main_file: The script file when the entry point lives in ``__main__``.

    Returns:
        (records, notes): one record per file with ``path`` (relative, "/"-separated),
        ``module``, ``sha256``, ``size`` and ``source`` (None when not embedded), and notes
        about files that were hashed but not embedded.
    """
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    budget = MAX_SOURCES_BYTES
    seen: set[str] = set()
    loaded = [(name, getattr(module, "__file__", None)) for name, module in list(sys.modules.items())]
    if main_file and not any(isinstance(f, str) and os.path.abspath(f) == main_file for _, f in loaded):
        loaded.append(("__main__", main_file))  # a script run by runpy has left sys.modules
    for name, file in loaded:
        if not isinstance(file, str) or not file.endswith(".py"):
            continue
        path = os.path.abspath(file)
        if name.partition(".")[0] == "replay" or path in seen or not _in_root(path, root):
            continue
        if name == "__main__" and path != main_file:
            continue
        seen.add(path)
        try:
            digest, size, source = _hash_file(path)
        except OSError as exc:
            notes.append(f"{path}: not readable ({exc.strerror})")
            continue
        if source is not None and size > budget:
            notes.append(f"{path}: not embedded (source budget of {MAX_SOURCES_BYTES} bytes used)")
            source = None
        elif source is None:
            notes.append(f"{path}: not embedded (larger than {MAX_SOURCE_FILE_BYTES} bytes or not UTF-8)")
        else:
            budget -= size
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        records.append({"path": rel, "module": name, "sha256": digest, "size": size, "source": source})
    records.sort(key=lambda r: r["path"])
    return records, notes


def _distributions() -> dict[str, list[str]]:
    global _dist_cache
    if _dist_cache is None:
        from importlib import metadata

        try:
            _dist_cache = dict(metadata.packages_distributions())
        except Exception:  # noqa: BLE001 - broken metadata must not stop capture
            _dist_cache = {}
    return _dist_cache


def library_versions(exclude: set[str]) -> dict[str, str]:
    """Versions of the installed distributions whose top-level modules are loaded.

    Each version is read once per process (parsing a distribution's metadata costs about
    0.1 ms, and a web app loads dozens): the code a process runs was loaded from the version
    installed when it was imported, even if the package is upgraded on disk later.
    """
    from importlib import metadata

    tops = {n.partition(".")[0] for n in list(sys.modules)} - set(sys.stdlib_module_names) - exclude
    out: dict[str, str] = {}
    dists = _distributions()
    for top in sorted(tops):
        for dist in dists.get(top, []):
            version = _version_cache.get(dist)
            if version is None:
                try:
                    version = _version_cache[dist] = metadata.version(dist)
                except Exception:  # noqa: BLE001, S112
                    continue
            out[dist] = version
    return out


def local_timezone() -> dict[str, Any]:
    """The process's local time zone: IANA key when known, and the C library's view."""
    import time

    key = os.environ.get("TZ") or None
    if key is None:
        try:
            target = os.path.realpath("/etc/localtime")
            if "zoneinfo" + os.sep in target:
                key = target.split("zoneinfo" + os.sep, 1)[1]
        except OSError:
            key = None
    return {
        "key": key,
        "tzname": list(time.tzname),
        "timezone": time.timezone,
        "altzone": time.altzone,
        "daylight": time.daylight,
    }


def hash_seed() -> str | None:
    """The recorded hash seed: the PYTHONHASHSEED value, "0" if disabled, None if random."""
    if not sys.flags.hash_randomization:
        return "0"
    seed = os.environ.get("PYTHONHASHSEED")
    if seed and seed != "random":
        return seed
    return None


def extra_sys_path(root: str) -> list[str]:
    """``sys.path`` entries other than the project root, the standard library and site dirs.

    A baseline replay adds those that exist on the replaying machine, so code the recorded
    process found there (a vendored folder, a PYTHONPATH entry) is found again.
    """
    import site
    import sysconfig

    skip = {os.path.abspath(p) for p in (sysconfig.get_paths().values())}
    skip.update(os.path.abspath(p) for p in site.getsitepackages() + [site.getusersitepackages()])
    out = []
    for entry in sys.path:
        if not entry:
            continue
        path = os.path.abspath(entry)
        if path == root or path in skip or not os.path.isdir(path):
            continue
        if path.startswith(sys.base_prefix) or path.startswith(sys.prefix):
            continue
        out.append(path)
    return out


# Environment variables whose names look like secrets are withheld from the environment
# record (their names are kept). Values read during the call are on the tape regardless.
_SECRET_NAME = re.compile(
    r"(?i)(secret|token|passw|pwd|api.?key|private|credential|auth|cookie|session|signature|"
    r"dsn|database_url|conn.*str|_key$|^key$|access.?key)"
)


def environ_snapshot() -> tuple[dict[str, str], list[str]]:
    """The process environment at capture time, minus secret-looking names.

    A candidate that reads a variable the original call never read is answered from this
    record (the value the process really had), instead of diverging.

    Returns:
        (variables, withheld names).
    """
    values: dict[str, str] = {}
    withheld: list[str] = []
    for name, value in dict(os.environ).items():
        if _SECRET_NAME.search(name):
            withheld.append(name)
        else:
            values[name] = value
    return values, sorted(withheld)


def environment(root: str, app_packages: set[str]) -> dict[str, Any]:
    """The environment record of a snapshot."""
    environ, withheld = environ_snapshot()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "cwd": os.getcwd(),
        "argv": list(sys.argv[:16]),
        "pid": os.getpid(),
        "project_root": root,
        "extra_sys_path": extra_sys_path(root),
        "libraries": library_versions(app_packages | {"replay"}),
        "timezone": local_timezone(),
        "hash_seed": hash_seed(),
        "environ": environ,
        "environ_withheld": withheld,
    }
