"""Myers' O(ND) difference algorithm, bounded: the matching blocks of a shortest edit script.

E. W. Myers, "An O(ND) Difference Algorithm and Its Variations", Algorithmica 1 (1986)
251-266: the greedy forward algorithm, keeping each round's frontier for the backtrack.
Used by :mod:`replay.diff.align` for long differing middles, where
:class:`difflib.SequenceMatcher` (without autojunk) would be quadratic.
"""

from __future__ import annotations


def myers_blocks(a: list[int], b: list[int], max_edits: int) -> list[tuple[int, int, int]] | None:
    """Matching blocks ``(i, j, size)`` of a shortest edit script from ``a`` to ``b``.

    Myers' greedy O((N+M)D) algorithm (Algorithmica 1:251-266, 1986), keeping the frontier of
    every round for the backtrack: memory O(D**2).

    Returns:
        The blocks in ascending order, or None when more than ``max_edits`` insertions and
        deletions would be needed.
    """
    n, m = len(a), len(b)
    off = max_edits + 1
    v = [0] * (2 * max_edits + 3)
    rounds: list[list[int]] = []
    for d in range(max_edits + 1):
        rounds.append(v[:])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[k - 1 + off] < v[k + 1 + off]):
                x = v[k + 1 + off]
            else:
                x = v[k - 1 + off] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[k + off] = x
            if x >= n and y >= m:
                return _backtrack(rounds, d, n, m, off)
    return None


def _backtrack(rounds: list[list[int]], d_end: int, n: int, m: int, off: int) -> list[tuple[int, int, int]]:
    x, y = n, m
    blocks = []
    for d in range(d_end, 0, -1):
        v = rounds[d]  # the frontier after round d - 1
        k = x - y
        prev_k = k + 1 if (k == -d or (k != d and v[k - 1 + off] < v[k + 1 + off])) else k - 1
        prev_x = v[prev_k + off]
        prev_y = prev_x - prev_k
        start_x, start_y = (prev_x, prev_y + 1) if prev_k == k + 1 else (prev_x + 1, prev_y)
        if x > start_x:
            blocks.append((start_x, start_y, x - start_x))
        x, y = prev_x, prev_y
    if x > 0:
        blocks.append((0, 0, x))
    blocks.reverse()
    return blocks
