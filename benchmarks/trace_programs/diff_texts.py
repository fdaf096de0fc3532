"""A real library as application code for ``bench_trace.py``: the standard library's ``difflib``.

Builds two texts of N lines that differ here and there (deterministically), then computes a
unified diff and a similarity ratio. Traced with ``include=["*/difflib.py"]``.

Usage: ``python diff_texts.py N``.
"""

import difflib
import sys

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def texts(n: int) -> tuple[list[str], list[str]]:
    old = [f"{WORDS[i % 10]} {WORDS[i * 7 % 10]} line {i % 97}\n" for i in range(n)]
    new = list(old)
    for i in range(0, n, 13):
        new[i] = new[i].replace("line", "row")
    for i in range(5, n, 29):
        new.insert(i, f"inserted {i}\n")
    del new[3::41]
    return old, new


def main(n: int) -> None:
    old, new = texts(n)
    diff = list(difflib.unified_diff(old, new, "old.txt", "new.txt"))
    ratio = difflib.SequenceMatcher(None, old[: n // 4], new[: n // 4]).ratio()
    print(len(diff), round(ratio, 4))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
