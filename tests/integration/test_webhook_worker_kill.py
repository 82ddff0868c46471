"""A worker SIGKILLed in the middle of a job: the event is processed exactly once, eventually."""
import os
import signal
import time
import uuid

from sqlalchemy import select

from tests.helpers import count, start_worker, worker_env
from webapp.crm.models import Contact, ContactTag, TriggerFired
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.models import StripeEvent, SyncLog
from webapp.redis_queue import worker_alive
from webapp.stripe_sync.queue.sweep import sweep_unqueued
from tests.waiting import wait_for


def test_killed_worker_mid_job_is_recovered_by_the_sweep(app, connect_resource, post_event, run_worker, db,
                                                         stripe_double, redis_server):
    resource = connect_resource("subscription")  # a subscription's customer must be retrieved
    assert post_event(resource, "customer.subscription.created").status_code == 200
    row_id = db.session.scalar(select(StripeEvent.id))
    db.session.remove()
    stripe_double.set_latency(6)  # the job will hang in the customer fetch

    name = f"doomed-{uuid.uuid4().hex[:8]}"
    worker = start_worker(worker_env(app, redis_server.url, stripe_double), name, burst=False)
    try:
        queue = get_queue()

        def in_the_fetch():
            """A drain took the event and counted its attempt: the next step is the (slow) customer fetch."""
            attempts = db.session.scalar(select(StripeEvent.attempts).where(StripeEvent.id == row_id))
            db.session.rollback()
            held = pending.where(queue, [row_id]).get(row_id)
            return held is not None and held[:2] == ("inflight", name) and attempts == 1

        started = wait_for(in_the_fetch)
        time.sleep(0.3)
        assert started, "the worker never got into the job"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    stripe_double.set_latency(0)

    event = db.session.get(StripeEvent, row_id)
    assert (event.status, event.attempts) == ("queued", 1)  # the attempt was counted, nothing else written
    assert count(db, SyncLog) == 0 and count(db, Contact) == 0
    assert not worker_alive(queue.connection, name)
    db.session.remove()

    report = sweep_unqueued(0)
    assert report.requeued == 1
    assert sweep_unqueued(0).changed == 0  # the new job is waiting; nothing is queued twice
    run_worker()

    event = db.session.get(StripeEvent, row_id)
    assert (event.status, event.attempts) == ("processed", 2)
    logs = list(db.session.scalars(select(SyncLog)))
    assert [(log.outcome, log.attempt) for log in logs] == [("created", 2)]
    # once each: "Stripe event received" and "Recurring payment created"; the event's tags once each
    assert count(db, Contact) == 1 and count(db, TriggerFired) == 2
    assert count(db, ContactTag) == 3
    assert sweep_unqueued(0).changed == 0
