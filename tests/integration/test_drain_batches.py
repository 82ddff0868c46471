"""Drain jobs: webhook events processed in batches, with every failure still isolated to its event."""
import json

from rq import get_current_job
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from tests.helpers import customer_events
from webapp.crm.models import Contact
from webapp.redis_queue import get_queue
from webapp.stripe_sync.apply.contacts import ContactCache
from webapp.stripe_sync.queue import drain as batch, pending
from webapp.stripe_sync.queue.enqueue import job_id_for
from webapp.stripe_sync.models import StripeEvent, SyncLog
from webapp.stripe_sync.queue.sweep import sweep_unqueued


def statuses(db) -> dict[str, tuple[str, int]]:
    rows = db.session.execute(select(StripeEvent.stripe_event_id, StripeEvent.status, StripeEvent.attempts))
    return {r.stripe_event_id: (r.status, r.attempts) for r in rows}


def test_one_bad_event_does_not_hold_back_its_batch(app, db, connect_resource, post_event, run_worker, monkeypatch):
    app.config["EVENT_RETRY_INTERVALS"] = [0]  # one retry, at once
    res = connect_resource("customer")
    bodies = customer_events(6)  # p0, p1, p2: two events each
    for body in bodies:
        assert post_event(res, body).status_code == 200
    shards = {pending.shard_for(json.loads(b), pending.shard_count()) for b in bodies}
    assert get_queue().count == len(shards)  # one drain per shard the burst touched, not a job per event
    real = ContactCache.add_tags

    def refuse_p1(cache, contact, names):
        if contact.email == "p1@example.test":
            raise RuntimeError("tag service exploded")
        return real(cache, contact, names)

    monkeypatch.setattr(ContactCache, "add_tags", refuse_p1)
    run_worker()

    got = statuses(db)
    assert got == {"evt_fault_00000": ("processed", 1), "evt_fault_00001": ("processed", 1),
                   "evt_fault_00002": ("failed", 2), "evt_fault_00003": ("failed", 2),
                   "evt_fault_00004": ("processed", 1), "evt_fault_00005": ("processed", 1)}
    emails = set(db.session.scalars(select(Contact.email)))
    assert emails == {"p0@example.test", "p2@example.test"}
    reasons = [r for (r,) in db.session.execute(
        select(SyncLog.reason).where(SyncLog.stripe_event_id == "evt_fault_00002").order_by(SyncLog.id))]
    assert len(reasons) == 2 and "tag service exploded (will retry)" in reasons[0]
    assert "gave up after attempt 2" in reasons[1]
    failed_jobs = FailedJobRegistry(queue=get_queue()).get_job_ids()
    bad_rows = db.session.scalars(select(StripeEvent.id).where(StripeEvent.status == "failed")).all()
    assert sorted(failed_jobs) == sorted(job_id_for(i) for i in bad_rows)  # RQ's registry tells the truth

    monkeypatch.setattr(ContactCache, "add_tags", real)
    assert db.session.scalar(select(func.count()).select_from(SyncLog).where(SyncLog.outcome != "failed")) == 4


def test_drain_hands_over_when_its_time_is_up(app, db, connect_resource, post_event, run_worker, monkeypatch):
    app.config.update(EVENT_BATCH_SIZE=2, EVENT_DRAIN_SECONDS=0)
    res = connect_resource("customer")
    for body in customer_events(5):
        post_event(res, body)
    seen = []
    real = batch._start

    def spy(row_ids, resolver):
        if row_ids:
            seen.append((len(row_ids), get_current_job().id))
        return real(row_ids, resolver)

    monkeypatch.setattr(batch, "_start", spy)
    run_worker()
    assert all(status == ("processed", 1) for status in statuses(db).values()) and len(statuses(db)) == 5
    # Two at a time, and each batch in a fresh job: the drain handed over after each.
    assert [size for size, _job in seen] == [2, 2, 1] and len({job for _size, job in seen}) == 3
    assert not pending.has_pending(get_queue(), 0)


def test_failed_drain_puts_its_batch_back(app, db, connect_resource, post_event, run_worker, monkeypatch):
    app.config["EVENT_DRAIN_SHARDS"] = 1
    res = connect_resource("customer")
    for body in customer_events(3):
        post_event(res, body)

    def database_gone(row_ids, resolver):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(batch, "_start", database_gone)
    run_worker()
    queue = get_queue()
    failed = FailedJobRegistry(queue=queue).get_job_ids()
    assert len(failed) == 1 and failed[0].startswith(pending.DRAIN_JOB_PREFIX)  # RQ records the drain's failure
    ids = db.session.scalars(select(StripeEvent.id)).all()
    assert set(pending.where(queue, ids).values()) == {("pending", 0, 0.0)}  # nothing left stranded inflight

    monkeypatch.undo()
    sweep_unqueued(0)  # pending past the grace period: the sweep queues a drain for them
    run_worker()
    assert set(statuses(db).values()) == {("processed", 1)}


def test_sweep_drains_a_shard_that_is_no_longer_configured(app, db, connect_resource, post_event, run_worker):
    """Events left in shard 3 after EVENT_DRAIN_SHARDS went from 4 to 1, their drain job lost."""
    res = connect_resource("customer")
    post_event(res, customer_events(1)[0])
    row_id = db.session.scalar(select(StripeEvent.id))
    queue = get_queue()
    pending.forget(queue, [row_id])
    pending.add(queue, [row_id], shard=3)
    queue.empty()  # the drain jobs are lost
    pending.release(queue, 3)
    assert pending.where(queue, [row_id]) == {row_id: ("pending", 3, 0.0)}
    sweep_unqueued(0)
    run_worker()
    assert statuses(db) == {"evt_fault_00000": ("processed", 1)}
