"""The values personalization tags take for one contact and one Stripe event, read from the CRM.

The payload gives most Stripe tags; the rest come from rows the sync wrote: an invoice's
subscription (product name, status, trial end) from its Recurring Payment, a checkout session's or
charge's products from its Order, and the e-commerce tags from the contact's E-commerce Customer
(the one of the event's Stripe account when there are several).
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import select

from webapp.automations import personalization as p
from webapp.crm.models import Contact, EcommerceCustomer, Order, RecurringPayment
from webapp.crm.service import custom_fields
from webapp.extensions import db
from webapp.stripe_sync.models import StripeEvent

log = logging.getLogger(__name__)


def custom_tags() -> dict[int, p.TagInfo]:
    """One tag per custom field, keyed by field id, in the order the fields page shows them."""
    return p.custom_field_tags((f.id, f.label) for f in custom_fields())


def catalogue() -> list[tuple[str, list[p.TagInfo]]]:
    """The tag picker's sections."""
    return p.tag_sections(custom_tags())


def event_payload(event_row: StripeEvent | None) -> dict | None:
    """The raw event JSON, or None when the row is missing or unreadable."""
    if event_row is None:
        return None
    try:
        return json.loads(event_row.payload)
    except (TypeError, ValueError):
        log.warning("Stripe event row %s has an unreadable payload", event_row.id)
        return None


def _products(order: Order | None) -> str | None:
    """An order's product names, comma-separated."""
    names = [str(item.get("name")) for item in (order.products or []) if item.get("name")] if order else []
    return ", ".join(names) or None


def _known(event_row: StripeEvent, payload: dict) -> p.Known:
    """What the sync's rows add to the payload for this event's object."""
    obj = (payload.get("data") or {}).get("object") or {}
    kind = obj.get("object")
    known = p.Known()
    if kind == "invoice":
        parent = obj.get("parent") or {}
        sub_id = (parent.get("subscription_details") or {}).get("subscription") or obj.get("subscription")
        if isinstance(sub_id, dict):
            sub_id = sub_id.get("id")
        if sub_id:
            payment = db.session.scalar(select(RecurringPayment).where(
                RecurringPayment.account_id == event_row.account_id, RecurringPayment.external_id == sub_id))
            if payment is not None:
                known.product_name = payment.name
                known.subscription_status = payment.stripe_status
                known.trial_end = payment.trial_end
    elif kind == "checkout.session" and obj.get("id"):
        known.product_name = _products(db.session.scalar(select(Order).where(
            Order.account_id == event_row.account_id, Order.external_id == obj["id"])))
    elif kind == "charge" and isinstance(obj.get("payment_intent"), str):
        known.product_name = _products(db.session.scalar(select(Order).where(
            Order.account_id == event_row.account_id, Order.payment_intent == obj["payment_intent"])))
    return known


def _ecommerce_customer(contact_id: int, account_id: int | None) -> EcommerceCustomer | None:
    """The contact's buyer record: the event's account first, else the latest updated."""
    rows = list(db.session.scalars(select(EcommerceCustomer).where(EcommerceCustomer.contact_id == contact_id)
                                   .order_by(EcommerceCustomer.updated_at.desc(), EcommerceCustomer.id.desc())))
    return next((r for r in rows if r.account_id == account_id), rows[0] if rows else None)


def values_for(contact: Contact, event_row: StripeEvent | None) -> dict[str, str | None]:
    """Every known tag's value for this contact and event (None where there is nothing to say)."""
    tags = custom_tags()
    by_field = {v.field_id: v.value for v in contact.values}
    values = p.contact_values(contact.first_name or "", contact.last_name or "", contact.email or "",
                              contact.phone or "", {tag.name: by_field.get(fid) for fid, tag in tags.items()})
    payload = event_payload(event_row)
    values.update(p.stripe_values(payload, _known(event_row, payload) if payload else None))
    customer = _ecommerce_customer(contact.id, event_row.account_id if event_row is not None else None)
    if customer is None:
        values.update(p.ecommerce_values())
    else:
        values.update(p.ecommerce_values(customer.total_revenue, customer.total_orders, customer.currency,
                                         customer.last_order_at, customer.last_order_amount))
    return values
