"""What a user changes by hand outranks older Stripe events: each changed field is stamped with the time
of the edit, so Stripe events from before it (a late delivery, a re-sync of history) leave the value
alone and only newer ones change it, the same forward-only rule the field mapping follows. An email
changed by hand goes into the contact's history like one changed in Stripe.

Only fields the user set to something are stamped: a blank field stays open for Stripe to fill.
"""
import time

from sqlalchemy import select

from webapp.crm.models import Contact, ContactEmailChange, ContactFieldStamp, ContactFieldValue
from webapp.extensions import db
from webapp.timeutil import utcnow
from webapp.upsert import dialect_insert

STANDARD = ("email", "first_name", "last_name", "phone")


def snapshot(contact: Contact | None) -> dict[str, str]:
    """A contact's values by field key, as they are before the user's edit."""
    if contact is None or contact.id is None:
        return {}
    values = {key: getattr(contact, key) or "" for key in STANDARD}
    for value in db.session.scalars(select(ContactFieldValue).where(ContactFieldValue.contact_id == contact.id)):
        values[value.field.key] = value.value or ""
    return values


def record(contact: Contact, before: dict[str, str]) -> None:
    """Stamp the fields the edit changed and keep a replaced email; the caller commits."""
    after = snapshot(contact)
    changed = [key for key, value in after.items() if value and value != before.get(key, "")]
    if not changed:
        return
    now = int(time.time())
    table = ContactFieldStamp.__table__
    stmt = dialect_insert(table).values([{"contact_id": contact.id, "field_key": key, "event_created": now,
                                          "event_row_id": 0} for key in changed])
    db.session.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.contact_id, table.c.field_key],
        set_={"event_created": stmt.excluded.event_created, "event_row_id": stmt.excluded.event_row_id},
        where=table.c.event_created < stmt.excluded.event_created))
    old = before.get("email", "")
    if old and old.lower() != after["email"].lower():
        db.session.add(ContactEmailChange(contact_id=contact.id, old_email=old, new_email=after["email"],
                                          changed_at=utcnow(), stripe_customer_id=None, event_row_id=None))
