"""Queueing an import's lanes: each lane is an RQ job `webapp.jobs.run_backfill(id, lane)` whose id is
written on the lane's row before it is queued (history/importer.py explains the lanes)."""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import select, update

from webapp.extensions import db
from webapp.redis_queue import get_queue, get_redis
from webapp.stripe_sync.models import BackfillLane
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN
from webapp.timeutil import utcnow
from webapp.tunables import setting

log = logging.getLogger(__name__)

JOB_FUNC = "webapp.jobs.run_backfill"


def new_job_id(backfill_id: int, lane: int = 0) -> str:
    """A fresh id per job, so the sweep can tell a slice's job from its continuation."""
    return f"stripe-backfill-{backfill_id}-{lane}-{uuid.uuid4().hex[:10]}"


def enqueue(backfill_id: int, job_id: str, queue=None, lane: int = 0) -> bool:
    """Queue one slice of a lane; False (logged) when Redis is down, and the sweep queues it later."""
    try:
        (queue or get_queue()).enqueue(
            JOB_FUNC, backfill_id, lane, job_id=job_id, job_timeout=int(setting("BACKFILL_JOB_TIMEOUT")),
            result_ttl=300, description=f"import Stripe history (backfill {backfill_id}, lane {lane})")
        return True
    except REDIS_DOWN as exc:
        log.warning("Backfill %s lane %s not queued, Redis unavailable (%s); the sweep will queue it", backfill_id,
                    lane, type(exc).__name__)
        return False


def allowed_lanes() -> int:
    """Lanes that may run at once: BACKFILL_LANES, but one worker is always left for webhook events."""
    from rq import Worker

    lanes = max(1, int(setting("BACKFILL_LANES")))
    try:
        workers = Worker.count(connection=get_redis())
    except Exception:  # noqa: BLE001 - Redis away: the sweep wakes lanes later
        return 1
    return max(1, min(lanes, workers - 1))


def wake_lanes(backfill_id: int, windows_waiting: int, at_least_one: bool = False, queue=None) -> int:
    """Give idle lanes a job for windows nobody reads yet; how many were woken."""
    per_lane = max(1, int(setting("BACKFILL_WINDOWS_PER_LANE")))
    lanes = db.session.execute(select(BackfillLane.id, BackfillLane.number, BackfillLane.job_id)
                               .where(BackfillLane.backfill_id == backfill_id).order_by(BackfillLane.number)).all()
    running = sum(1 for lane in lanes if lane.job_id)
    wanted = min(allowed_lanes() - running, -(-windows_waiting // per_lane))
    if at_least_one and running == 0:
        wanted = max(wanted, 1)
    woken = 0
    for lane in lanes:
        if woken >= wanted:
            break
        if lane.job_id:
            continue
        job_id = new_job_id(backfill_id, lane.number)
        took = db.session.execute(update(BackfillLane).where(BackfillLane.id == lane.id, BackfillLane.job_id.is_(None))
                                  .values(job_id=job_id, lost=0, updated_at=utcnow())).rowcount
        db.session.commit()
        if took:
            enqueue(backfill_id, job_id, queue, lane.number)
            woken += 1
    return woken
