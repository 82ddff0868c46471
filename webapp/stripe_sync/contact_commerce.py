"""What the contact page shows from Stripe: buyer totals, orders, recurring payments, activity."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from webapp.crm.models import EcommerceCustomer, Order, RecurringPayment
from webapp.extensions import db
from webapp.stripe_sync.models import StripeAccount, SyncLog
from webapp.stripe_sync.apply.stamps import Transition, status_transitions

ACTIVITY_LIMIT = 50
STATUS_BADGES = {
    "ACTIVE": "badge-ok", "PAID": "badge-ok",
    "PAUSED": "badge-warn", "PENDING": "badge-warn", "PARTIALLY_REFUNDED": "badge-warn",
    "PAYMENT_FAILED": "badge-danger", "CANCELLED": "badge-danger", "EXPIRED": "badge-danger",
    "REFUNDED": "badge-danger",
    "CREATED": "badge-ok", "UPDATED": "badge-ok", "SKIPPED": "badge-warn", "FAILED": "badge-danger",
}


def badge_class(status: str | None) -> str:
    """The stylesheet's badge colour for a status or outcome; neutral when unknown."""
    return STATUS_BADGES.get((status or "").upper(), "")


@dataclass
class RecurringView:
    """A recurring payment with its folded status history, oldest first."""

    payment: RecurringPayment
    transitions: list[Transition]


@dataclass
class ContactCommerce:
    """Everything Stripe-related on one contact page, loaded in a few indexed queries."""

    customers: list[tuple[EcommerceCustomer, StripeAccount | None]] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    recurring: list[RecurringView] = field(default_factory=list)
    activity: list[SyncLog] = field(default_factory=list)


def commerce_for_contact(contact_id: int, activity_limit: int = ACTIVITY_LIMIT) -> ContactCommerce:
    """Buyer records, newest orders and subscriptions first, and the latest sync log rows."""
    customers = db.session.execute(
        select(EcommerceCustomer, StripeAccount)
        .outerjoin(StripeAccount, StripeAccount.id == EcommerceCustomer.account_id)
        .where(EcommerceCustomer.contact_id == contact_id).order_by(EcommerceCustomer.id)).all()
    orders = db.session.scalars(
        select(Order).where(Order.contact_id == contact_id).order_by(Order.ordered_at.desc(), Order.id.desc()))
    payments = db.session.scalars(
        select(RecurringPayment).options(selectinload(RecurringPayment.history))
        .where(RecurringPayment.contact_id == contact_id).order_by(RecurringPayment.created_at.desc(),
                                                                    RecurringPayment.id.desc()))
    activity = db.session.scalars(
        select(SyncLog).where(SyncLog.contact_id == contact_id).order_by(SyncLog.id.desc()).limit(activity_limit))
    return ContactCommerce(
        customers=[(c, a) for c, a in customers],
        orders=list(orders),
        recurring=[RecurringView(p, status_transitions(p.history)) for p in payments],
        activity=list(activity),
    )
