"""Freeze golden snapshot files: write ``manifest.json`` beside them.

Run once when a format version is released, from the repository root::

    python tests/golden/freeze.py tests/golden/v1.1

The manifest holds, per file, the format version, the header, and for each section the
record count and the SHA-256 of the records re-packed with msgpack. ``test_golden.py``
checks that today's reader still reads every frozen file to the same values; a change
that breaks it is a format change and needs a new version (docs/snapshot-format.md).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import msgpack

from replay.snapshot import Section, SnapshotFile


def describe(path: Path) -> dict:
    with SnapshotFile(path) as f:
        sections = {}
        for section in f.sections:
            digest = hashlib.sha256()
            count = 0
            for record in f.iter_records(section):
                digest.update(msgpack.packb(record, use_bin_type=True))
                count += 1
            sections[Section.name(section)] = {"records": count, "sha256": digest.hexdigest()}
        return {"version": list(f.version), "header": f.header, "sections": sections,
                "size_bytes": f.size_bytes}


def main(directory: str) -> None:
    root = Path(directory)
    manifest = {p.name: describe(p) for p in sorted(root.glob("*.rsnap"))}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"froze {len(manifest)} files in {root}")


if __name__ == "__main__":
    main(sys.argv[1])
