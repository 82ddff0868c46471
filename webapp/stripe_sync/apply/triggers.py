"""The one hand-off from the Stripe sync to automations: record that a trigger fired.

A TriggerFired row is the record; once the transaction that wrote it commits, every listener
registered with `on_fired` is called with the new rows' ids (automations start runs there). A trigger fires at most once per (trigger, event, contact), enforced by the
table's unique constraint, so a redelivered or retried event never fires it twice. Historical
records fire nothing unless the resource was connected with "trigger automations" for history.
"""
import logging

from typing import Callable

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.crm.models import Contact, TriggerFired
from webapp.extensions import db
from webapp.stripe_sync.models import StripeEvent, StripeResource
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

STRIPE_EVENT_RECEIVED = "stripe_event_received"
MAKES_PURCHASE = "makes_purchase"
RECURRING_PAYMENT_CREATED = "recurring_payment_created"
RECURRING_PAYMENT_UPDATED = "recurring_payment_updated"
TRIGGERS = {
    STRIPE_EVENT_RECEIVED: "Stripe event received",
    MAKES_PURCHASE: "Makes a purchase",
    RECURRING_PAYMENT_CREATED: "Recurring Payment Created",
    RECURRING_PAYMENT_UPDATED: "Recurring Payment Updated",
}


def fire_trigger(trigger: str, contact: Contact, event_row: StripeEvent, details: dict | None = None,
                 cache=None) -> TriggerFired | None:
    """Record one firing inside the caller's transaction; None when it already fired or must not.

    With a page cache (batches and imports), the firing is only staged: `cache.flush()` inserts the
    page's firings in one statement that skips those already recorded (`insert_firings`)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"Unknown automation trigger {trigger!r}")
    if event_row.historical:
        resource = db.session.get(StripeResource, event_row.resource_id) if event_row.resource_id else None
        if resource is None or not resource.trigger_historical:
            return None
    if cache is not None:
        cache.new_firings.append(dict(trigger=trigger, contact_id=contact.id, event_row_id=event_row.id,
                                      event_type=event_row.type, details=details or None,
                                      historical=event_row.historical, created_at=utcnow()))
        return None
    existing = db.session.scalar(select(TriggerFired.id).where(
        TriggerFired.trigger == trigger, TriggerFired.event_row_id == event_row.id,
        TriggerFired.contact_id == contact.id))
    if existing is not None:
        return None
    fired = TriggerFired(trigger=trigger, contact_id=contact.id, event_row_id=event_row.id,
                         event_type=event_row.type, details=details or None, historical=event_row.historical)
    try:
        with db.session.begin_nested():
            db.session.add(fired)
    except IntegrityError:
        return None
    db.session.info.setdefault(_PENDING, []).append(fired.id)
    log.debug("Trigger %s fired for contact %s by event row %s", trigger, contact.id, event_row.id)
    return fired


def insert_firings(rows: list[dict]) -> None:
    """Insert staged firings, skipping any already recorded (a replayed event), and queue the new
    ids for the listeners, as `fire_trigger` does one at a time."""
    if not rows:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = TriggerFired.__table__
    stmt = (insert(table).on_conflict_do_nothing(index_elements=["trigger", "event_row_id", "contact_id"])
            .returning(table.c.id))
    ids = sorted(db.session.scalars(stmt, rows))  # staged in event order; RETURNING may reorder them
    if ids:
        db.session.info.setdefault(_PENDING, []).extend(ids)


# --- after commit: tell the listeners -------------------------------------------------------------

_PENDING = "fired_trigger_ids"
_listeners: list[Callable[[list[int]], None]] = []


def on_fired(listener: Callable[[list[int]], None]) -> None:
    """Register a callable that receives the ids of TriggerFired rows once they are committed."""
    if listener not in _listeners:
        _listeners.append(listener)


@event.listens_for(Session, "after_commit")
def _announce(session: Session) -> None:
    """Only committed firings are announced; a listener failing never undoes the commit."""
    if session.in_nested_transaction():
        return  # a SAVEPOINT released (SQLAlchemy calls this hook for those too): nothing is committed yet
    ids = session.info.pop(_PENDING, None)
    if not ids:
        return
    for listener in list(_listeners):
        try:
            listener(list(ids))
        except Exception:  # noqa: BLE001 - the rows are stored; a sweep can pick them up later
            log.exception("trigger listener %r failed for %s fired trigger(s)", listener, len(ids))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    """A rolled-back transaction fired nothing."""
    session.info.pop(_PENDING, None)
