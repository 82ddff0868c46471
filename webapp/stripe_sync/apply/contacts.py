"""Writing an event's customer into a contact: match by email, apply the mapping, add the tags.

Every batch of events (a drain's webhooks, one retried event, a page of imported records) loads
the rows it touches once, into a ContactCache, instead of querying per event: contacts, field
stamps, tag links and custom fields. New stamps, tag links and trigger firings are staged there
and written in bulk inserts when the batch flushes. Decisions:
- Who the event is about: the contact linked to its Stripe customer, else the one its resolved email
  finds or creates (apply/identity.py). Only a linked customer's own new email rewrites a contact's
  email; a case change is not news. Mapping "Customer Email" to a custom field still fills that field.
- A mapped Customer Name that targets First Name or Last Name fills both (split_name). Mapped to
  any other field it is written whole.
- A value Stripe does not have (None) never clears a field: an invoice event without a phone
  must not erase the phone a customer event wrote.
- Each written field is stamped (ContactFieldStamp) with the event; an older event never
  overwrites a newer one's value (stamps.is_newer).
- A value a custom field cannot hold (a dropdown option that does not exist, text in a number
  field) is left out and named in the sync log reason, instead of failing the whole event.
- The batch's contacts are selected `FOR UPDATE` in id order (PostgreSQL; SQLite locks the whole
  database for the writer), so two batches touching one contact wait for each other.
- Missing contacts get their ids reserved up front (PostgreSQL: the sequence; SQLite: max(id), safe
  because the batch's transaction already holds SQLite's write lock), so stamps and tag links can
  name them; a contact is made only when an event needs it (an email change may send the event to
  its linked contact instead), and inserted at the flush.
- A concurrent writer creating the same contact or tag link makes the flush raise IntegrityError;
  the batch's transaction is then replayed (batch.py), and the replay sees the other's rows.
- "Created" is reported once per contact: by the first event of the batch that meets it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import selectinload

from webapp.crm.models import Contact, ContactField, ContactFieldStamp, ContactTag
from webapp.crm.service import ValidationError, check_field_value, get_or_create_tag, set_custom_value
from webapp.extensions import db
from webapp.stripe_sync.apply import identity
from webapp.stripe_sync.apply.identity import CustomerKey
from webapp.stripe_sync.apply.stamps import Stamp, is_newer
from webapp.stripe_sync.apply.triggers import insert_firings
from webapp.stripe_sync.connect.fields import extract_value, split_name
from webapp.stripe_sync.models import StripeResource
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

NAME_KEY = "name"
NAME_TARGETS = ("first_name", "last_name")
COLUMN_LIMITS = {"first_name": 200, "last_name": 200, "phone": 64}
Mapping = list[tuple[str, str]]  # [(stripe field, CRM field key)]


def plan_field_writes(mapping: Iterable[tuple[str, str]], customer) -> dict[str, str]:
    """{CRM field key: value} that a mapping [(stripe field, CRM field key)] writes for a customer."""
    writes: dict[str, str] = {}
    for stripe_field, field_key in mapping:
        if field_key == "email":
            continue
        if stripe_field == NAME_KEY and field_key in NAME_TARGETS:
            full = extract_value(customer, NAME_KEY)
            if full is None:
                continue
            first, last = split_name(full)
            writes["first_name"], writes["last_name"] = first, last
            continue
        value = extract_value(customer, stripe_field)
        if value is not None:
            writes[field_key] = value
    return writes


@dataclass
class FieldReport:
    """What happened to the planned writes, for the sync log reason."""

    written: list[str] = field(default_factory=list)
    kept_newer: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


class ContactCache:
    """A batch's contacts, stamps, tag links and custom fields, plus the rows it will insert."""

    def __init__(self, resources: dict[int | None, StripeResource | None]):
        self.resources = resources  # the batch's resources by id, held for the whole batch
        self.mappings: dict[int | None, Mapping] = {
            rid: [(m.stripe_field, m.field.key) for m in res.mappings] if res is not None else []
            for rid, res in resources.items()}
        self.contacts: dict[str, Contact] = {}  # by lower-cased email
        self.by_id: dict[int, Contact] = {}
        self.links = identity.Links({}, {})  # the batch's Stripe customer links (apply/identity.py)
        self.reserved: dict[str, int] = {}  # ids reserved for contacts the batch may create, by email
        self.spelled: dict[str, str] = {}  # lower-cased email → as Stripe spelled it
        self.stamps: dict[tuple[int, str], ContactFieldStamp] = {}
        self.new_stamps: dict[tuple[int, str], Stamp] = {}
        self.tags_of: dict[int, set[int]] = {}  # contact id → tag ids it carries
        self.new_links: list[dict] = []
        self.new_firings: list[dict] = []  # staged by triggers.fire_trigger, inserted at the flush
        self.tag_ids: dict[str, int] = {}
        self.fields: dict[str, ContactField] = {}
        self.rows: dict[tuple, object] = {}  # commerce rows read or added by this batch (commerce._get_or_insert)
        self.after_flush: list[Callable[[], None]] = []  # inserts that need the ids the flush gives (commerce)

    @classmethod
    def load(cls, people: Iterable[tuple[str, CustomerKey | None]], resources: dict[int | None, StripeResource | None],
             tag_names: Iterable[str]) -> ContactCache:
        """Load and lock the batch's contacts (by email and by their customers' links), their stamps, tags
        and fields; reserve ids for the contacts the batch may create."""
        cache = cls(resources)
        keys = list(dict.fromkeys(key for pairs in cache.mappings.values() for _stripe, key in pairs))
        custom_keys = [key for key in keys if key not in COLUMN_LIMITS and key != "email"]
        wanted: dict[str, str] = {}
        customers: set[CustomerKey] = set()
        for email, customer in people:
            wanted.setdefault(email.strip().lower(), email)
            if customer is not None:
                customers.add(customer)
        stored_links = identity.load_links(customers) if customers else {}
        if wanted or stored_links:
            query = identity.contacts_query(sorted(wanted), sorted(set(stored_links.values())))
            if custom_keys:
                query = query.options(selectinload(Contact.values))
            for contact in db.session.scalars(query):
                cache.contacts[contact.email_lower] = contact
                cache.by_id[contact.id] = contact
        existing_ids = sorted(cache.by_id)
        cache.links = identity.Links(stored_links, identity.load_shared(existing_ids) if stored_links else {})
        if existing_ids:
            for contact_id, tag_id in db.session.execute(
                    select(ContactTag.contact_id, ContactTag.tag_id).where(ContactTag.contact_id.in_(existing_ids))):
                cache.tags_of.setdefault(contact_id, set()).add(tag_id)
            for row in db.session.scalars(select(ContactFieldStamp)
                                          .where(ContactFieldStamp.contact_id.in_(existing_ids))):
                cache.stamps[(row.contact_id, row.field_key)] = row
        for name in tag_names:
            cache.tag_ids[name] = get_or_create_tag(name).id
        if custom_keys:
            cache.fields = {f.key: f for f in db.session.scalars(
                select(ContactField).where(ContactField.key.in_(custom_keys)))}
        # Ids for the contacts the batch may create; one whose event goes to a linked contact instead
        # leaves its id unused (a gap, never a clash).
        missing = [key for key in wanted if key not in cache.contacts]
        cache.reserved = dict(zip(missing, _reserve_contact_ids(len(missing))))
        cache.spelled = wanted
        return cache

    def mapping_for(self, resource_id: int | None) -> Mapping:
        """The mapping of the event's resource, as it is now (a change affects only later events)."""
        return self.mappings.get(resource_id, [])

    def may_fire(self, event) -> bool:
        """Historical records fire automations only when their resource was connected asking for it."""
        if not event.historical:
            return True
        resource = self.resources.get(event.resource_id)
        return resource is not None and resource.trigger_historical

    def contact_for(self, email: str, customer: CustomerKey | None = None, stamp: Stamp | None = None,
                    email_from_customer: bool = False) -> tuple[Contact, bool, str | None]:
        """The event's contact (by its customer's link, else by email), whether this event created it,
        and a note when the customer's email changed or moved it (apply/identity.py)."""
        key = email.strip().lower()
        linked = self.links.linked(customer)
        note = None
        if linked is not None and linked in self.by_id:
            contact = self.by_id[linked]
            if contact.email_lower == key or not email_from_customer:
                return contact, False, None
            if not self._stamp_permits(contact.id, identity.EMAIL_KEY, stamp):
                return contact, False, f"kept newer email {contact.email}"
            other = self.contacts.get(key)
            if other is None and not self.links.shared(contact.id, customer):
                old = contact.email
                self.contacts.pop(contact.email_lower, None)
                contact.email = self.spelled.get(key, email)
                contact.refresh_keys()
                self.contacts[key] = contact
                self.stamp_allows(contact.id, identity.EMAIL_KEY, stamp)
                self.links.record_change(contact, old, customer, stamp)
                log.info("Contact %s: email changed in Stripe (customer %s)", contact.id, customer[1])
                return contact, False, f"email changed from {old} to {contact.email}"
            if other is not None:
                note = (f"Stripe customer {customer[1]} now has email {email}, which belongs to another "
                        "contact: linked to that contact, not merged")
            else:
                note = (f"Stripe customer {customer[1]} now has email {email}; its contact is shared with "
                        "other Stripe customers, so it now has a contact of its own")
        contact, created = self._by_email(key, email)
        if customer is not None:
            self.links.link(customer, contact.id)
            if stamp is not None and email_from_customer:  # a payment's billing email says nothing newer
                self.stamp_allows(contact.id, identity.EMAIL_KEY, stamp)
        return contact, created, note

    def _by_email(self, key: str, email: str) -> tuple[Contact, bool]:
        """The contact with this email, created (with its reserved id) when there is none."""
        contact = self.contacts.get(key)
        if contact is not None:
            return contact, False
        contact_id = self.reserved.pop(key, None)
        if contact_id is None:  # an email the batch was not loaded with: after every id it knows of
            contact_id = max([_reserve_contact_ids(1)[0], *[i + 1 for i in self.by_id], *self.reserved.values()])
        contact = Contact(id=contact_id, email=self.spelled.get(key, email), first_name="", last_name="", phone="")
        contact.refresh_keys()
        db.session.add(contact)  # inserted at the flush (or a query's autoflush)
        self.contacts[key] = contact
        self.by_id[contact_id] = contact
        return contact, True

    def _stamp_permits(self, contact_id: int, field_key: str, stamp: Stamp | None) -> bool:
        """Whether the event may write the field, without moving its stamp."""
        if stamp is None:
            return True
        pending = self.new_stamps.get((contact_id, field_key))
        if pending is not None:
            return is_newer(stamp, pending)
        row = self.stamps.get((contact_id, field_key))
        return row is None or is_newer(stamp, (row.event_created, row.event_row_id))

    def stamp_allows(self, contact_id: int, field_key: str, stamp: Stamp) -> bool:
        """Check and move a field's stamp in one step; False when a newer event wrote the field."""
        key = (contact_id, field_key)
        pending = self.new_stamps.get(key)
        if pending is not None:
            if not is_newer(stamp, pending):
                return False
            self.new_stamps[key] = stamp
            return True
        row = self.stamps.get(key)
        if row is None:
            self.new_stamps[key] = stamp
            return True
        if not is_newer(stamp, (row.event_created, row.event_row_id)):
            return False
        row.event_created, row.event_row_id = stamp
        return True

    def add_tags(self, contact: Contact, names: Iterable[str]) -> None:
        """Each tag at most once per contact."""
        links = self.tags_of.setdefault(contact.id, set())
        for name in names:
            tag_id = self.tag_ids.get(name)
            if tag_id is None:
                tag_id = self.tag_ids[name] = get_or_create_tag(name).id
            if tag_id not in links:
                links.add(tag_id)
                self.new_links.append({"contact_id": contact.id, "tag_id": tag_id, "created_at": utcnow()})

    def flush(self) -> None:
        """Insert the batch's contacts and new rows, then what points at them: new stamps, tag links,
        staged rows (a recurring payment's history) and firings."""
        db.session.flush()
        self.links.flush()
        for step in self.after_flush:
            step()
        self.after_flush = []
        if self.new_stamps:
            db.session.execute(insert(ContactFieldStamp.__table__), [
                {"contact_id": cid, "field_key": key, "event_created": created, "event_row_id": row_id}
                for (cid, key), (created, row_id) in self.new_stamps.items()])
            self.new_stamps.clear()
        if self.new_links:
            db.session.execute(insert(ContactTag.__table__), self.new_links)
            self.new_links = []
        if self.new_firings:
            insert_firings(self.new_firings)
            self.new_firings = []


def _reserve_contact_ids(n: int) -> list[int]:
    """Ids for n new contacts, taken inside the batch's (write-locked) transaction."""
    if n <= 0:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        return list(db.session.scalars(text(
            "SELECT nextval(pg_get_serial_sequence('contacts', 'id')) FROM generate_series(1, :n)"), {"n": n}))
    start = (db.session.scalar(select(func.max(Contact.id))) or 0) + 1
    return list(range(start, start + n))


def apply_field_writes(contact: Contact, writes: dict[str, str], stamp: Stamp, cache: ContactCache) -> FieldReport:
    """Write the planned values that are not older than what the contact holds."""
    report = FieldReport()
    names_changed = False
    for key, value in writes.items():
        if key in COLUMN_LIMITS:
            value = value[:COLUMN_LIMITS[key]]
        else:
            crm_field = cache.fields.get(key)
            if crm_field is None:
                log.warning("Mapped CRM field %r no longer exists; value left out", key)
                report.rejected.append(key)
                continue
            try:
                value = check_field_value(crm_field, value)
            except ValidationError:
                report.rejected.append(crm_field.label)
                continue
        if not cache.stamp_allows(contact.id, key, stamp):
            report.kept_newer.append(key)
            continue
        if key in COLUMN_LIMITS:
            setattr(contact, key, value)
            names_changed = names_changed or key in NAME_TARGETS
        else:
            set_custom_value(contact, cache.fields[key], value)
        report.written.append(key)
    if names_changed:
        contact.refresh_keys()
    return report
