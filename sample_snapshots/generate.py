"""Record the sample corpus: real renewals of the billing service on chosen dates.

Each scenario runs in its own process under libfaketime (Debian package ``faketime``),
which shifts the C library's clock, so the service reads a real (shifted) clock and the
capture records it like any production clock read. Usage, from the repository root:

    python sample_snapshots/generate.py [--out sample_snapshots/snapshots]

Requires ``faketime`` on PATH (``apt-get install faketime``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, date and time the renewal runs, plan, seats, region). The failing ones renew a
# monthly plan on the 31st of a month followed by a 30-day (or shorter) month.
SCENARIOS = [
    ("jan31-monthly", "2026-01-31 09:12:44", "MONTHLY", 3, "eu"),
    ("mar31-monthly", "2026-03-31 17:40:02", "MONTHLY", 12, "us"),
    ("aug31-quarterly", "2026-08-31 23:05:10", "QUARTERLY", 5, "eu"),
    ("feb15-monthly", "2026-02-15 11:00:00", "MONTHLY", 3, "eu"),
    ("mar10-annual", "2026-03-10 08:30:00", "ANNUAL", 40, "us"),
    ("jan31-annual", "2026-01-31 14:22:09", "ANNUAL", 2, "eu"),
]

DRIVER = """
import sys
from subscriptions.models import Plan, RenewalRequest
from subscriptions.service import renew
request = RenewalRequest(customer_id=sys.argv[1], plan=Plan[sys.argv[2]], seats=int(sys.argv[3]), region=sys.argv[4])
try:
    print(renew(request))
except ValueError as exc:
    print("renewal failed:", exc)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "snapshots"))
    args = parser.parse_args()
    if shutil.which("faketime") is None:
        print("faketime is not installed (apt-get install faketime)", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for name, when, plan, seats, region in SCENARIOS:
        env = dict(os.environ, REPLAY_CAPTURE="always", REPLAY_DIR=os.path.join(args.out, name),
                   BILLING_CURRENCY="EUR" if region == "eu" else "USD", TAX_RATE_EU="0.21",
                   TAX_RATE_US="0.0725", TZ="Europe/Amsterdam", FAKETIME_DONT_FAKE_MONOTONIC="1")
        cmd = ["faketime", when, sys.executable, "-c", DRIVER, f"cust-{name}", plan, str(seats), region]
        out = subprocess.run(cmd, cwd=os.path.join(HERE, "billing"), env=env, capture_output=True, text=True,
                             check=True)
        print(f"{name:18} {out.stdout.strip()[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
