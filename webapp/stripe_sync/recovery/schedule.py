"""When an account's check for missed events runs: every RECOVERY_INTERVAL seconds for every connected
account, when a worker starts, and when someone presses "Check for missed events" or repairs an
endpoint. Each is one RQ job per account, `recover_events(account id)`, with a job id derived from
the account, so asking again while one waits or runs adds nothing."""
from __future__ import annotations

import logging

from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from webapp.extensions import db
from webapp.redis_queue import get_queue, worker_alive
from webapp.stripe_sync.models import ACCOUNT_CONNECTED, StripeAccount
from webapp.tunables import setting

log = logging.getLogger(__name__)

JOB_FUNC = "webapp.jobs.recover_events"
LOCK_KEY = "stripe-sync:recovery-schedule-lock"
WAITING = {JobStatus.QUEUED.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value}
RETRY_INTERVALS = [30, 300]  # a failed check is tried again soon; the schedule covers the rest


def job_id(account_id: int) -> str:
    """One check per account in the queue at a time."""
    return f"stripe-recover-{account_id}"


def state(account_id: int, queue: Queue | None = None) -> str | None:
    """"queued" or "running" while the account's check waits or runs; None otherwise."""
    queue = queue or get_queue()
    raw_status, raw_worker = queue.connection.hmget(Job.key_for(job_id(account_id)), "status", "worker_name")
    status = raw_status.decode() if raw_status else None
    if status in WAITING:
        return "queued"
    if status == JobStatus.STARTED.value and worker_alive(queue.connection, raw_worker.decode() if raw_worker else ""):
        return "running"
    return None


def request_check(account_id: int, queue: Queue | None = None) -> bool:
    """Queue the account's check unless one already waits or runs; True when one was queued. Redis errors
    propagate so the caller can say the check could not be queued."""
    queue = queue or get_queue()
    if state(account_id, queue) is not None:
        return False
    try:
        Job.fetch(job_id(account_id), connection=queue.connection).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass
    queue.enqueue_call(JOB_FUNC, args=(account_id,), job_id=job_id(account_id),
                       timeout=int(setting("RECOVERY_JOB_TIMEOUT")), result_ttl=3600, failure_ttl=7 * 86400,
                       retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
                       description=f"check Stripe account {account_id} for missed events")
    return True


def check_all(queue: Queue | None = None) -> int:
    """Queue a check of every connected account (the schedule and a starting worker)."""
    ids = db.session.scalars(select(StripeAccount.id).where(
        StripeAccount.status == ACCOUNT_CONNECTED, StripeAccount.secret_key_enc.is_not(None))
        .order_by(StripeAccount.id)).all()
    db.session.rollback()
    queued = sum(request_check(account_id, queue) for account_id in ids)
    if queued:
        log.info("Checks for missed Stripe events queued for %s account(s)", queued)
    return queued
