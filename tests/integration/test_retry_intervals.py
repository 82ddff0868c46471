"""Automatic retries on the real, non-zero intervals: Stripe is unreachable for a few seconds, the
event fails, and a worker (with RQ's scheduler, as worker.py runs it) applies it once Stripe answers
again, with nobody clicking Retry."""
import time

from sqlalchemy import func, select

from tests.helpers import start_worker, worker_env
from tests.waiting import wait_for
from webapp.crm.models import Contact
from webapp.stripe_sync.models import StripeEvent, SyncLog
from webapp.tunables import DEFAULTS


def test_a_failed_event_is_retried_on_the_default_intervals_once_stripe_answers(
        app, db, connect_resource, post_event, stripe_double, redis_server):
    first_interval = DEFAULTS["EVENT_RETRY_INTERVALS"][0]
    assert first_interval > 0, "this test is about the real, non-zero intervals"
    resource = connect_resource("subscription")  # a subscription has no details of its own: the worker must
    stripe_double.set_down(True)                  # retrieve its customer
    assert post_event(resource, "customer.subscription.created").status_code == 200
    row_id = db.session.scalar(select(StripeEvent.id))
    db.session.rollback()

    # The environment sets no EVENT_RETRY_INTERVALS: the worker runs on the defaults.
    worker = start_worker(worker_env(app, redis_server.url, stripe_double, STRIPE_MAX_NETWORK_RETRIES="0"),
                          burst=False)
    try:
        def status():
            db.session.rollback()
            return db.session.scalar(select(StripeEvent.status).where(StripeEvent.id == row_id))

        assert wait_for(lambda: status() == "failed", timeout=30), status()
        failed_at = time.monotonic()
        reasons = [r for (r,) in db.session.execute(select(SyncLog.reason))]
        assert len(reasons) == 1 and reasons[0].endswith("(will retry)"), reasons

        time.sleep(2)  # Stripe stays away a little longer, then answers again
        stripe_double.set_down(False)
        assert wait_for(lambda: status() == "processed", timeout=first_interval + 20), status()
        waited = time.monotonic() - failed_at
    finally:
        worker.terminate()
        worker.wait(10)

    assert waited >= first_interval - 1  # the retry waited for its interval, not a moment sooner
    db.session.rollback()
    event = db.session.get(StripeEvent, row_id)
    assert (event.attempts, event.error) == (2, None)
    contact = db.session.scalar(select(Contact))
    assert contact is not None and event.contact_id == contact.id
    outcomes = [(row.outcome, row.attempt) for row in db.session.scalars(select(SyncLog).order_by(SyncLog.id))]
    assert outcomes == [("failed", 1), ("created", 2)]
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 1
