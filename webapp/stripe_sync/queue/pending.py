"""Coalescing webhook events into drain jobs: the Redis side.

RQ's own bookkeeping costs a few milliseconds per job, more than processing a typical event, so
intake does not enqueue a job per event. It adds the event's row id to a sorted set (`pending`)
of one of a few shards and, only when no drain job owns that shard, enqueues one
(`drain_events(shard)`). A drain pops batches of ids and processes each batch in one transaction
(drain.py, through apply/batch.py). Decisions:
- A shard is chosen by the event's Stripe customer, so one customer's events meet in one drain:
  two drains never queue on the same contact's row lock, and each shard keeps its own order.
- One drain per shard at a time: a flag set with SET NX by whoever enqueues the drain and cleared
  by the drain when it ends, after which it looks again and re-arms if anything came meanwhile.
  So busy shards always have a drain, idle ones none, and parallel workers take different
  shards. EVENT_DRAIN_SHARDS sets how many (SQLite, with one writer, always uses one). The flag
  expires, so a drain job lost with its flag set blocks its shard only for ARMED_SECONDS.
- Popped ids move into an `inflight` hash (id → worker name and deadline) in the same Lua call,
  and leave it when their batch has committed. The sweep requeues, one job per event, what is
  inflight under a dead worker or past its deadline, and queues a drain for a shard whose events
  have waited past the grace period.
- A drain that fails puts its ids back before re-raising, so nothing waits for the sweep then.
"""
from __future__ import annotations

import logging
import time
import uuid
import zlib

from rq import Queue
from rq.job import Job

from webapp.extensions import db
from webapp.tunables import setting

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


def shard_count() -> int:
    """EVENT_DRAIN_SHARDS, or 1 on SQLite, where a second drain would only wait for the write lock."""
    if db.engine.dialect.name == "sqlite":
        return 1
    return max(1, int(setting("EVENT_DRAIN_SHARDS")))


def shard_for(event: dict, shards: int) -> int:
    """The event's customer decides (its id, or the id of the customer object itself)."""
    if shards <= 1:
        return 0
    obj = event.get("data", {}).get("object", {})
    ref = obj.get("id") if obj.get("object") == "customer" else obj.get("customer")
    if isinstance(ref, dict):
        ref = ref.get("id")
    if not isinstance(ref, str) or not ref:
        ref = str(event.get("id", ""))
    return zlib.crc32(ref.encode()) % shards


def _base(queue: Queue) -> str:
    """Per queue, so two apps (or test runs) sharing a Redis never drain each other's events."""
    return f"stripe-sync:{queue.name}"


def keys(queue: Queue, shard: int = 0) -> tuple[str, str, str]:
    """The shard's pending set and armed flag, and the inflight hash all shards share."""
    base = _base(queue)
    return f"{base}:pending:{shard}", f"{base}:drain-armed:{shard}", f"{base}:inflight"


def add(queue: Queue, row_ids: list[int], shard: int = 0) -> bool:
    """Record ids as pending and make sure a drain will run; one command (a script, cheaper for the
    client than a pipeline on intake's hot path) unless a drain has to be enqueued."""
    pending, armed, _inflight = keys(queue, shard)
    scores = [str(n) for i in row_ids for n in (i, i)]
    newly_armed = queue.connection.eval(_ADD, 2, pending, armed, ARMED_SECONDS, *scores)
    if newly_armed:
        _enqueue_drain(queue, shard)
    return bool(newly_armed)


def arm(queue: Queue, shard: int = 0, force: bool = False) -> bool:
    """Enqueue a drain unless one owns the shard already (or regardless, when forced by the sweep)."""
    _pending, armed, _inflight = keys(queue, shard)
    if not queue.connection.set(armed, "1", nx=True, ex=ARMED_SECONDS) and not force:
        return False
    _enqueue_drain(queue, shard)
    return True


def _enqueue_drain(queue: Queue, shard: int) -> None:
    """A drain job; if Redis fails here the flag expires and the sweep enqueues one instead."""
    queue.connection.sadd(f"{_base(queue)}:shards", shard)  # so the sweep finds it if the count shrinks
    queue.enqueue_call(DRAIN_FUNC, args=(shard,), job_id=f"{DRAIN_JOB_PREFIX}{uuid.uuid4().hex}",
                       timeout=int(setting("EVENT_JOB_TIMEOUT")) + int(setting("EVENT_DRAIN_SECONDS")),
                       result_ttl=0, description=f"process pending Stripe events (shard {shard})")


def release(queue: Queue, shard: int) -> None:
    """The shard's drain ended: the next delivery (or `arm`) may enqueue another."""
    queue.connection.delete(keys(queue, shard)[1])


def take(queue: Queue, shard: int, count: int, worker_name: str, hold_seconds: float) -> list[int]:
    """Pop up to count ids, oldest first, marking them inflight for this worker until a deadline."""
    pending, _armed, inflight = keys(queue, shard)
    owner = f"{worker_name}|{time.time() + hold_seconds:.0f}"
    raw = queue.connection.eval(_TAKE, 2, pending, inflight, count, owner)
    return [int(i) for i in raw]


def finish(queue: Queue, row_ids: list[int]) -> None:
    """Their batch committed (or they were handed to per-event jobs): no longer inflight."""
    if row_ids:
        queue.connection.hdel(keys(queue)[2], *[str(i) for i in row_ids])


def give_back(queue: Queue, shard: int, row_ids: list[int]) -> None:
    """A drain failed before finishing these: pending again, for the shard's next drain."""
    if not row_ids:
        return
    pending, _armed, inflight = keys(queue, shard)
    with queue.connection.pipeline() as pipe:
        pipe.zadd(pending, {str(i): i for i in row_ids})
        pipe.hdel(inflight, *[str(i) for i in row_ids])
        pipe.execute()


def has_pending(queue: Queue, shard: int) -> bool:
    """Whether any id of the shard waits for a drain."""
    return bool(queue.connection.zcard(keys(queue, shard)[0]))


def waiting_count(queue: Queue) -> int:
    """Events waiting for a drain, over the configured shards (for /healthz and /metrics)."""
    with queue.connection.pipeline(transaction=False) as pipe:
        for shard in range(shard_count()):
            pipe.zcard(keys(queue, shard)[0])
        return sum(pipe.execute())


def _shard_keys(queue: Queue) -> list[tuple[int, str]]:
    """Every shard's pending set, including shards of a larger EVENT_DRAIN_SHARDS set earlier (every
    shard that ever had a drain is remembered in a small Redis set)."""
    used = {int(s) for s in queue.connection.smembers(f"{_base(queue)}:shards")}
    return [(shard, keys(queue, shard)[0]) for shard in sorted(used | set(range(shard_count())))]


def where(queue: Queue, row_ids: list[int]) -> dict[int, tuple[str, object, float]]:
    """For each id that is pending or inflight: ("pending", shard, 0) or ("inflight", worker, deadline)."""
    if not row_ids:
        return {}
    members = [str(i) for i in row_ids]
    shards = _shard_keys(queue)
    with queue.connection.pipeline(transaction=False) as pipe:
        pipe.hmget(keys(queue)[2], members)
        for _shard, key in shards:
            pipe.zmscore(key, members)
        owners, *scores = pipe.execute()
    found: dict[int, tuple[str, object, float]] = {}
    for n, row_id in enumerate(row_ids):
        if owners[n] is not None:
            worker, _sep, deadline = owners[n].decode().rpartition("|")
            found[row_id] = ("inflight", worker, float(deadline or 0))
            continue
        for (shard, _key), shard_scores in zip(shards, scores):
            if shard_scores[n] is not None:
                found[row_id] = ("pending", shard, 0.0)
                break
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
    members = [str(i) for i in row_ids]
    with queue.connection.pipeline() as pipe:
        for _shard, key in _shard_keys(queue):
            pipe.zrem(key, *members)
        pipe.hdel(keys(queue)[2], *members)
        pipe.execute()
