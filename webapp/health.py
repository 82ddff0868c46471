"""/healthz for load balancers and process managers: database, Redis, queue depth, oldest backlog."""
import logging

from flask import Blueprint, jsonify
from sqlalchemy import func, select, text

from webapp.extensions import db
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.models import EVENT_QUEUED, EVENT_RECEIVED, StripeEvent
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


def backlog_age_seconds() -> float | None:
    """Age of the oldest event recorded but not yet processed (indexed on status, received_at)."""
    oldest = db.session.scalar(select(func.min(StripeEvent.received_at))
                               .where(StripeEvent.status.in_((EVENT_RECEIVED, EVENT_QUEUED))))
    return round((utcnow() - oldest).total_seconds(), 1) if oldest else None


@bp.route("/healthz")
def healthz():
    """200 when the database and Redis answer, 503 otherwise; never reveals data beyond counts."""
    report = {"database": "ok", "redis": "ok"}
    healthy = True
    try:
        db.session.execute(text("SELECT 1"))
        report["oldest_unprocessed_event_age_seconds"] = backlog_age_seconds()
    except Exception as exc:  # noqa: BLE001 - any database failure means unhealthy
        db.session.rollback()
        log.error("healthz: database check failed: %s", type(exc).__name__)
        report["database"], healthy = "unreachable", False
    try:
        queue = get_queue()
        queue.connection.ping()
        report["queue_depth"] = queue.count
        report["events_waiting_for_a_drain"] = pending.waiting_count(queue)
    except Exception as exc:  # noqa: BLE001 - any Redis failure means unhealthy
        log.error("healthz: redis check failed: %s", type(exc).__name__)
        report["redis"], healthy = "unreachable", False
    report["status"] = "ok" if healthy else "unhealthy"
    return jsonify(report), 200 if healthy else 503
