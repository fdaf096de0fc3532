"""Call-heavy application code for ``bench_trace.py``: recursion, small methods, objects.

Usage: ``python calls.py N`` (about 30 line events per unit of N when traced).
"""

import sys


class Vector:
    __slots__ = ("x", "y")

    def __init__(self, x: float, y: float):
        self.x = x
        self.y = y

    def add(self, other: "Vector") -> "Vector":
        return Vector(self.x + other.x, self.y + other.y)

    def scale(self, k: float) -> "Vector":
        return Vector(self.x * k, self.y * k)

    @property
    def norm1(self) -> float:
        return abs(self.x) + abs(self.y)


class Account:
    def __init__(self, owner: str):
        self.owner = owner
        self.balance = 0
        self.moves = 0

    def deposit(self, amount: int) -> None:
        self.balance += amount
        self.moves += 1

    def withdraw(self, amount: int) -> bool:
        if amount > self.balance:
            return False
        self.balance -= amount
        self.moves += 1
        return True


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def depth(tree: tuple | None) -> int:
    if tree is None:
        return 0
    left, right = tree
    return 1 + max(depth(left), depth(right))


def make_tree(n: int) -> tuple | None:
    if n == 0:
        return None
    return (make_tree(n - 1), make_tree(n // 2))


def walk(n: int) -> float:
    pos = Vector(0.0, 0.0)
    step = Vector(1.0, -0.5)
    for i in range(n):
        pos = pos.add(step.scale(i % 3))
    return pos.norm1


def bank(n: int) -> int:
    accounts = [Account(f"acct{i}") for i in range(10)]
    refused = 0
    for i in range(n):
        a = accounts[i % 10]
        a.deposit(i % 50)
        if not a.withdraw(i % 70):
            refused += 1
    return refused


def main(n: int) -> None:
    print(fib(min(12 + n // 4000, 22)))
    print(depth(make_tree(min(10 + n // 5000, 16))))
    print(walk(n))
    print(bank(n))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
