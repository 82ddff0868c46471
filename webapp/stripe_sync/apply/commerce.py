"""E-commerce effects of an event: recurring payments, orders, refunds and the E-commerce Customer.

Each handler runs inside the worker's transaction, after the contact is written, and returns a
short note for the sync log. Rows are found by their Stripe ids under unique constraints and
row-locked before their stamps are compared, so two workers never both "win"; a row inserted by
another writer at the same time fails this batch's flush, and the batch is replayed (batch.py).

Decisions:
- Recurring payment history: one RecurringPaymentStatus row per processed subscription event,
  applied or not (a late older event is still a true fact about the past), ordered by Stripe's
  `created`; the contact page folds repeats (crm/contact_commerce.py). An imported subscription is
  today's state, so it writes the steps its own timestamps tell (status_steps): a cancelled one
  was active from its start and cancelled when it ended, not "cancelled since it was created". The current state on the
  RecurringPayment row only moves forward (stamps.subscription_update_wins).
- Orders are facts: created once per Checkout Session; a later paid event for the same session
  refreshes its amount and products (if not older) but never its refund status.
- A full refund marks the order "refunded", a partial one "partially_refunded"; a refund of a
  charge no order knows (a subscription renewal, say) changes no order.
- E-commerce Customer totals are recomputed from the contact's orders in the same transaction,
  never incremented, so concurrent or repeated events cannot drift them. Revenue counts orders that
  are not fully refunded, in the currency of the latest order (mixed currencies are not summed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select

from webapp.crm.models import Contact, EcommerceCustomer, Order, RecurringPayment, RecurringPaymentStatus
from webapp.extensions import db
from webapp.stripe_sync.apply.contacts import ContactCache
from webapp.stripe_sync.apply.commerce_data import (
    order_from_checkout_session, recurring_payment_from_subscription, refund_from_charge,
)
from webapp.money import format_amount
from webapp.stripe_sync.events import map_subscription_status
from webapp.stripe_sync.models import EventRef
from webapp.stripe_sync.apply.stamps import is_newer, subscription_update_wins
from webapp.timeutil import utcnow
from webapp.upsert import dialect_insert
from webapp.stripe_sync.apply.triggers import (
    MAKES_PURCHASE, RECURRING_PAYMENT_CREATED, RECURRING_PAYMENT_UPDATED, fire_trigger,
)

log = logging.getLogger(__name__)

ORDER_PAID = "paid"
ORDER_REFUNDED = "refunded"
ORDER_PARTIALLY_REFUNDED = "partially_refunded"


@dataclass
class Context:
    """What every handler needs about the event being processed."""

    event: EventRef
    account_id: int
    obj: dict
    contact: Contact
    stripe_customer_id: str | None
    cache: ContactCache  # the batch's: firings are staged there, in event order

    @property
    def stamp(self) -> tuple[int, int]:
        """The event's position in time, for out-of-order checks."""
        return (self.event.created, self.event.id)


def from_epoch(value) -> datetime | None:
    """Stripe seconds to the naive UTC datetimes the columns store."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(int(value), timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _get_or_insert(ctx: Context, model, lookup: dict, make) -> tuple[object, bool]:
    """Row-locked row for a unique key, inserted when missing. The batch remembers the rows it read or
    added (ctx.cache.rows), so each key costs one query per batch and the query needs no flush of the
    whole session first. A racing insert by another writer fails the flush with IntegrityError, and
    the batch's transaction is replayed (batch.py), seeing the other's row."""
    key = (model, tuple(sorted(lookup.items())))
    row = ctx.cache.rows.get(key)
    if row is not None:
        return row, False
    with db.session.no_autoflush:
        row = db.session.scalars(select(model).filter_by(**lookup).with_for_update()
                                 .execution_options(populate_existing=True)).first()
    created = row is None
    if created:
        row = make()
        db.session.add(row)
    ctx.cache.rows[key] = row
    return row, created


# --- E-commerce Customer ---------------------------------------------------------------------------

def ensure_ecommerce_customer(ctx: Context, contact_id: int | None = None,
                              orders_changed: bool = True) -> EcommerceCustomer:
    """The contact's buyer record for this account, with totals recomputed from its orders (when they
    changed, or the record is new)."""
    contact_id = contact_id or ctx.contact.id
    customer, created = _get_or_insert(
        ctx, EcommerceCustomer, {"account_id": ctx.account_id, "contact_id": contact_id},
        lambda: EcommerceCustomer(account_id=ctx.account_id, contact_id=contact_id, total_revenue=0, total_orders=0))
    if ctx.stripe_customer_id and contact_id == ctx.contact.id:
        customer.stripe_customer_id = ctx.stripe_customer_id
    if orders_changed or created:
        recompute_totals(customer)
    return customer


def recompute_totals(customer: EcommerceCustomer) -> None:
    """Totals derived from the orders themselves, so they are exact however events interleave."""
    db.session.flush()
    orders = list(db.session.scalars(
        select(Order).where(Order.account_id == customer.account_id, Order.contact_id == customer.contact_id)
        .order_by(Order.ordered_at.desc(), Order.id.desc())))
    counted = [o for o in orders if o.status != ORDER_REFUNDED]
    latest = orders[0] if orders else None
    currency = latest.currency if latest else customer.currency
    customer.total_orders = len(counted)
    customer.total_revenue = sum(o.amount_total or 0 for o in counted if o.currency == currency)
    customer.currency = currency
    customer.last_order_at = latest.ordered_at if latest else None
    customer.last_order_amount = latest.amount_total if latest else None


# --- subscriptions -------------------------------------------------------------------------------

def apply_subscription(ctx: Context) -> str:
    """Upsert the Recurring Payment, record the status in its history, keep the buyer record."""
    data = recurring_payment_from_subscription(ctx.obj)
    external_id = data.get("external_id")
    if not external_id:
        return "subscription without an id: recurring payment not recorded"
    event = ctx.event

    def make():
        """A new row for a subscription seen for the first time."""
        return RecurringPayment(account_id=ctx.account_id, contact_id=ctx.contact.id, external_id=external_id,
                                status=data["status"], stripe_status=data["stripe_status"] or "",
                                source_event_created=0, source_event_row_id=0)

    payment, created = _get_or_insert(ctx, RecurringPayment,
                                      {"account_id": ctx.account_id, "external_id": external_id}, make)
    current = None if created else (payment.source_event_created, payment.source_event_row_id)
    applied = subscription_update_wins(None if created else payment.status, current,
                                       data["status"], event.type, ctx.stamp)
    if applied:
        payment.contact_id = ctx.contact.id
        payment.status = data["status"]
        payment.stripe_status = data["stripe_status"] or ""
        payment.name = str(data["name"])[:255] if data.get("name") else None
        payment.amount = data.get("amount")
        payment.currency = data.get("currency")
        payment.interval = data.get("interval")
        payment.current_period_end = from_epoch(data.get("current_period_end"))
        payment.trial_end = from_epoch(data.get("trial_end"))
        payment.canceled_at = from_epoch(data.get("canceled_at") or data.get("ended_at"))
        payment.source_event_created, payment.source_event_row_id = ctx.stamp
    _record_status(ctx, payment, data)
    ensure_ecommerce_customer(ctx, orders_changed=False)  # a subscription changes no order
    details = {"recurring_payment_id": lambda: payment.id,  # a new row has its id after the batch's flush
               "subscription": external_id, "status": payment.status, "stripe_status": payment.stripe_status}
    if created:
        fire_trigger(ctx.cache, RECURRING_PAYMENT_CREATED, ctx.contact, event, details)
    elif applied:
        fire_trigger(ctx.cache, RECURRING_PAYMENT_UPDATED, ctx.contact, event, details)
    label = payment.name or external_id
    if applied:
        return f"recurring payment {label}: {payment.status}"
    return f"recurring payment {label}: kept {payment.status} (this event is older)"


def _record_status(ctx: Context, payment: RecurringPayment, data: dict) -> None:
    """History rows for the event, once even when the event is processed again. Staged, and written for
    the whole batch in one statement once the batch's flush has given new payments their ids."""
    staged = ctx.cache.rows.setdefault(("recurring statuses",), [])
    if not staged:
        ctx.cache.after_flush.append(lambda: _insert_statuses(staged))
    event = ctx.event
    steps = status_steps(data, event.created) if event.historical else [(data["stripe_status"], event.created)]
    for stripe_status, at in steps:
        staged.append((payment, dict(status=map_subscription_status(stripe_status), stripe_status=stripe_status or "",
                                     event_type=event.type, event_created=at, event_row_id=event.id,
                                     recorded_at=utcnow())))


def status_steps(data: dict, fallback: int) -> list[tuple[str | None, int]]:
    """The statuses an imported subscription passed through, at Stripe's times: a listed subscription is
    today's state, so a cancelled one was active (or trialing) from its start until it ended."""
    raw = data.get("stripe_status")
    start = int(data.get("created") or fallback)
    trial_start, trial_end = data.get("trial_start"), data.get("trial_end")
    ended = data.get("ended_at") or data.get("canceled_at")
    if raw in ("incomplete", "incomplete_expired"):
        steps = [("incomplete", start)]
    elif trial_start:
        steps = [("trialing", int(trial_start))]
        if trial_end and raw != "trialing" and (ended is None or int(trial_end) < int(ended)):
            steps.append(("active", int(trial_end)))
    else:
        steps = [("active", start)]
    if raw != steps[-1][0]:
        when = ended if raw in ("canceled", "incomplete_expired") else data.get("current_period_start")
        steps.append((raw, max(int(when or fallback), steps[-1][1])))
    return steps


def _insert_statuses(staged: list) -> None:
    """The staged history rows (INSERT … ON CONFLICT DO NOTHING: a replayed event adds nothing)."""
    stmt = dialect_insert(RecurringPaymentStatus.__table__).on_conflict_do_nothing(
        index_elements=["recurring_payment_id", "event_row_id", "stripe_status"])
    db.session.execute(stmt, [dict(row, recurring_payment_id=payment.id) for payment, row in staged])
    staged.clear()


# --- checkout sessions ---------------------------------------------------------------------------

def apply_checkout_session(ctx: Context) -> str:
    """A paid session becomes one Order and refreshes the buyer's totals; unpaid ones do nothing here."""
    data = order_from_checkout_session(ctx.obj)
    if data is None:
        return f"checkout session not paid ({ctx.obj.get('payment_status') or 'unknown'}): contact only"
    external_id = data.get("external_id")
    if not external_id:
        return "paid checkout session without an id: order not recorded"
    ordered_at = from_epoch(data.get("created")) or from_epoch(ctx.event.created)

    def make():
        """A new row for a session seen paid for the first time."""
        return Order(account_id=ctx.account_id, contact_id=ctx.contact.id, external_id=external_id,
                     status=ORDER_PAID, ordered_at=ordered_at, amount_total=0, currency="usd")

    order, created = _get_or_insert(ctx, Order, {"account_id": ctx.account_id, "external_id": external_id}, make)
    if created or is_newer(ctx.stamp, (order.source_event_created, order.source_event_row_id)):
        order.contact_id = ctx.contact.id
        order.payment_intent = data.get("payment_intent")
        order.amount_total = int(data.get("amount_total") or 0)
        order.currency = (data.get("currency") or "usd")[:3]
        order.products = data.get("products") or None
        order.ordered_at = ordered_at
        order.source_event_created, order.source_event_row_id = ctx.stamp
    db.session.flush()
    ensure_ecommerce_customer(ctx)
    amount = format_amount(order.amount_total, order.currency)
    if created:
        fire_trigger(ctx.cache, MAKES_PURCHASE, ctx.contact, ctx.event,
                     {"order_id": order.id, "checkout_session": external_id, "amount": order.amount_total,
                      "currency": order.currency})
        return f"order {amount} created"
    return f"order {amount} already recorded"


# --- refunds -------------------------------------------------------------------------------------

def apply_refund(ctx: Context) -> str:
    """Mark the order this charge paid for as refunded, when an order knows the payment."""
    data = refund_from_charge(ctx.obj)
    if not data["refunded"] and not data["partial"]:
        return "charge not refunded"
    payment_intent = data.get("payment_intent")
    order = None
    if payment_intent:
        order = db.session.scalars(
            select(Order).where(Order.account_id == ctx.account_id, Order.payment_intent == payment_intent)
            .with_for_update()).first()
    if order is None:
        return "no order was paid by this refunded charge"
    if order.status != ORDER_REFUNDED:
        order.status = ORDER_REFUNDED if data["refunded"] else ORDER_PARTIALLY_REFUNDED
        order.refunded_at = from_epoch(ctx.event.created)
    db.session.flush()
    ensure_ecommerce_customer(ctx, contact_id=order.contact_id)
    return f"order {format_amount(order.amount_total, order.currency)} marked {order.status.replace('_', ' ')}"
