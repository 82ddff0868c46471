"""/healthz for load balancers and process managers: database, Redis, queue depth, oldest backlog, and
whether Stripe can still reach us (endpoints disabled or deleted in Stripe, the oldest recovery
checkpoint's age). Endpoint problems do not make it unhealthy: the process is fine, and recovery
keeps bringing events in; they are for alerts."""
import logging
import time
from dataclasses import dataclass

from flask import Blueprint, jsonify
from sqlalchemy import func, select, text

from webapp.extensions import db
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.models import (
    ACCOUNT_CONNECTED, ENDPOINT_DISABLED, ENDPOINT_MISSING, EVENT_QUEUED, EVENT_RECEIVED, RESOURCE_DISCONNECTED,
    RESOURCE_DISCONNECTING, StripeAccount, StripeEvent, StripeResource,
)
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


def backlog_age_seconds() -> float | None:
    """Age of the oldest event recorded but not yet processed (indexed on status, received_at)."""
    oldest = db.session.scalar(select(func.min(StripeEvent.received_at))
                               .where(StripeEvent.status.in_((EVENT_RECEIVED, EVENT_QUEUED))))
    return round((utcnow() - oldest).total_seconds(), 1) if oldest else None


@dataclass
class EventCoverage:
    """What /healthz and /metrics say about missed events: accounts whose endpoints Stripe disabled or
    lost, and how far behind the oldest recovery checkpoint is (None: no account checked yet)."""

    disabled_endpoints: int
    missing_endpoints: int
    accounts_with_endpoint_problems: int
    oldest_checkpoint_age_seconds: float | None


def event_coverage() -> EventCoverage:
    """Two small aggregate queries over connected accounts."""
    connected = StripeAccount.status == ACCOUNT_CONNECTED
    rows = db.session.execute(
        select(StripeResource.endpoint_status, StripeResource.account_id)
        .join(StripeAccount, StripeAccount.id == StripeResource.account_id)
        .where(connected, StripeResource.status.not_in((RESOURCE_DISCONNECTED, RESOURCE_DISCONNECTING)),
               StripeResource.endpoint_status.in_((ENDPOINT_DISABLED, ENDPOINT_MISSING)))).all()
    oldest = db.session.scalar(select(func.min(StripeAccount.events_checkpoint)).where(connected))
    return EventCoverage(
        disabled_endpoints=sum(1 for r in rows if r.endpoint_status == ENDPOINT_DISABLED),
        missing_endpoints=sum(1 for r in rows if r.endpoint_status == ENDPOINT_MISSING),
        accounts_with_endpoint_problems=len({r.account_id for r in rows}),
        oldest_checkpoint_age_seconds=round(time.time() - oldest, 1) if oldest else None)


@bp.route("/healthz")
def healthz():
    """200 when the database and Redis answer, 503 otherwise; never reveals data beyond counts."""
    report = {"database": "ok", "redis": "ok"}
    healthy = True
    try:
        db.session.execute(text("SELECT 1"))
        report["oldest_unprocessed_event_age_seconds"] = backlog_age_seconds()
        coverage = event_coverage()
        report["stripe_accounts_with_disabled_or_missing_endpoints"] = coverage.accounts_with_endpoint_problems
        report["stripe_endpoints_disabled"] = coverage.disabled_endpoints
        report["stripe_endpoints_missing"] = coverage.missing_endpoints
        report["oldest_event_checkpoint_age_seconds"] = coverage.oldest_checkpoint_age_seconds
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
