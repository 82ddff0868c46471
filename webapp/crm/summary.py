"""The contacts list's Stripe figures, kept on the contacts row so 100,000 contacts sort by an index.

`refresh_summaries(contact_ids)` recomputes them from the rows they derive from, in a fixed number
of statements per 500 contacts (three reads, the current values, one UPDATE executemany for the
contacts whose figures changed), inside the caller's transaction. The Stripe sync calls it once
per batch, through `refresh_after_events`, after the batch's event statuses are written: for the
contacts of its payment events (PAYMENT_EVENT_TYPES, for last_payment_at) plus
`contacts_changed_in_session()`, the owners, old and new, of every buyer record, order and
recurring payment the session wrote (a refund changes another contact's order; a subscription can
move). A customer event changes none of the figures.

What each figure means:
- lifetime_value / lifetime_currency: the sum of the contact's buyer records' `total_revenue` (one
  per Stripe account; paid Checkout orders minus refunded ones) in the currency of the record with
  the latest order. Records in another currency are left out, not converted: there are no exchange
  rates here, and adding yen to dollars would be wrong. No buyer record with a currency: 0, none.
- subscription_status: the most relevant of the contact's recurring payments, in STATUS_ORDER
  (money flowing beats money about to flow beats trouble beats stopped); ties go to the payment
  updated last. An ACTIVE payment whose Stripe status is `trialing` shows as TRIALING. None: NULL.
- last_payment_at: the latest of the buyer records' last order and the `created` time of the
  contact's processed payment events (PAYMENT_EVENT_TYPES), naive UTC like every stored time.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import bindparam, column, event, func, inspect, select, table, update
from sqlalchemy.orm import Session

from webapp.crm.models import Contact, EcommerceCustomer, Order, RecurringPayment
from webapp.extensions import db

log = logging.getLogger(__name__)

CHUNK = 500
PAYMENT_EVENT_TYPES = ("charge.succeeded", "invoice.payment_succeeded", "invoice.paid",
                       "checkout.session.completed", "checkout.session.async_payment_succeeded")
# Most relevant first; a status not listed ranks after all of these.
STATUS_ORDER = ("ACTIVE", "TRIALING", "PAYMENT_FAILED", "PENDING", "PAUSED", "CANCELLED", "EXPIRED")
SUMMARY_COLUMNS = ("lifetime_value", "lifetime_currency", "last_payment_at", "subscription_status")
# The CRM never imports the Stripe sync (hooks.py); it reads the processed events' table by name.
_events = table("stripe_events", column("contact_id"), column("type"), column("status"), column("created"))
EVENT_PROCESSED = "processed"
_CHANGED = "summary_contact_ids"
_SOURCES = (EcommerceCustomer, Order, RecurringPayment)


def shown_status(status: str | None, stripe_status: str | None) -> str | None:
    """The CRM folds Stripe's trialing into ACTIVE; the list tells a trial apart, as marketers ask."""
    if status == "ACTIVE" and (stripe_status or "").lower() == "trialing":
        return "TRIALING"
    return status


def _rank(status: str | None) -> int:
    """Position in STATUS_ORDER; unknown statuses last."""
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _epoch(seconds: int | None) -> datetime | None:
    """Stripe seconds as the naive UTC datetimes the columns store."""
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(int(seconds), timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def refresh_summaries(contact_ids: Iterable[int | None]) -> int:
    """Recompute these contacts' figures in the caller's transaction; returns how many rows changed."""
    # Unknown, repeated or None ids are fine; nothing is committed.
    ids = sorted({int(i) for i in contact_ids if i})
    changed = 0
    for start in range(0, len(ids), CHUNK):
        changed += _refresh(ids[start:start + CHUNK])
    return changed


def refresh_after_events(events: Iterable[tuple[int | None, str]]) -> int:
    """After a batch of (contact id, event type): only payments and commerce rows move the figures."""
    return refresh_summaries({contact_id for contact_id, event_type in events if event_type in PAYMENT_EVENT_TYPES}
                             | contacts_changed_in_session())


def _refresh(ids: list[int]) -> int:
    """One chunk: read what the figures derive from, write the rows whose figures changed."""
    figures = {cid: {"lifetime_value": 0, "lifetime_currency": None, "last_payment_at": None,
                     "subscription_status": None} for cid in ids}
    _lifetime_values(ids, figures)
    _subscriptions(ids, figures)
    _payment_events(ids, figures)
    current = db.session.execute(
        select(Contact.id, *(getattr(Contact, name) for name in SUMMARY_COLUMNS)).where(Contact.id.in_(ids))).all()
    rows = []
    for row in current:
        new = figures[row.id]
        if any(getattr(row, name) != new[name] for name in SUMMARY_COLUMNS):
            rows.append({"contact": row.id, **{f"new_{name}": new[name] for name in SUMMARY_COLUMNS}})
    if rows:
        contacts = Contact.__table__
        db.session.execute(
            update(contacts).where(contacts.c.id == bindparam("contact"))
            .values(updated_at=contacts.c.updated_at,  # derived figures do not make the contact "edited"
                    **{name: bindparam(f"new_{name}") for name in SUMMARY_COLUMNS}),
            rows)
        _expire_loaded({r["contact"] for r in rows})
        log.debug("contact summaries changed for %s of %s contact(s)", len(rows), len(ids))
    return len(rows)


def _lifetime_values(ids: list[int], figures: dict) -> None:
    """Revenue in the currency of each contact's buyer record with the latest order."""
    buyers = db.session.execute(
        select(EcommerceCustomer.contact_id, EcommerceCustomer.currency, EcommerceCustomer.total_revenue,
               EcommerceCustomer.last_order_at, EcommerceCustomer.updated_at, EcommerceCustomer.id)
        .where(EcommerceCustomer.contact_id.in_(ids))).all()
    by_contact: dict[int, list] = {}
    for b in buyers:
        by_contact.setdefault(b.contact_id, []).append(b)
        if b.last_order_at is not None:
            f = figures[b.contact_id]
            f["last_payment_at"] = max(filter(None, (f["last_payment_at"], b.last_order_at)))
    for contact_id, records in by_contact.items():
        priced = [b for b in records if b.currency]
        if not priced:
            continue
        latest = max(priced, key=lambda b: (b.last_order_at is not None, b.last_order_at or datetime.min,
                                            b.updated_at or datetime.min, b.id))
        figures[contact_id]["lifetime_currency"] = latest.currency
        figures[contact_id]["lifetime_value"] = sum(b.total_revenue or 0 for b in priced
                                                    if b.currency == latest.currency)


def _subscriptions(ids: list[int], figures: dict) -> None:
    """The most relevant recurring payment's status per contact."""
    payments = db.session.execute(
        select(RecurringPayment.contact_id, RecurringPayment.status, RecurringPayment.stripe_status,
               RecurringPayment.updated_at, RecurringPayment.id)
        .where(RecurringPayment.contact_id.in_(ids))).all()
    best: dict[int, tuple] = {}
    for p in payments:
        status = shown_status(p.status, p.stripe_status)
        key = (-_rank(status), p.updated_at or datetime.min, p.id)
        if p.contact_id not in best or key > best[p.contact_id][0]:
            best[p.contact_id] = (key, status)
    for contact_id, (_key, status) in best.items():
        figures[contact_id]["subscription_status"] = (status or "")[:30] or None


def latest_payments_query(ids: list[int]):
    """Each contact's latest processed payment event, through the (contact_id, created) index."""
    # coalesce() keeps SQLite, which has no statistics here, off the (status, received_at) index: it
    # walked every processed event of the table for each batch (17 ms a batch at 10,000 events).
    return (select(_events.c.contact_id, func.max(_events.c.created))
            .where(_events.c.contact_id.in_(ids), func.coalesce(_events.c.status, "") == EVENT_PROCESSED,
                   _events.c.type.in_(PAYMENT_EVENT_TYPES))
            .group_by(_events.c.contact_id))


def _payment_events(ids: list[int], figures: dict) -> None:
    """last_payment_at from the contacts' processed payment events."""
    for contact_id, created in db.session.execute(latest_payments_query(ids)).all():
        at = _epoch(created)
        if at is not None:
            f = figures[contact_id]
            f["last_payment_at"] = max(filter(None, (f["last_payment_at"], at)))


def _expire_loaded(ids: set[int]) -> None:
    """Contacts this session already holds would show the old figures until the next commit."""
    for contact_id in ids:  # by key: a batch's session holds thousands of other objects
        obj = db.session.identity_map.get(db.session.identity_key(Contact, contact_id))
        if obj is not None:
            db.session.expire(obj, list(SUMMARY_COLUMNS))


def contacts_changed_in_session() -> set[int]:
    """Owners, old and new, of the buyer records, orders and subscriptions this transaction wrote."""
    db.session.flush()
    return set(db.session.info.get(_CHANGED, ()))


@event.listens_for(Session, "before_flush")
def _note_owners(session: Session, _context, _instances) -> None:
    """Remember whose figures a flush may change, while the old owner is still in the history."""
    noted = None
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, _SOURCES):
            history = inspect(obj).attrs.contact_id.history
            owners = {*history.added, *history.unchanged, *history.deleted} - {None}
            if owners:
                noted = session.info.setdefault(_CHANGED, set()) if noted is None else noted
                noted.update(owners)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_owners(session: Session) -> None:
    """A new transaction starts with nothing noted (a savepoint's end keeps the outer one's notes)."""
    if not session.in_nested_transaction():
        session.info.pop(_CHANGED, None)
