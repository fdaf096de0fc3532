"""Prices, tax and the renewal loyalty draw."""

from __future__ import annotations

import os
import random
from decimal import ROUND_HALF_UP, Decimal

from subscriptions.models import Plan

CENT = Decimal("0.01")


def tax_rate(region: str) -> Decimal:
    """VAT/sales-tax rate of a region, configured per deployment."""
    return Decimal(os.environ.get(f"TAX_RATE_{region.upper()}", "0.20"))


def loyalty_discount() -> Decimal:
    """One renewal in ten wins 10% off (marketing's 'renewal lottery')."""
    return Decimal("0.10") if random.random() < 0.10 else Decimal("0")


def quote(plan: Plan, seats: int, region: str) -> tuple[Decimal, Decimal]:
    """(net, tax) for a renewal, rounded to cents."""
    net = plan.seat_price * seats
    net -= (net * loyalty_discount()).quantize(CENT, ROUND_HALF_UP)
    tax = (net * tax_rate(region)).quantize(CENT, ROUND_HALF_UP)
    return net, tax
