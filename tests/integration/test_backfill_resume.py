"""A worker SIGKILLed in the middle of a windowed import: the sweep hands its lane to a new job, which
continues each window from its last saved page, so every record is imported exactly once."""
import os
import signal
import uuid

from sqlalchemy import func, select

from tests.helpers import ACCOUNT_ID, backfill, count, start_import, start_worker, worker_env
from webapp.crm.models import Contact, ContactTag
from webapp.redis_queue import get_redis
from webapp.stripe_sync.models import Backfill, BackfillWindow, StripeEvent, SyncLog
from webapp.redis_queue import worker_alive
from webapp.stripe_sync.queue.sweep import sweep_unqueued
from tests.waiting import wait_for


def test_killed_worker_mid_window_resumes_each_window_from_its_saved_page(app, db, connect_resource, stripe_double,
                                                                         redis_server, run_worker):
    app.config.update(STRIPE_BUDGET_TEST=0, BACKFILL_SPLIT_AFTER_PAGES=2, BACKFILL_WINDOW_PAGES=2)
    stripe_double.generate_customers(ACCOUNT_ID, 2000, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    db.session.remove()
    stripe_double.set_latency(0.15)  # each page takes a while, so the kill lands mid-window

    name = f"doomed-{uuid.uuid4().hex[:8]}"
    env = worker_env(app, redis_server.url, stripe_double)
    env.update(BACKFILL_SPLIT_AFTER_PAGES="2", BACKFILL_WINDOW_PAGES="2")
    worker = start_worker(env, name, sweep=True)
    try:
        def cut_and_reading():
            windows = db.session.scalar(select(func.count()).select_from(BackfillWindow)
                                        .where(BackfillWindow.backfill_id == backfill_id))
            saved = db.session.scalar(select(Backfill.pages).where(Backfill.id == backfill_id))
            db.session.rollback()
            return windows > 1 and saved >= 5

        assert wait_for(cut_and_reading), "the worker never cut the history and saved five pages"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    stripe_double.set_latency(0)

    bf = backfill(db, backfill_id)
    assert bf.state == "running" and bf.imported < 2002
    # Only whole pages were kept: a page in flight was rolled back with its uncommitted transaction.
    windows = db.session.scalars(select(BackfillWindow).where(BackfillWindow.backfill_id == backfill_id)).all()
    assert bf.imported == sum(w.records for w in windows) == count(db, Contact) == count(db, StripeEvent)
    cursors = {w.cursor for w in windows if w.state == "open" and w.cursor}
    assert cursors, "no window was left half read"
    assert not worker_alive(get_redis(), name)
    db.session.remove()

    stripe_double.clear_requests()
    assert sweep_unqueued(0).backfills >= 1
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported) == ("finished", 2002)
    asked_after = {r.params.get("starting_after") for r in stripe_double.requests if r.path == "/v1/customers"}
    assert cursors <= asked_after  # every half-read window continued from its saved page, not its start
    assert count(db, Contact) == 2002 and count(db, StripeEvent) == 2002
    assert count(db, ContactTag) == 2 * 2002
    reasons = list(db.session.scalars(select(SyncLog.reason).where(SyncLog.event_row_id.is_(None))
                                      .order_by(SyncLog.id)))
    # One row for the import, its totals those of the pages kept (a page in flight was rolled back with it).
    assert reasons == ["Historical import: 2,002 imported, 0 skipped, 0 failed"]
    assert sum(w.records for w in db.session.scalars(select(BackfillWindow).where(
        BackfillWindow.backfill_id == backfill_id))) == bf.processed == 2002  # each page counted once
    assert db.session.scalar(select(func.count()).select_from(SyncLog).where(SyncLog.outcome == "failed")) == 0
    assert db.session.scalar(select(func.count()).select_from(BackfillWindow).where(
        BackfillWindow.backfill_id == backfill_id, BackfillWindow.state == "open")) == 0
