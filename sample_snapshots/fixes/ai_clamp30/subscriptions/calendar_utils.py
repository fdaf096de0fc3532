"""Date arithmetic for billing periods."""

from __future__ import annotations

from datetime import date


def add_months(day: date, months: int) -> date:
    """The same day of the month, ``months`` later.

    Fix for "day is out of range for month": months have at most 30 days after the 31st
    is excluded, so clamp the day to 30 before moving to the target month.
    """
    month = day.month - 1 + months
    year = day.year + month // 12
    return day.replace(day=min(day.day, 30)).replace(year=year, month=month % 12 + 1)
