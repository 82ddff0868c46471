"""RQ job functions: take ids, load rows, do the work, re-raise on failure.

Jobs are enqueued by dotted path ("webapp.jobs.process_event") so the web process never imports
worker-only code. worker.py runs them inside its app context; a bare `rq worker` (no context)
gets one app built once per process.
"""
import logging
import time
from contextlib import contextmanager, nullcontext

from flask import has_app_context

from webapp.extensions import db

log = logging.getLogger(__name__)
_app = None


@contextmanager
def job_context():
    """Reuse the worker's context when there is one, otherwise build the app once per process; either
    way the job ends with an empty identity map and its connection back in the pool."""
    global _app
    if has_app_context():
        context = nullcontext()
    else:
        if _app is None:
            from webapp import create_app
            _app = create_app()
        context = _app.app_context()
    with context:
        try:
            yield
        finally:
            db.session.remove()


def process_event(event_row_id: int) -> str:
    """Process one recorded Stripe event; exceptions propagate so RQ retries with backoff."""
    from webapp.metrics import EVENTS_PROCESSED, PROCESSING_SECONDS
    from webapp.stripe_sync.queue.drain import process_event as process

    started = time.perf_counter()
    outcome = "failed"
    with job_context():
        try:
            outcome = process(event_row_id)
            return outcome
        finally:
            EVENTS_PROCESSED.labels(outcome=outcome.replace(" ", "_")).inc()
            PROCESSING_SECONDS.observe(time.perf_counter() - started)


def drain_events(shard: int = 0) -> str:
    """Process pending webhook events in batches until none are left or the drain's time is up; a
    failing drain puts its batch back and re-raises, so RQ records it."""
    from rq import get_current_job

    from webapp.redis_queue import get_queue
    from webapp.stripe_sync.queue.drain import drain

    with job_context():
        job = get_current_job()
        return drain(get_queue(), (job.worker_name if job is not None else None) or "", shard)


def run_backfill(backfill_id: int, lane: int = 0) -> str:
    """Import one slice of one lane of a resource's Stripe history; the job queues its own continuation."""
    from webapp.stripe_sync.history.importer import run_backfill as run

    with job_context():
        return run(backfill_id, lane)


def recover_events(account_id: int) -> str:
    """Check one Stripe account for events its webhooks did not deliver, and its endpoints' health."""
    from rq import get_current_job

    from webapp.stripe_sync.recovery.recover import recover_account

    with job_context():
        job = get_current_job()
        return str(recover_account(account_id, (job.worker_name if job is not None else None) or ""))
