"""RQ job functions: take ids, load rows, do the work, re-raise on failure.

Jobs are enqueued by dotted path ("webapp.jobs.process_event") so the web process never imports
worker-only code. worker.py runs them inside its app context; a bare `rq worker` (no context)
gets one app built once per process.
"""
import logging
import time
from contextlib import contextmanager

from flask import has_app_context

from webapp.extensions import db

log = logging.getLogger(__name__)
_app = None


@contextmanager
def _app_context():
    """Reuse the worker's context when there is one; otherwise build the app once per process."""
    global _app
    if has_app_context():
        yield
        return
    if _app is None:
        from webapp import create_app
        _app = create_app()
    with _app.app_context():
        yield


def process_event(event_row_id: int) -> str:
    """Process one recorded Stripe event; exceptions propagate so RQ retries with backoff."""
    from webapp.metrics import EVENTS_PROCESSED, PROCESSING_SECONDS
    from webapp.stripe_sync.processing import process_event as process

    started = time.perf_counter()
    outcome = "failed"
    with _app_context():
        try:
            outcome = process(event_row_id)
            return outcome
        finally:
            # Each job starts with an empty identity map and returns its connection to the pool.
            db.session.remove()
            EVENTS_PROCESSED.labels(outcome=outcome.replace(" ", "_")).inc()
            PROCESSING_SECONDS.observe(time.perf_counter() - started)


def run_backfill(backfill_id: int) -> str:
    """Import one slice of a resource's Stripe history; the job queues its own continuation."""
    from webapp.stripe_sync.backfill import run_backfill as run

    with _app_context():
        try:
            return run(backfill_id)
        finally:
            db.session.remove()
