"""A long mixed run for ``bench_trace.py``'s random-access figures: orders, stock, refusals.

Objects with small methods, loops, dict updates and a caught exception now and then; the
``balance`` of ``main`` changes on every order (a value whose history is asked for).

Usage: ``python million.py N`` (about 36 steps per order: N=30000 gives ~1.1 million steps).
"""

import sys


class OutOfStock(Exception):
    pass


class Item:
    def __init__(self, name: str, price: int, stock: int):
        self.name = name
        self.price = price
        self.stock = stock

    def take(self, qty: int) -> int:
        if qty > self.stock:
            raise OutOfStock(self.name)
        self.stock -= qty
        return qty * self.price


class Order:
    def __init__(self, number: int, lines: list[tuple[str, int]]):
        self.number = number
        self.lines = lines
        self.total = 0

    def fill(self, items: dict[str, Item]) -> int:
        for name, qty in self.lines:
            self.total += items[name].take(qty)
        return self.total


def restock(items: dict[str, Item], k: int) -> None:
    for item in items.values():
        if item.stock < 20:
            item.stock += 50 + k % 7


def main(n: int) -> None:
    names = [f"item{i}" for i in range(12)]
    items = {name: Item(name, 3 + i, 100) for i, name in enumerate(names)}
    balance = 0
    refused = 0
    for k in range(n):
        lines = [(names[(k + j) % 12], 1 + (k * j) % 5) for j in range(2)]
        order = Order(k, lines)
        try:
            balance += order.fill(items)
        except OutOfStock:
            refused += 1
            restock(items, k)
    print(balance, refused)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000)
