"""Loop-heavy application code for ``bench_trace.py``: arithmetic loops and list building.

Usage: ``python loops.py N`` (about 7 line events per unit of N when traced).
"""

import sys


def checksum(n: int) -> int:
    total = 0
    for i in range(n):
        x = i * 3 + 1
        if x % 7 == 0:
            total -= x // 7
        total += x % 97
    return total


def build(n: int) -> list[list[int]]:
    rows = []
    for r in range(n // 8):
        row = []
        for c in range(8):
            row.append(r * c % 11)
        rows.append(row)
    return rows


def sieve(limit: int) -> list[int]:
    flags = [True] * (limit + 1)
    primes = []
    for p in range(2, limit + 1):
        if flags[p]:
            primes.append(p)
            for multiple in range(p * p, limit + 1, p):
                flags[multiple] = False
    return primes


def main(n: int) -> None:
    total = checksum(n)
    rows = build(n)
    primes = sieve(n // 4)
    flat = sum(sum(row) for row in rows)
    print(total, len(rows), flat, len(primes), primes[-1] if primes else None)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
