"""Tunables of historical sync, with defaults, so config.py need not know them (tests shrink the waits).

- BACKFILL_MAX_RPS_TEST / BACKFILL_MAX_RPS_LIVE: list requests per second per Stripe account, shared
  by every import of that account (Stripe allows 25 reads/s in test mode and 100 in live mode; the
  rest is left for webhook processing). 0 turns the limiter off.
- BACKFILL_BACKOFF_BASE / BACKFILL_BACKOFF_MAX: jittered exponential backoff after a 429 or a
  transient error, in seconds; Stripe's Retry-After, when sent, is the floor.
- BACKFILL_RATE_LIMIT_RETRIES: consecutive 429s on one request before the import fails (it can be
  resumed); BACKFILL_ERROR_RETRIES: the same for connection errors and 5xx the SDK already retried.
- BACKFILL_SLICE_SECONDS: how long one job runs before it queues its continuation at the back of the
  queue, so webhook jobs are never stuck behind a long import on a single worker.
- BACKFILL_JOB_TIMEOUT: RQ's timeout for one slice (a slice plus the longest backoff fits easily).
- BACKFILL_MAX_LOST: how often the sweep requeues an import whose worker died without a page being
  saved in between, before it gives up and marks the import failed.
- BACKFILL_CUSTOMER_CACHE: linked customers remembered per job when the list could not expand them.
"""
from flask import current_app

DEFAULTS = {
    "BACKFILL_MAX_RPS_TEST": 20,
    "BACKFILL_MAX_RPS_LIVE": 80,
    "BACKFILL_BACKOFF_BASE": 1.0,
    "BACKFILL_BACKOFF_MAX": 60.0,
    "BACKFILL_RATE_LIMIT_RETRIES": 10,
    "BACKFILL_ERROR_RETRIES": 5,
    "BACKFILL_SLICE_SECONDS": 10.0,
    "BACKFILL_JOB_TIMEOUT": 900,
    "BACKFILL_MAX_LOST": 5,
    "BACKFILL_CUSTOMER_CACHE": 2000,
}


def setting(name: str):
    """The app's value, else the default here."""
    return current_app.config.get(name, DEFAULTS[name])


def max_rps(livemode: bool) -> float:
    """The list-request budget for an account in this mode."""
    return float(setting("BACKFILL_MAX_RPS_LIVE" if livemode else "BACKFILL_MAX_RPS_TEST") or 0)
