"""The one hand-off from the Stripe sync to automations: record that a trigger fired.

A TriggerFired row is the record; once the transaction that wrote it commits, every listener
registered with `on_fired` is called with the new rows' ids (automations start runs there). A
batch stages its firings in event order and inserts them at its flush. A trigger fires at most
once per (trigger, event, contact), enforced by the table's unique constraint (the insert skips
conflicts), so a redelivered or retried event never fires it twice. Historical
records fire nothing unless the resource was connected with "trigger automations" for history.
"""
import logging

from typing import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

from webapp.upsert import dialect_insert
from webapp.crm.models import Contact, TriggerFired
from webapp.extensions import db
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


def fire_trigger(cache, trigger: str, contact: Contact, event_row, details: dict | None = None) -> dict | None:
    """Stage one firing in the batch's contact cache (None when the event must not fire it); the
    batch's flush inserts them with `insert_firings`, in event order."""
    if trigger not in TRIGGERS:
        raise ValueError(f"Unknown automation trigger {trigger!r}")
    if not cache.may_fire(event_row):
        return None
    row = dict(trigger=trigger, contact_id=contact.id, event_row_id=event_row.id, event_type=event_row.type,
               details=details or None, historical=event_row.historical, created_at=utcnow())
    cache.new_firings.append(row)
    return row


def insert_firings(rows: list[dict]) -> list[int]:
    """Insert staged firings, skipping any already recorded (a replayed event), and queue the new ids
    for the listeners; returns those ids."""
    if not rows:
        return []
    for row in rows:  # a detail only the flush could give (a new row's id) was staged as a callable
        if row["details"] and any(callable(v) for v in row["details"].values()):
            row["details"] = {k: v() if callable(v) else v for k, v in row["details"].items()}
    table = TriggerFired.__table__
    stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=["trigger", "event_row_id", "contact_id"])
    ids = sorted(db.session.scalars(stmt.returning(table.c.id), rows))  # staged in event order; RETURNING may reorder
    if ids:
        db.session.info.setdefault(_PENDING, []).extend(ids)
        log.debug("%s trigger firing(s) recorded", len(ids))
    return ids


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
