"""Every tunable of the background work, with its default, in one place; config.py reads any of them
from the environment (lists as `10,60,300`), and the app config (tests shrink the waits) wins.

Webhook intake and event processing:
- EVENT_RETRY_INTERVALS: seconds before each retry of a failed event; it runs at most
  1 + len(intervals) times before it stays failed for the log's Retry button.
- EVENT_JOB_TIMEOUT: seconds one event's job (or one batch of a drain) may run before RQ kills it.
- EVENT_BATCH_SIZE: how many pending events a drain job applies per transaction; 1 gives every
  event its own RQ job instead.
- EVENT_DRAIN_SHARDS: how many drains may run at once, each for its own set of customers. 1 is
  fastest while web, workers and the database share a few cores (bench/README.md); raise it to the
  number of worker cores when workers have machines of their own. SQLite always uses one.
- EVENT_DRAIN_SECONDS: how long one drain job keeps taking batches before it hands over to a fresh
  job, so other jobs get their turn and RQ's timeout stays meaningful.
- EVENT_SWEEP_INTERVAL / EVENT_SWEEP_GRACE / EVENT_SWEEP_BATCH: how often the worker's sweep runs,
  how old a recorded-but-not-running event must be before the sweep (re)queues it, and how many
  it looks at per run.
- WEBHOOK_CACHE_SECONDS: how long intake reuses a resource's decrypted signing secrets.
- WEBHOOK_TOLERANCE: Stripe's signature timestamp tolerance.
- STRIPE_RATE_LIMIT_RETRIES / STRIPE_RATE_LIMIT_BACKOFF: in-job retries of a plain 429 (which the
  SDK does not retry itself), with exponential backoff from this many seconds.

Stripe requests (customer retrieves for events, the import's list pages):
- STRIPE_BUDGET_LIVE / STRIPE_BUDGET_TEST: requests per second per Stripe account and mode, shared
  by every worker and job through Redis (stripe_sync/budget.py). Stripe allows 100 (live) and 25
  (test); the defaults take 80%, leaving the rest for the account's other users. 0 turns it off.
- STRIPE_BUDGET_LIST: requests per second on one list endpoint (Stripe allows about 25); only the
  historical import lists.
- STRIPE_BUDGET_SLOW_SECONDS: after a 429, how long the budget it was charged to runs at half rate.
- STRIPE_BUDGET_BURST: seconds' worth of the budget that may go at once after a quiet spell (0.1:
  8 requests live, 2 test), so rate + burst stays under Stripe's limit.
- STRIPE_FETCH_CONCURRENCY: customer retrieves one worker process keeps in flight at once. With
  Stripe answering in ~300 ms, 80 requests/s needs about 24 in flight; 32 leaves room for slow ones.
- STRIPE_CUSTOMER_FRESH_SECONDS: how long a remembered Stripe customer (apply/customer_store.py) is
  used instead of retrieving it again. One payment brings several events (invoice, charge,
  subscription) within seconds to minutes, so 300 s resolves them all with one retrieve, while a
  change made in Stripe reaches the next events at most five minutes later (at once when the
  Customer resource is connected: its customer.updated events replace the remembered record).

Historical import:
- List requests draw from the account's request budget (STRIPE_BUDGET_*), shared with webhook
  processing, from their endpoint's (STRIPE_BUDGET_LIST), and from BACKFILL_BUDGET_SHARE of the
  account's rate for every import of the account together, so webhook events' customer retrieves
  always keep the rest.
- BACKFILL_LANES: RQ jobs one import may run at once, never more than the live workers less one (a
  worker always stays free for webhook events; with one worker the import takes turns with them).
- BACKFILL_WINDOWS_PER_LANE: windows one lane reads at once (one request in flight each). With Stripe
  answering in 300–600 ms, 20 requests/s needs 6–12 in flight.
- BACKFILL_MAX_WINDOWS: open windows per import at most; BACKFILL_SPLIT_AFTER_PAGES: pages a window
  reads alone before it is cut (small histories are never cut); BACKFILL_WINDOW_PAGES: pages' worth of
  seconds a cut window keeps (history/windows.py).
- BACKFILL_BACKOFF_BASE / BACKFILL_BACKOFF_MAX: jittered exponential backoff after a 429 or a
  transient error, in seconds; Stripe's Retry-After, when sent, is the floor.
- BACKFILL_RATE_LIMIT_RETRIES: consecutive 429s on one request before the import fails (it can be
  resumed); BACKFILL_ERROR_RETRIES: the same for connection errors and 5xx the SDK already retried.
- BACKFILL_SLICE_SECONDS: how long one job runs before it queues its continuation at the back of the
  queue, so webhook jobs are never stuck behind a long import on a single worker.
- BACKFILL_JOB_TIMEOUT: RQ's timeout for one slice (a slice plus the longest backoff fits easily).
- BACKFILL_MAX_LOST: how often the sweep requeues an import whose worker died without a page being
  saved in between, before it gives up and marks the import failed.

Recovering missed events (stripe_sync/recovery/):
- RECOVERY_INTERVAL: seconds between checks of every connected account for events webhooks did not
  deliver (and of its endpoints' health); a worker also checks when it starts.
- RECOVERY_OVERLAP: seconds before the checkpoint each check reads again, for events Stripe made
  visible late; events already stored are passed over.
- RECOVERY_SETTLE: events younger than this are left to their webhook (they are usually on the way),
  so the log does not call an event recovered that was only a second late.
- RECOVERY_JOB_TIMEOUT: RQ's timeout for one account's check.
- STRIPE_EVENTS_RETENTION_DAYS: how long Stripe keeps events in /v1/events (30 days).

Automations and email:
- AUTOMATION_RETRY_INTERVALS: seconds before each retry of a failed run or entry job.
- AUTOMATION_JOB_TIMEOUT: seconds one run job may take.
- AUTOMATION_SWEEP_INTERVAL / AUTOMATION_SWEEP_GRACE / AUTOMATION_SWEEP_BATCH: how often the worker
  sweeps automations, and how long a run, fired trigger or queued message may sit without its job
  before the sweep enqueues it again.
- SMTP_RETRY_INTERVALS: seconds between SMTP delivery attempts; a message fails for good after
  1 + len(intervals) attempts (the outbox can send it again by hand).
- SMTP_TIMEOUT: seconds for one SMTP conversation.
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
    "STRIPE_BUDGET_LIVE": 80,
    "STRIPE_BUDGET_TEST": 20,
    "STRIPE_BUDGET_BURST": 0.1,
    "STRIPE_BUDGET_LIST": 20,
    "STRIPE_BUDGET_SLOW_SECONDS": 60,
    "STRIPE_FETCH_CONCURRENCY": 32,
    "STRIPE_CUSTOMER_FRESH_SECONDS": 300,
    "BACKFILL_BACKOFF_BASE": 1.0,
    "BACKFILL_BACKOFF_MAX": 60.0,
    "BACKFILL_RATE_LIMIT_RETRIES": 10,
    "BACKFILL_ERROR_RETRIES": 5,
    "BACKFILL_SLICE_SECONDS": 10.0,
    "BACKFILL_JOB_TIMEOUT": 900,
    "BACKFILL_MAX_LOST": 5,
    "BACKFILL_BUDGET_SHARE": 0.75,
    "BACKFILL_LANES": 4,
    "BACKFILL_WINDOWS_PER_LANE": 8,
    "BACKFILL_MAX_WINDOWS": 64,
    "BACKFILL_SPLIT_AFTER_PAGES": 3,
    "BACKFILL_WINDOW_PAGES": 5,
    "RECOVERY_INTERVAL": 900,
    "RECOVERY_OVERLAP": 300,
    "RECOVERY_SETTLE": 60,
    "RECOVERY_JOB_TIMEOUT": 1800,
    "STRIPE_EVENTS_RETENTION_DAYS": 30,
    "AUTOMATION_RETRY_INTERVALS": [5, 30, 120, 600],
    "AUTOMATION_JOB_TIMEOUT": 120,
    "AUTOMATION_SWEEP_INTERVAL": 30,
    "AUTOMATION_SWEEP_GRACE": 60,
    "AUTOMATION_SWEEP_BATCH": 500,
    "SMTP_RETRY_INTERVALS": [30, 120, 600, 1800],
    "SMTP_TIMEOUT": 20,
}


def setting(name: str):
    """The app's value, else the default here, so every caller agrees on one fallback."""
    return current_app.config.get(name, DEFAULTS[name])


def intervals(name: str) -> list[int]:
    """A list of seconds as RQ wants them: whole and non-negative."""
    return [max(0, int(s)) for s in setting(name)]
