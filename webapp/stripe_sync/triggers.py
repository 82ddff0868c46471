"""The one hand-off from the Stripe sync to automations: record that a trigger fired.

The automations issue will make `fire_trigger` start automation runs; until then a TriggerFired
row is the record. A trigger fires at most once per (trigger, event, contact), enforced by the
table's unique constraint, so a redelivered or retried event never fires it twice. Historical
records fire nothing unless the resource was connected with "trigger automations" for history.
"""
import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.crm.models import Contact, TriggerFired
from webapp.extensions import db
from webapp.stripe_sync.models import StripeEvent, StripeResource

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


def fire_trigger(trigger: str, contact: Contact, event_row: StripeEvent, details: dict | None = None
                 ) -> TriggerFired | None:
    """Record one firing inside the caller's transaction; None when it already fired or must not."""
    if trigger not in TRIGGERS:
        raise ValueError(f"Unknown automation trigger {trigger!r}")
    if event_row.historical:
        resource = db.session.get(StripeResource, event_row.resource_id) if event_row.resource_id else None
        if resource is None or not resource.trigger_historical:
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
    log.debug("Trigger %s fired for contact %s by event row %s", trigger, contact.id, event_row.id)
    return fired
