"""A worker SIGKILLed in the middle of an import: the sweep hands it to a new job, which continues
from the last saved page, so every record is imported exactly once."""
import os
import signal
import uuid

from sqlalchemy import func, select

from tests.helpers import ACCOUNT_ID, backfill, count, start_import, start_worker, worker_env
from webapp.crm.models import Contact, ContactTag
from webapp.redis_queue import get_redis
from webapp.stripe_sync.models import Backfill, StripeEvent, SyncLog
from webapp.redis_queue import worker_alive
from webapp.stripe_sync.queue.sweep import sweep_unqueued
from tests.waiting import wait_for



def test_killed_worker_mid_import_resumes_from_the_saved_page(app, db, connect_resource, stripe_double,
                                                              redis_server, run_worker):
    app.config.update(STRIPE_BUDGET_TEST=0)
    stripe_double.generate_customers(ACCOUNT_ID, 1000, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    db.session.remove()
    stripe_double.set_latency(0.15)  # each page takes a while, so the kill lands mid-import

    name = f"doomed-{uuid.uuid4().hex[:8]}"
    worker = start_worker(worker_env(app, redis_server.url, stripe_double), name, sweep=True)
    try:
        def pages_saved():
            saved = db.session.scalar(select(Backfill.pages).where(Backfill.id == backfill_id))
            db.session.rollback()
            return saved >= 3

        assert wait_for(pages_saved), "the worker never saved three pages"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    stripe_double.set_latency(0)

    bf = backfill(db, backfill_id)
    saved_pages, cursor = bf.pages, bf.cursor
    assert bf.state == "running" and 3 <= saved_pages < 10
    # Only whole pages were kept: the page in flight was rolled back with its uncommitted transaction.
    assert bf.imported == saved_pages * 100
    assert count(db, Contact) == count(db, StripeEvent) == saved_pages * 100
    assert not worker_alive(get_redis(), name)
    db.session.remove()

    stripe_double.clear_requests()
    assert sweep_unqueued(0).backfills == 1
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.pages, bf.lost) == ("finished", 1002, 11, 0)
    first = next(r for r in stripe_double.requests if r.path == "/v1/customers")
    assert first.params.get("starting_after") == cursor  # continued from the saved page, not the start
    assert count(db, Contact) == 1002 and count(db, StripeEvent) == 1002
    assert count(db, ContactTag) == 2 * 1002
    reasons = list(db.session.scalars(select(SyncLog.reason).where(SyncLog.event_row_id.is_(None))
                                      .order_by(SyncLog.id)))
    assert [int(r.split(":")[0].rsplit(" ", 1)[1]) for r in reasons] == list(range(1, 12))
    assert db.session.scalar(select(func.count()).select_from(SyncLog).where(SyncLog.outcome == "failed")) == 0
