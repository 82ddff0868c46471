"""The safety net under automations: work whose RQ job was lost is queued again from the database.

`sweep_automations()` looks for, among rows older than the grace period:
- fired triggers never checked against the automations (the listener's enqueue failed while
  Redis was down), from the earliest activation of an active automation on: entered now;
- runs "running" whose job is missing, finished, failed or held by a dead worker: re-enqueued;
- runs "waiting" past their `next_run_at` by the grace period whose job is missing, gone, or
  still only scheduled (no scheduler runs, or a killed worker still holds RQ's scheduler lock):
  queued now. A wait whose job vanished is so resumed at most one grace period late;
- outbox messages "queued" whose delivery job is missing or dead: queued again.
A re-enqueued run gets a new token first, so a late copy of the old job claims nothing.

The worker runs it at start and then every AUTOMATION_SWEEP_INTERVAL seconds (one worker at a time,
by a Redis lock); `flask --app app automations sweep` runs it once by hand.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import and_, exists, func, or_, select, update

from webapp.automations.dispatch import (
    ACTIVE_COUNT_KEY, enqueue_entries, enqueue_run, enqueue_send, message_job_id, new_token,
)
from webapp.automations.models import (
    MSG_QUEUED, RUN_RUNNING, RUN_WAITING, Automation, AutomationRun, AutomationRunLog, AutomationTriggerCheck,
    OutboxMessage,
)
from webapp.tunables import setting
from webapp.crm.models import TriggerFired
from webapp.extensions import db
from webapp.periodic import grace_cutoff
from webapp.redis_queue import get_queue
from webapp.redis_queue import worker_alive

log = logging.getLogger(__name__)

LOCK_KEY = "automations:sweep-lock"


@dataclass
class SweepReport:
    """What one sweep did, for the log line and the CLI."""

    entered: int = 0
    runs: int = 0
    messages: int = 0

    @property
    def changed(self) -> int:
        """How many things the sweep queued."""
        return self.entered + self.runs + self.messages

    def __str__(self) -> str:
        """The log line's wording."""
        return (f"{self.entered} fired trigger(s) entered, {self.runs} run(s) requeued, "
                f"{self.messages} message(s) requeued")


def sweep_automations(older_than_seconds: float | None = None, queue: Queue | None = None) -> SweepReport:
    """Queue again what lost its job; Redis errors propagate."""
    cutoff = grace_cutoff("AUTOMATION_SWEEP_GRACE", older_than_seconds)
    queue = queue or get_queue()
    report = SweepReport()
    _unchecked_triggers(cutoff, queue, report)
    _lost_runs(cutoff, queue, report)
    _lost_messages(cutoff, queue, report)
    if report.changed:
        log.info("Automation sweep: %s", report)
    return report


def _job_states(queue: Queue, job_ids: list[str]) -> list[tuple[str | None, str]]:
    """(status, worker name) of each job, in one round trip."""
    with queue.connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), "status", "worker_name")
        raw = pipe.execute()
    return [(s.decode() if s else None, w.decode() if w else "") for s, w in raw]


def _lost(conn, status: str | None, worker: str) -> bool:
    """The job will not move its row: missing, ended, or its worker is dead."""
    if status is None or status in (JobStatus.FINISHED.value, JobStatus.FAILED.value,
                                    JobStatus.STOPPED.value, JobStatus.CANCELED.value):
        return True
    if status == JobStatus.STARTED.value:
        return not worker_alive(conn, worker)
    return False


def _unchecked_triggers(cutoff, queue: Queue, report: SweepReport) -> None:
    """Fired triggers the listener never got to the automations (Redis down, or a stale active count)."""
    since, active = db.session.execute(select(func.min(Automation.activated_at), func.count(Automation.id))
                                       .where(Automation.active.is_(True))).one()
    queue.connection.set(ACTIVE_COUNT_KEY, int(active))
    if since is None:
        db.session.rollback()
        return
    ids = list(db.session.scalars(
        select(TriggerFired.id).where(TriggerFired.created_at >= since, TriggerFired.created_at <= cutoff,
                                      ~exists().where(AutomationTriggerCheck.trigger_fired_id == TriggerFired.id))
        .order_by(TriggerFired.id).limit(int(setting("AUTOMATION_SWEEP_BATCH")))))
    db.session.rollback()
    if ids:
        enqueue_entries(ids, queue)
        report.entered += len(ids)


def _chunks(query, key, size: int):
    """Rows of `query` in pages of `size` by ascending `key`, so a sweep covers every row, not the first page."""
    last = None
    while True:
        page = db.session.execute((query if last is None else query.where(key > last)).order_by(key).limit(size)).all()
        db.session.rollback()
        if not page:
            return
        yield page
        last = page[-1][0]


def _lost_runs(cutoff, queue: Queue, report: SweepReport) -> None:
    """Running runs idle since the cutoff, and waiting runs due since it, whose job will not move them."""
    query = select(AutomationRun.id, AutomationRun.state, AutomationRun.job_id).where(or_(
        and_(AutomationRun.state == RUN_RUNNING, AutomationRun.updated_at <= cutoff),
        and_(AutomationRun.state == RUN_WAITING, AutomationRun.next_run_at <= cutoff)))
    for rows in _chunks(query, AutomationRun.id, int(setting("AUTOMATION_SWEEP_BATCH"))):
        for row, (status, worker) in zip(rows, _job_states(queue, [r.job_id or "-" for r in rows])):
            # A running run's scheduled job is a retry waiting out its backoff: left alone.
            overdue = row.state == RUN_WAITING and status == JobStatus.SCHEDULED.value
            if not overdue and not _lost(queue.connection, status, worker):
                continue
            _requeue_run(row, "its scheduled job is overdue" if overdue else f"its job was {status or 'missing'}",
                         queue)
            report.runs += 1


def _requeue_run(row, why: str, queue: Queue) -> None:
    """Give the run a new token (so the old job, if it ever runs, claims nothing) and queue it now."""
    fresh = new_token(row.id)
    changed = db.session.execute(update(AutomationRun).where(
        AutomationRun.id == row.id, AutomationRun.state == row.state, AutomationRun.job_id == row.job_id)
        .values(job_id=fresh)).rowcount
    if not changed:
        db.session.rollback()
        return  # a worker moved it on while we looked
    db.session.add(AutomationRunLog(run_id=row.id, message=f"Requeued by the sweep: {why}."))
    db.session.commit()
    _drop(queue, row.job_id)
    enqueue_run(row.id, fresh, queue=queue)
    log.warning("Automation run %s requeued: %s", row.id, why)


def _lost_messages(cutoff, queue: Queue, report: SweepReport) -> None:
    """Queued messages whose delivery job is gone."""
    query = select(OutboxMessage.id).where(OutboxMessage.state == MSG_QUEUED, OutboxMessage.created_at <= cutoff)
    for rows in _chunks(query, OutboxMessage.id, int(setting("AUTOMATION_SWEEP_BATCH"))):
        ids = [r[0] for r in rows]
        for message_id, (status, worker) in zip(ids, _job_states(queue, [message_job_id(i) for i in ids])):
            if not _lost(queue.connection, status, worker):
                continue
            _drop(queue, message_job_id(message_id))
            enqueue_send(message_id, queue)
            log.warning("Outbox message %s requeued: its delivery job was %s", message_id, status or "missing")
            report.messages += 1


def _drop(queue: Queue, job_id: str | None) -> None:
    """Delete a dead job and its registry entries so RQ cannot run it a second time."""
    if not job_id:
        return
    try:
        Job.fetch(job_id, connection=queue.connection).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass
