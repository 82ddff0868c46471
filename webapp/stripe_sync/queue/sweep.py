"""The safety net under intake: every recorded event eventually gets a job that runs to the end.

`sweep_unqueued(older_than_seconds)` finds, among events older than the grace period:
- "received" events, recorded while Redis was down: enqueued now;
- "queued" (or "failed" with attempts left) events whose job can no longer finish it: the drain
  job holding it died (pending.py's inflight hash names its worker and a deadline), the job
  is missing (Redis lost it, or intake died between commit and enqueue), its worker died in the
  middle of it (SIGKILL, OOM, power loss), or RQ gave up on it as abandoned. Those are requeued
  with the retries they have left, or, once an event has used all its attempts (one that keeps
  killing workers), marked failed for the log's Retry button instead of looping forever.

A started job's worker counts as dead when `redis_queue.worker_alive` says so. Jobs that are queued, scheduled for a retry,
deferred, stopped or cancelled by an operator are left alone. Requeuing is safe even when
the old run is somehow still alive: `process_event` claims the row, so only one run can commit.

Historical imports (history/importer.py) are swept the same way, lane by lane: a lane whose job was
lost or whose worker died gets a new job, which continues the lane's windows from their saved cursors.

The worker process runs the sweep every EVENT_SWEEP_INTERVAL seconds (one worker at a time, by a
Redis lock); `flask --app app stripe-sweep` runs it once by hand.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import click
from flask.cli import with_appcontext
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import and_, or_, select, update

from webapp.extensions import db
from webapp.periodic import grace_cutoff
from webapp.redis_queue import get_queue, worker_alive
from webapp.stripe_sync import synclog
from webapp.stripe_sync.history import lanes, windows
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, BACKFILL_FAILED, BACKFILL_RUNNING, EVENT_FAILED, EVENT_QUEUED, EVENT_RECEIVED, OUTCOME_FAILED,
    WINDOW_OPEN, Backfill, BackfillLane, BackfillWindow, EventRef, StripeEvent,
)
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.queue.enqueue import enqueue_event, job_id_for, max_attempts, queue_events
from webapp.tunables import setting
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

LOCK_KEY = "stripe-sync:sweep-lock"
WAITING = {JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value}
LEFT_BY_OPERATOR = {JobStatus.STOPPED.value, JobStatus.CANCELED.value}


@dataclass
class SweepReport:
    """What one sweep did, for the log line and the CLI."""

    enqueued: int = 0   # received, never queued
    requeued: int = 0   # queued, but the job was lost or its worker died
    gave_up: int = 0    # lost too many times; left failed
    backfills: int = 0  # historical imports requeued from their saved cursor

    @property
    def changed(self) -> int:
        """How many events (and imports) the sweep touched."""
        return self.enqueued + self.requeued + self.gave_up + self.backfills

    def __str__(self) -> str:
        """The log line's wording."""
        text = f"{self.enqueued} enqueued, {self.requeued} requeued, {self.gave_up} given up"
        return text + (f", {self.backfills} imports resumed" if self.backfills else "")


def sweep_unqueued(older_than_seconds: float | None = None, queue: Queue | None = None) -> SweepReport:
    """Enqueue recorded-but-unqueued events and requeue ones whose job was lost; Redis errors propagate."""
    cutoff = grace_cutoff("EVENT_SWEEP_GRACE", older_than_seconds)
    queue = queue or get_queue()
    report = SweepReport()
    _enqueue_received(cutoff, queue, report)
    _recover_lost(cutoff, queue, report)
    report.backfills = _recover_imports(cutoff, queue)
    if report.changed:
        log.info("Stripe event sweep: %s", report)
    return report


def _enqueue_received(cutoff, queue: Queue, report: SweepReport) -> None:
    """Events intake recorded while Redis was unreachable."""
    ids = list(db.session.scalars(
        select(StripeEvent.id).where(StripeEvent.status == EVENT_RECEIVED, StripeEvent.received_at <= cutoff)
        .order_by(StripeEvent.id).limit(int(setting("EVENT_SWEEP_BATCH")))))
    db.session.rollback()
    if not ids:
        return
    queue_events(ids, queue)
    db.session.execute(update(StripeEvent).where(StripeEvent.id.in_(ids), StripeEvent.status == EVENT_RECEIVED)
                       .values(status=EVENT_QUEUED, enqueued_at=utcnow()))
    db.session.commit()
    report.enqueued += len(ids)


def _recover_lost(cutoff, queue: Queue, report: SweepReport) -> None:
    """Queued (or retrying) events whose job will never finish them."""
    limit = max_attempts()
    rows = db.session.execute(
        select(StripeEvent.id, StripeEvent.status, StripeEvent.attempts)
        .where(StripeEvent.enqueued_at <= cutoff,
               or_(StripeEvent.status == EVENT_QUEUED,
                   and_(StripeEvent.status == EVENT_FAILED, StripeEvent.attempts < limit)))
        .order_by(StripeEvent.id).limit(int(setting("EVENT_SWEEP_BATCH")))).all()
    db.session.rollback()
    if not rows:
        return
    conn = queue.connection
    rows = _leave_to_drains(queue, rows)
    with conn.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.hmget(Job.key_for(job_id_for(row.id)), "status", "worker_name")
        jobs = pipe.execute()
    # Jobs a worker took off the queue but died before starting: RQ only notices after minutes.
    handed_off = {j.decode() for j in conn.lrange(queue.intermediate_queue.key, 0, -1)}
    for row, (raw_status, raw_worker) in zip(rows, jobs):
        job_status = raw_status.decode() if raw_status else None
        if job_status in WAITING and job_id_for(row.id) in handed_off:
            conn.lrem(queue.intermediate_queue.key, 0, job_id_for(row.id))
            job_status = None  # treated as lost below: its worker died between dequeue and start
        why = _why_lost(conn, row.status, job_status, raw_worker.decode() if raw_worker else "")
        if why is None:
            continue
        current = db.session.scalar(select(StripeEvent.status).where(StripeEvent.id == row.id))
        db.session.rollback()
        if current != row.status:
            continue  # a worker moved it on while we looked
        if row.attempts >= limit:
            _give_up(row.id, row.status, row.attempts, why)
            report.gave_up += 1
            continue
        _drop_job(queue, row.id)
        enqueue_event(row.id, queue, retries=limit - row.attempts - 1)
        db.session.execute(update(StripeEvent).where(StripeEvent.id == row.id, StripeEvent.status == row.status)
                           .values(status=EVENT_QUEUED, enqueued_at=utcnow()))
        db.session.commit()
        log.warning("Stripe event row %s requeued: %s (attempts so far: %s)", row.id, why, row.attempts)
        report.requeued += 1


def _leave_to_drains(queue: Queue, rows: list) -> list:
    """Rows a drain job still owns are left to it; what a dead drain held is released for its own job."""
    held = pending.where(queue, [row.id for row in rows])
    if not held:
        return rows
    waiting = {shard for state, shard, _d in held.values() if state == "pending"}
    if waiting:
        for shard in sorted(waiting):
            pending.arm(queue, shard, force=True)  # pending past the grace period: its drain may be lost
        pending.drop_stuck_drains(queue)
        log.info("Stripe event sweep: events still pending in %s shard(s); drain jobs were queued", len(waiting))
    now = time.time()
    released = [row_id for row_id, (state, worker, deadline) in held.items()
                if state == "inflight" and (deadline < now or not worker_alive(queue.connection, worker))]
    pending.forget(queue, released)
    keep = set(held) - set(released)
    return [row for row in rows if row.id not in keep]


def _why_lost(conn, event_status: str, job_status: str | None, worker_name: str) -> str | None:
    """Why this event's job will not finish it, or None when it still will (or must be left alone)."""
    if job_status is None:
        return "its job is missing from Redis"
    if job_status in WAITING or job_status in LEFT_BY_OPERATOR:
        return None
    if job_status == JobStatus.STARTED.value:
        return None if worker_alive(conn, worker_name) else f"worker {worker_name or '?'} died during the job"
    if job_status == JobStatus.FAILED.value:
        # A failed event whose job failed is the normal end of its retries: it waits for Retry.
        return None if event_status == EVENT_FAILED else "RQ gave up on its job as abandoned"
    if job_status == JobStatus.FINISHED.value:
        return "its job finished without finishing the event"
    return None


def _drop_job(queue: Queue, event_id: int) -> None:
    """Remove the dead job and its registry entries so RQ's own cleanup cannot run it a second time."""
    try:
        Job.fetch(job_id_for(event_id), connection=queue.connection).delete(remove_from_queue=False)
    except NoSuchJobError:
        pass


def _give_up(event_id: int, status: str, attempts: int, why: str) -> None:
    """Stop requeuing an event that was lost on every attempt; the Retry button can still run it."""
    message = f"Gave up after {attempts} attempts: {why}."
    event = db.session.get(StripeEvent, event_id)
    if event is None or event.status != status:
        db.session.rollback()
        return
    event.status, event.error = EVENT_FAILED, message
    ref = EventRef(id=event.id, account_id=event.account_id, resource_id=event.resource_id,
                   stripe_event_id=event.stripe_event_id, type=event.type, created=event.created,
                   historical=event.historical, recovered=event.recovered)
    synclog.record([synclog.row(ref, OUTCOME_FAILED, message, attempts)])
    db.session.commit()
    log.error("Stripe event row %s: %s", event_id, message)


def _recover_imports(cutoff, queue) -> int:
    """Import lanes whose job can no longer run them (worker died, job lost): a new job continues the
    lane's windows from their cursors; an active import with unread windows and no lane running gets one."""
    rows = db.session.execute(
        select(BackfillLane.id, BackfillLane.backfill_id, BackfillLane.number, BackfillLane.job_id, BackfillLane.lost)
        .join(Backfill, Backfill.id == BackfillLane.backfill_id)
        .where(Backfill.state.in_(BACKFILL_ACTIVE), BackfillLane.job_id.is_not(None),
               BackfillLane.updated_at <= cutoff).order_by(BackfillLane.id)).all()
    db.session.rollback()
    resumed = 0
    conn = queue.connection
    for row in rows:
        raw_status, raw_worker = conn.hmget(Job.key_for(row.job_id), "status", "worker_name")
        why = _why_lost(conn, BACKFILL_RUNNING, raw_status.decode() if raw_status else None,
                        raw_worker.decode() if raw_worker else "")
        if why is None:
            continue
        if row.lost >= int(setting("BACKFILL_MAX_LOST")):
            given_up = db.session.execute(
                update(BackfillLane).where(BackfillLane.id == row.id, BackfillLane.job_id == row.job_id)
                .values(job_id=None, updated_at=utcnow())).rowcount
            if given_up:
                db.session.execute(
                    update(Backfill).where(Backfill.id == row.backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
                    .values(state=BACKFILL_FAILED, finished_at=utcnow(), updated_at=utcnow(), paused_until=None,
                            error=f"The import stopped {row.lost + 1} times in a row without saving a page ({why}). "
                                  "Resume continues from the last saved pages."))
            db.session.commit()
            if given_up:
                log.error("Backfill %s given up: %s", row.backfill_id, why)
            continue
        job_id = lanes.new_job_id(row.backfill_id, row.number)
        changed = db.session.execute(
            update(BackfillLane).where(BackfillLane.id == row.id, BackfillLane.job_id == row.job_id)
            .values(job_id=job_id, lost=BackfillLane.lost + 1, updated_at=utcnow())).rowcount
        db.session.commit()
        if not changed:
            continue
        try:
            Job.fetch(row.job_id, connection=conn).delete(remove_from_queue=True)
        except Exception:  # noqa: BLE001 - gone already
            pass
        lanes.enqueue(row.backfill_id, job_id, queue, row.number)
        log.warning("Backfill %s lane %s requeued from its saved cursors: %s", row.backfill_id, row.number, why)
        resumed += 1
    return resumed + _wake_stalled_imports(cutoff, queue)


def _wake_stalled_imports(cutoff, queue) -> int:
    """An active import with unread windows but no lane running (its last lane went idle as a cut was
    being saved): wake a lane for it."""
    lanes_running = select(BackfillLane.id).where(BackfillLane.backfill_id == Backfill.id,
                                                  BackfillLane.job_id.is_not(None)).exists()
    unread = select(BackfillWindow.id).where(BackfillWindow.backfill_id == Backfill.id,
                                             BackfillWindow.state == WINDOW_OPEN).exists()
    stalled = db.session.scalars(select(Backfill.id).where(
        Backfill.state.in_(BACKFILL_ACTIVE), Backfill.updated_at <= cutoff, ~lanes_running, unread)).all()
    db.session.rollback()
    woken = 0
    for backfill_id in stalled:
        windows.release_all(backfill_id)
        db.session.commit()
        woken += lanes.wake_lanes(backfill_id, 1, at_least_one=True, queue=queue)
        log.warning("Backfill %s had unread windows and no lane running; woke one", backfill_id)
    return woken


# --- by hand --------------------------------------------------------------------------------------

@click.command("stripe-sweep")
@click.option("--older-than", type=float, default=None,
              help="Only events recorded at least this many seconds ago (default EVENT_SWEEP_GRACE).")
@with_appcontext
def sweep_command(older_than):
    """Enqueue Stripe events that were recorded but never queued, or whose job was lost."""
    report = sweep_unqueued(older_than)
    click.echo(f"Stripe event sweep: {report}.")
