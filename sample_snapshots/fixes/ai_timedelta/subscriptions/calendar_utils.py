"""Date arithmetic for billing periods."""

from __future__ import annotations

from datetime import date, timedelta


def add_months(day: date, months: int) -> date:
    """The date ``months`` later.

    Fix for "day is out of range for month": replace() fails for days that do not exist in
    the target month, so use a timedelta, which always produces a valid date.
    """
    return day + timedelta(days=30 * months)
