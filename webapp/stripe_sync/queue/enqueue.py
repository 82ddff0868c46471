"""Putting recorded Stripe events on the RQ queue.

New events go to the pending set that drain jobs work through in batches (pending.py, drain.py);
`queue_events` decides. An event that failed, or that the sweep recovers, gets a job of its own,
`process_event`, whose id is derived from the row id (`stripe-event-<id>`) so the sweep can find
it without a column for it, and re-enqueueing replaces a dead job instead of piling up copies.
Running an event twice is harmless anyway: every path claims the row in its transaction.

Retries are decided here and nowhere else: an event's own job is retried by RQ (its Retry policy,
EVENT_RETRY_INTERVALS); an event that failed anywhere else (in a drain, in an imported page) gets
such a job, due after the interval of the attempt it just spent (`schedule_retries`).
"""
import logging
from datetime import timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job

from sqlalchemy import update

from webapp.extensions import db
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.models import EVENT_FAILED, EVENT_QUEUED, StripeEvent
from webapp.tunables import intervals, setting
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

JOB_FUNC = "webapp.jobs.process_event"
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


def job_id_for(event_row_id: int) -> str:
    """Deterministic, so the sweep can look the job up from the event row alone."""
    return f"stripe-event-{event_row_id}"


def max_attempts() -> int:
    """The first run plus one per retry interval."""
    return 1 + len(intervals("EVENT_RETRY_INTERVALS"))


def batch_size() -> int:
    """EVENT_BATCH_SIZE, at least 1."""
    return max(1, int(setting("EVENT_BATCH_SIZE")))


def retry_policy(retries: int | None = None) -> Retry | None:
    """RQ's retry with the configured backoff; `retries` caps it when earlier attempts were spent."""
    seconds = intervals("EVENT_RETRY_INTERVALS")
    count = len(seconds) if retries is None else min(retries, len(seconds))
    if count <= 0:
        return None
    return Retry(max=count, interval=seconds[len(seconds) - count:])


def queue_events(row_ids: list[int], queue: Queue | None = None, event: dict | None = None,
                 events: list[dict] | None = None) -> None:
    """Hand events to a drain job, or to a job each when batching is off (EVENT_BATCH_SIZE 1); Redis
    errors propagate so the caller decides what "down" means. With the parsed `event` (intake) or
    `events` (one per id: recovery), the customer picks the drain shard; without (the sweep), the row id."""
    if not row_ids:
        return
    queue = queue or get_queue()
    if batch_size() > 1:
        shards = pending.shard_count()
        if event is not None:
            pending.add(queue, row_ids, pending.shard_for(event, shards))
            return
        by_shard: dict[int, list[int]] = {}
        for n, row_id in enumerate(row_ids):
            shard = pending.shard_for(events[n], shards) if events is not None else row_id % shards
            by_shard.setdefault(shard, []).append(row_id)
        for shard, ids in by_shard.items():
            pending.add(queue, ids, shard)
        return
    for row_id in row_ids:
        enqueue_event(row_id, queue)


def enqueue_event(event_row_id: int, queue: Queue | None = None, retries: int | None = None, delay: float = 0):
    """Queue `process_event(row id)`, now or after `delay` seconds (RQ's scheduler moves it to the queue
    then), with `retries` left after this run; the one place an event's own job is made. Redis
    errors propagate so the caller decides what "down" means."""
    queue = queue or get_queue()
    options = dict(args=(event_row_id,), job_id=job_id_for(event_row_id), retry=retry_policy(retries),
                   job_timeout=int(setting("EVENT_JOB_TIMEOUT")), result_ttl=int(setting("EVENT_RESULT_TTL")),
                   description=f"process Stripe event row {event_row_id}" + (" (retry)" if delay > 0 else ""))
    if delay > 0:
        return queue.enqueue_in(timedelta(seconds=delay), JOB_FUNC, **options)
    with queue.connection.pipeline() as pipe:
        job = queue.enqueue(JOB_FUNC, pipeline=pipe, **options)
        pipe.execute()
    return job


def _own_job(event_row_id: int):
    """The RQ job running now when it is this event's own, whose retries RQ runs itself; else None."""
    job = get_current_job()
    return job if job is not None and job.id == job_id_for(event_row_id) else None


def will_retry(event_row_id: int, attempt: int) -> bool:
    """Whether this failed attempt is followed by another: RQ's word inside the event's own job,
    otherwise the configured number of attempts."""
    job = _own_job(event_row_id)
    return bool(job.retries_left) if job is not None else attempt < max_attempts()


def schedule_retries(failed: list[tuple[int, int]], queue: Queue | None = None) -> None:
    """[(row id, attempt)] that just failed: each gets its own job, due after its attempt's interval,
    with the retries left after it (RQ retries an event's own job itself). If Redis is down, the
    sweep queues them later (failed events with attempts left and no job)."""
    seconds = intervals("EVENT_RETRY_INTERVALS")
    try:
        for row_id, attempt in failed:
            if _own_job(row_id) is not None or not will_retry(row_id, attempt):
                continue
            delay = seconds[min(attempt, len(seconds)) - 1] if seconds else 0
            enqueue_event(row_id, queue, retries=max_attempts() - attempt - 1, delay=delay)
    except REDIS_DOWN as exc:
        log.warning("Retries of %s failed Stripe events not queued (%s); the sweep will queue them",
                    len(failed), type(exc).__name__)


def retry_event(event_row_id: int) -> bool:
    """The sync log's Retry button: run a failed event again with a fresh set of retries."""
    changed = db.session.execute(
        update(StripeEvent).where(StripeEvent.id == event_row_id, StripeEvent.status == EVENT_FAILED)
        .values(status=EVENT_QUEUED, enqueued_at=utcnow())).rowcount
    db.session.commit()
    if not changed:
        return False
    queue = get_queue()
    try:
        Job.fetch(job_id_for(event_row_id), connection=queue.connection).delete(remove_from_queue=True)
    except NoSuchJobError:
        pass
    enqueue_event(event_row_id, queue)  # if Redis is down now, the sweep finds the queued row later
    log.info("Stripe event row %s queued again by hand", event_row_id)
    return True
