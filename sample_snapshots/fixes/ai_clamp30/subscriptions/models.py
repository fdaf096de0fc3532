"""Request and invoice types of the billing service."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


class Plan(enum.Enum):
    """Billing plans: (months per period, price per seat)."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ANNUAL = "annual"

    @property
    def months(self) -> int:
        return {"monthly": 1, "quarterly": 3, "annual": 12}[self.value]

    @property
    def seat_price(self) -> Decimal:
        return {"monthly": Decimal("12.00"), "quarterly": Decimal("33.00"), "annual": Decimal("120.00")}[self.value]


@dataclass(frozen=True)
class RenewalRequest:
    customer_id: str
    plan: Plan
    seats: int
    region: str = "eu"


@dataclass(frozen=True)
class Invoice:
    number: str
    customer_id: str
    period_start: date
    period_end: date
    net: Decimal
    tax: Decimal
    total: Decimal
    currency: str
    issued_at: datetime
