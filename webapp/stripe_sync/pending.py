"""Coalescing webhook events into drain jobs: the Redis side.

RQ's own bookkeeping costs a few milliseconds per job, more than processing a typical event, so
intake does not enqueue a job per event. It adds the event's row id to a sorted set (`pending`)
and, only when no drain job is waiting in the queue, enqueues one (`drain_events`). A drain job
pops batches of ids and processes each batch in one transaction (batch.py). Decisions:
- "A drain is coming" is a flag set with SET NX by whoever enqueues a drain and cleared by the
  drain when it starts, so under load there is always one drain queued behind the running ones
  and every free worker picks one up; idle, no job is queued at all. On SQLite (one writer) the
  drain clears it when it ends instead, so drains run one at a time (batch.drain). The flag
  expires, so a drain job lost with its flag set blocks nothing for long.
- Popped ids move into an `inflight` hash (id → worker name and deadline) in the same Lua call,
  and leave it when their batch has committed. The sweep requeues, one job per event, what is
  pending with no drain to take it or inflight under a dead worker or past its deadline.
- A drain that fails puts its ids back before re-raising, so nothing waits for the sweep then.
"""
from __future__ import annotations

import logging
import time
import uuid

from rq import Queue
from rq.job import Job

log = logging.getLogger(__name__)

DRAIN_FUNC = "webapp.jobs.drain_events"
DRAIN_JOB_PREFIX = "stripe-drain-"
ARMED_SECONDS = 60

# ZADD the ids (ARGV[2..] as score, member pairs), then SET the armed flag NX with ARGV[1] seconds
# to live; returns 1 when this call armed it (so the caller enqueues a drain).
_ADD = """
redis.call('ZADD', KEYS[1], unpack(ARGV, 2))
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""

# ZPOPMIN up to ARGV[1] ids and mark each inflight with ARGV[2] (worker|deadline); returns the ids.
_TAKE = """
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local ids = {}
for i = 1, #popped, 2 do
  ids[#ids + 1] = popped[i]
  redis.call('HSET', KEYS[2], popped[i], ARGV[2])
end
return ids
"""


def keys(queue: Queue) -> tuple[str, str, str]:
    """Per queue, so two apps (or test runs) sharing a Redis never drain each other's events."""
    base = f"stripe-sync:{queue.name}"
    return f"{base}:pending", f"{base}:drain-armed", f"{base}:inflight"


def add(queue: Queue, row_ids: list[int]) -> bool:
    """Record ids as pending and make sure a drain will run; one command (a script, cheaper for the
    client than a pipeline on intake's hot path) unless a drain has to be enqueued."""
    pending, armed, _inflight = keys(queue)
    scores = [str(n) for i in row_ids for n in (i, i)]
    newly_armed = queue.connection.eval(_ADD, 2, pending, armed, ARMED_SECONDS, *scores)
    if newly_armed:
        _enqueue_drain(queue)
    return bool(newly_armed)


def arm(queue: Queue, force: bool = False) -> bool:
    """Enqueue a drain unless one is already waiting (or regardless, when forced by the sweep)."""
    pending, armed, _inflight = keys(queue)
    if not queue.connection.set(armed, "1", nx=True, ex=ARMED_SECONDS) and not force:
        return False
    _enqueue_drain(queue)
    return True


def _enqueue_drain(queue: Queue) -> None:
    """A drain job; if Redis fails here the flag expires and the sweep enqueues one instead."""
    from webapp.stripe_sync.sync_settings import setting

    queue.enqueue_call(DRAIN_FUNC, job_id=f"{DRAIN_JOB_PREFIX}{uuid.uuid4().hex}", timeout=int(setting("EVENT_JOB_TIMEOUT")) + int(setting("EVENT_DRAIN_SECONDS")),
                       result_ttl=0,
                       description="process pending Stripe events")


def started(queue: Queue) -> None:
    """A drain began (or, where drains run one at a time, ended): the next delivery may enqueue one."""
    queue.connection.delete(keys(queue)[1])


def take(queue: Queue, count: int, worker_name: str, hold_seconds: float) -> list[int]:
    """Pop up to count ids, oldest first, marking them inflight for this worker until a deadline."""
    pending, _armed, inflight = keys(queue)
    owner = f"{worker_name}|{time.time() + hold_seconds:.0f}"
    raw = queue.connection.eval(_TAKE, 2, pending, inflight, count, owner)
    return [int(i) for i in raw]


def finish(queue: Queue, row_ids: list[int]) -> None:
    """Their batch committed (or they were handed to per-event jobs): no longer inflight."""
    if row_ids:
        queue.connection.hdel(keys(queue)[2], *[str(i) for i in row_ids])


def give_back(queue: Queue, row_ids: list[int]) -> None:
    """A drain failed before finishing these: pending again, for the next drain."""
    if not row_ids:
        return
    pending, _armed, inflight = keys(queue)
    with queue.connection.pipeline() as pipe:
        pipe.zadd(pending, {str(i): i for i in row_ids})
        pipe.hdel(inflight, *[str(i) for i in row_ids])
        pipe.execute()


def has_pending(queue: Queue) -> bool:
    """Whether any id waits for a drain."""
    return bool(queue.connection.zcard(keys(queue)[0]))


def where(queue: Queue, row_ids: list[int]) -> dict[int, tuple[str, str, float]]:
    """For each id that is pending or inflight: ("pending", "", 0) or ("inflight", worker, deadline)."""
    if not row_ids:
        return {}
    pending, _armed, inflight = keys(queue)
    members = [str(i) for i in row_ids]
    with queue.connection.pipeline(transaction=False) as pipe:
        pipe.zmscore(pending, members)
        pipe.hmget(inflight, members)
        scores, owners = pipe.execute()
    found: dict[int, tuple[str, str, float]] = {}
    for row_id, score, owner in zip(row_ids, scores, owners):
        if owner is not None:
            worker, _sep, deadline = owner.decode().rpartition("|")
            found[row_id] = ("inflight", worker, float(deadline or 0))
        elif score is not None:
            found[row_id] = ("pending", "", 0.0)
    return found


def drop_stuck_drains(queue: Queue) -> int:
    """Drain jobs left in RQ's intermediate list by a worker that died between dequeue and start; the
    sweep calls this only when it has just queued a fresh drain for what they would have taken."""
    conn = queue.connection
    stuck = [j for j in conn.lrange(queue.intermediate_queue.key, 0, -1) if j.startswith(DRAIN_JOB_PREFIX.encode())]
    for job_id in stuck:
        conn.lrem(queue.intermediate_queue.key, 0, job_id)
        conn.delete(Job.key_for(job_id.decode()))
    return len(stuck)


def forget(queue: Queue, row_ids: list[int]) -> None:
    """The sweep gave these their own jobs: no drain should take them as well."""
    if not row_ids:
        return
    pending, _armed, inflight = keys(queue)
    members = [str(i) for i in row_ids]
    with queue.connection.pipeline() as pipe:
        pipe.zrem(pending, *members)
        pipe.hdel(inflight, *members)
        pipe.execute()
