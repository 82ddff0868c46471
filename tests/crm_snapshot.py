"""The CRM data a marketer sees, as one comparable value, and a way to forget it: tests compare two ways of
getting the same Stripe data in (sequential and windowed imports, delivered and recovered events)."""
from sqlalchemy import delete, select

from tests.helpers import count
from webapp.crm.models import (
    Contact, ContactField, ContactFieldValue, ContactTag, EcommerceCustomer, Order, RecurringPayment, Tag,
    TriggerFired,
)
from webapp.extensions import db as _db
from webapp.stripe_sync.models import StripeEvent

CRM_TABLES = ["outbox_messages", "automation_run_logs", "automation_trigger_checks", "automation_runs",
              "triggers_fired", "sync_logs", "stripe_backfill_windows", "stripe_backfill_lanes", "stripe_events",
              "stripe_backfills", "resource_counters", "recurring_payment_statuses", "recurring_payments", "orders",
              "ecommerce_customers", "contact_tags", "contact_field_values", "contact_field_stamps",
              "stripe_customers", "contacts", "tags"]


def snapshot(db) -> dict:
    """Contacts, field values, tags, orders, e-commerce customers, recurring payments and fired triggers,
    keyed by email and Stripe ids so row ids do not matter."""
    db.session.expire_all()
    email = {c.id: c.email_lower for c in db.session.scalars(select(Contact))}
    values = db.session.execute(select(ContactFieldValue.contact_id, ContactField.key, ContactFieldValue.value)
                                .join(ContactField, ContactField.id == ContactFieldValue.field_id)).all()
    tags = db.session.execute(select(ContactTag.contact_id, Tag.name).join(Tag, Tag.id == ContactTag.tag_id)).all()
    orders = db.session.scalars(select(Order)).all()
    customers = db.session.scalars(select(EcommerceCustomer)).all()
    payments = db.session.scalars(select(RecurringPayment)).all()
    fired = db.session.execute(select(TriggerFired.trigger, TriggerFired.contact_id, StripeEvent.stripe_event_id)
                               .join(StripeEvent, StripeEvent.id == TriggerFired.event_row_id)).all()
    shot = {
        "contacts": sorted((c.email_lower, c.first_name, c.last_name) for c in db.session.scalars(select(Contact))),
        "values": sorted((email[v.contact_id], v.key, v.value) for v in values),
        "tags": sorted((email[t.contact_id], t.name) for t in tags),
        "orders": sorted((email[o.contact_id], o.external_id, o.payment_intent, o.amount_total, o.currency, o.status,
                          o.ordered_at, o.source_event_created) for o in orders),
        "ecommerce": sorted((email[c.contact_id], c.stripe_customer_id, c.total_revenue, c.total_orders, c.currency,
                             c.last_order_at, c.last_order_amount) for c in customers),
        "recurring": sorted((email[p.contact_id], p.external_id, p.status, p.stripe_status, p.name, p.amount,
                             p.currency, p.interval, p.current_period_end, p.canceled_at, p.source_event_created,
                             tuple(sorted((s.status, s.event_created) for s in p.history))) for p in payments),
        "triggers": sorted((t.trigger, email[t.contact_id], t.stripe_event_id) for t in fired),
        "events": count(db, StripeEvent),
    }
    db.session.rollback()
    return shot


def clear_crm(db) -> None:
    """Forget every contact, order, event and import, keeping the connected resources and their mappings."""
    for table in CRM_TABLES:
        db.session.execute(delete(_db.metadata.tables[table]))
    db.session.commit()
