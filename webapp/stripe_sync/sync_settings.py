"""Tunables of webhook intake and event processing, with defaults, so config.py need not know them.

Each can be overridden in the app config (tests shrink the waits):
- EVENT_RETRY_INTERVALS: seconds RQ waits before each retry of a failed `process_event`; the job
  runs at most 1 + len(intervals) times before the event stays failed for the Retry button.
- EVENT_JOB_TIMEOUT: seconds one `process_event` (or one batch of a drain) may run before RQ kills it.
- EVENT_BATCH_SIZE: how many pending events a drain job processes per transaction (pending.py,
  batch.py); 1 gives every event its own RQ job instead.
- EVENT_DRAIN_SHARDS: how many drains may run at once, each for its own set of customers
  (pending.py). 1 is fastest while web, workers and the database share a few cores (bench/README.md);
  raise it to the number of worker cores when workers have machines of their own. SQLite always
  uses one.
- EVENT_DRAIN_SECONDS: how long one drain job keeps taking batches before it hands over to a
  fresh job, so other jobs get their turn and RQ's timeout stays meaningful.
- EVENT_SWEEP_INTERVAL / EVENT_SWEEP_GRACE: how often the worker's sweep runs and how old a
  recorded-but-not-running event must be before the sweep (re)queues it.
- WEBHOOK_CACHE_SECONDS: how long intake reuses a resource's decrypted signing secrets.
- WEBHOOK_TOLERANCE: Stripe's signature timestamp tolerance.
- STRIPE_RATE_LIMIT_RETRIES / STRIPE_RATE_LIMIT_BACKOFF: in-job retries of a plain 429 (which the
  SDK does not retry itself) with exponential backoff from this many seconds.
"""
from flask import current_app

DEFAULTS = {
    "EVENT_RETRY_INTERVALS": [10, 60, 300, 1800, 7200],
    "EVENT_JOB_TIMEOUT": 120,
    "EVENT_BATCH_SIZE": 50,
    "EVENT_DRAIN_SECONDS": 10,
    "EVENT_DRAIN_SHARDS": 1,
    "EVENT_RESULT_TTL": 0,  # outcomes live in the database; RQ keeps no result
    "EVENT_SWEEP_INTERVAL": 30,
    "EVENT_SWEEP_GRACE": 30,
    "EVENT_SWEEP_BATCH": 1000,
    "WEBHOOK_CACHE_SECONDS": 10,
    "WEBHOOK_TOLERANCE": 300,
    "STRIPE_RATE_LIMIT_RETRIES": 3,
    "STRIPE_RATE_LIMIT_BACKOFF": 0.5,
}


def setting(name: str):
    """The app's value, else the default here, so every caller agrees on one fallback."""
    return current_app.config.get(name, DEFAULTS[name])


def batch_size() -> int:
    """EVENT_BATCH_SIZE, at least 1."""
    return max(1, int(setting("EVENT_BATCH_SIZE")))


def retry_intervals() -> list[int]:
    """RQ wants whole, non-negative seconds."""
    return [max(0, int(s)) for s in setting("EVENT_RETRY_INTERVALS")]


def max_attempts() -> int:
    """The first run plus one per retry interval."""
    return 1 + len(retry_intervals())
