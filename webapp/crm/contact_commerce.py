"""The contact page's buyer records, orders and recurring payments, read in a few indexed queries."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from webapp.crm import hooks
from webapp.crm.models import EcommerceCustomer, Order, RecurringPayment
from webapp.extensions import db

STATUS_BADGES = {
    "ACTIVE": "badge-ok", "PAID": "badge-ok",
    "PAUSED": "badge-warn", "PENDING": "badge-warn", "PARTIALLY_REFUNDED": "badge-warn",
    "PAYMENT_FAILED": "badge-danger", "CANCELLED": "badge-danger", "EXPIRED": "badge-danger",
    "REFUNDED": "badge-danger",
}


def badge_class(status: str | None) -> str:
    """Colour says at a glance whether money is flowing; a status added later stays neutral."""
    return STATUS_BADGES.get((status or "").upper(), "")


@dataclass(frozen=True)
class Transition:
    """One step of a recurring payment's status history as the contact page shows it."""

    status: str
    stripe_status: str
    since: int  # Stripe `created` of the first event that reported it
    event_type: str

    @property
    def since_at(self) -> datetime:
        """Naive UTC, like every other time the pages show."""
        return datetime.fromtimestamp(self.since, timezone.utc).replace(tzinfo=None)


def status_transitions(rows: Iterable) -> list[Transition]:
    """Events repeat a status and arrive out of order; people read the steps in Stripe's order."""
    ordered = sorted(rows, key=lambda r: (r.event_created, r.event_row_id))
    steps: list[Transition] = []
    for row in ordered:
        if steps and (steps[-1].status, steps[-1].stripe_status) == (row.status, row.stripe_status):
            continue
        steps.append(Transition(row.status, row.stripe_status, row.event_created, row.event_type))
    return steps


@dataclass
class RecurringView:
    """A recurring payment with its folded status history, oldest first."""

    payment: RecurringPayment
    transitions: list[Transition]


@dataclass
class ContactCommerce:
    """Everything one contact bought, loaded together so the page costs a few queries."""

    customers: list[tuple[EcommerceCustomer, str | None]] = field(default_factory=list)  # with account name
    orders: list[Order] = field(default_factory=list)
    recurring: list[RecurringView] = field(default_factory=list)


def commerce_for_contact(contact_id: int) -> ContactCommerce:
    """Buyer records by age, newest orders and recurring payments first, as the page lists them."""
    customers = list(db.session.scalars(
        select(EcommerceCustomer).where(EcommerceCustomer.contact_id == contact_id).order_by(EcommerceCustomer.id)))
    names = hooks.account_names({c.account_id for c in customers})
    orders = db.session.scalars(
        select(Order).where(Order.contact_id == contact_id).order_by(Order.ordered_at.desc(), Order.id.desc()))
    payments = db.session.scalars(
        select(RecurringPayment).options(selectinload(RecurringPayment.history))
        .where(RecurringPayment.contact_id == contact_id).order_by(RecurringPayment.created_at.desc(),
                                                                    RecurringPayment.id.desc()))
    return ContactCommerce(
        customers=[(c, names.get(c.account_id)) for c in customers],
        orders=list(orders),
        recurring=[RecurringView(p, status_transitions(p.history)) for p in payments],
    )
