"""The renewal endpoint: the entry point recorded in production."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timezone

import replay
from subscriptions.calendar_utils import add_months
from subscriptions.models import Invoice, RenewalRequest
from subscriptions.pricing import quote

log = logging.getLogger("billing")


@replay.capture
def renew(request: RenewalRequest) -> Invoice:
    """Renew a subscription for one period starting today and issue its invoice."""
    issued_at = datetime.now(timezone.utc)
    start = issued_at.date()
    end = add_months(start, request.plan.months)
    net, tax = quote(request.plan, request.seats, request.region)
    invoice = Invoice(
        number=f"INV-{uuid.uuid4().hex[:12].upper()}",
        customer_id=request.customer_id,
        period_start=start,
        period_end=end,
        net=net,
        tax=tax,
        total=net + tax,
        currency=os.environ.get("BILLING_CURRENCY", "EUR"),
        issued_at=issued_at,
    )
    log.info("renewed %s until %s: %s %s", request.customer_id, end, invoice.total, invoice.currency)
    return invoice
