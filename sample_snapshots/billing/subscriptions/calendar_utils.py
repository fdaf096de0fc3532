"""Date arithmetic for billing periods."""

from __future__ import annotations

from datetime import date


def add_months(day: date, months: int) -> date:
    """The same day of the month, ``months`` later."""
    month = day.month - 1 + months
    year = day.year + month // 12
    return day.replace(year=year, month=month % 12 + 1)
