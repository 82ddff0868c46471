"""Writing an event's customer into a contact: match by email, apply the mapping, add the tags.

Decisions:
- The resolved email is the match key. It is stored when the contact is created; an existing
  contact's email is never rewritten (a case change is not news, and a different address is a
  different contact). Mapping "Customer Email" to a custom field still fills that field.
- A mapped Customer Name that targets First Name or Last Name fills both (split_name). Mapped to
  any other field it is written whole.
- A value Stripe does not have (None) never clears a field: an invoice event without a phone
  must not erase the phone a customer event wrote.
- Each written field is stamped (ContactFieldStamp) with the event; an older event never
  overwrites a newer one's value (ordering.is_newer).
- A value a custom field cannot hold (a dropdown option that does not exist, text in a number
  field) is left out and named in the sync log reason, instead of failing the whole event.
- Historical imports write a page of records in one transaction. They pass a PageCache
  (backfill_cache.py) holding the page's prefetched contacts, stamps, tags and fields; the functions
  below then read and update it instead of querying per record. The rules are the same; only the
  number of round trips differs.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from webapp.crm.models import Contact, ContactField, ContactFieldStamp, ContactTag, Tag
from webapp.crm.service import (
    ValidationError, check_field_value, find_contact_by_email, get_or_create_tag, set_custom_value,
)
from webapp.extensions import db
from webapp.stripe_sync.connect.fields import extract_value, split_name
from webapp.stripe_sync.apply.stamps import Stamp, is_newer
from webapp.timeutil import utcnow

if TYPE_CHECKING:
    from webapp.stripe_sync.apply.contact_cache import PageCache

log = logging.getLogger(__name__)

NAME_KEY = "name"
NAME_TARGETS = ("first_name", "last_name")
COLUMN_LIMITS = {"first_name": 200, "last_name": 200, "phone": 64}


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


def get_or_create_contact(email: str) -> tuple[Contact, bool]:
    """The contact for this email (any case), created safely when two workers race for it."""
    contact = find_contact_by_email(email)
    if contact is not None:
        return contact, False
    contact = Contact(email=email, first_name="", last_name="", phone="")
    contact.refresh_keys()
    try:
        with db.session.begin_nested():
            db.session.add(contact)
    except IntegrityError:
        # Another worker created it between our look-up and insert; its row is the one.
        existing = find_contact_by_email(email)
        if existing is None:
            raise
        return existing, False
    return contact, True


def lock_contact(contact: Contact) -> Contact:
    """Row-lock the contact (PostgreSQL; SQLite locks the database) so stamps compare safely."""
    return db.session.execute(
        select(Contact).where(Contact.id == contact.id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _stamp_allows(contact_id: int, field_key: str, stamp: Stamp, cache: "PageCache | None" = None) -> bool:
    """Check and move a field's stamp in one step; False when a newer event wrote the field."""
    if cache is not None:
        return cache.stamp_allows(contact_id, field_key, stamp)
    row = db.session.get(ContactFieldStamp, (contact_id, field_key))
    if row is not None:
        if not is_newer(stamp, (row.event_created, row.event_row_id)):
            return False
        row.event_created, row.event_row_id = stamp
        return True
    try:
        with db.session.begin_nested():
            db.session.add(ContactFieldStamp(contact_id=contact_id, field_key=field_key,
                                             event_created=stamp[0], event_row_id=stamp[1]))
    except IntegrityError:
        return _stamp_allows(contact_id, field_key, stamp)
    return True


def apply_field_writes(contact: Contact, writes: dict[str, str], stamp: Stamp,
                       cache: "PageCache | None" = None) -> FieldReport:
    """Write the planned values that are not older than what the contact holds."""
    report = FieldReport()
    if not writes:
        return report
    custom_keys = [k for k in writes if k not in COLUMN_LIMITS]
    if cache is not None:
        fields = cache.fields
    else:
        fields = {f.key: f for f in db.session.scalars(select(ContactField).where(ContactField.key.in_(custom_keys)))} \
            if custom_keys else {}
    names_changed = False
    for key, value in writes.items():
        if key in COLUMN_LIMITS:
            value = value[:COLUMN_LIMITS[key]]
        else:
            crm_field = fields.get(key)
            if crm_field is None:
                log.warning("Mapped CRM field %r no longer exists; value left out", key)
                report.rejected.append(key)
                continue
            try:
                value = check_field_value(crm_field, value)
            except ValidationError:
                report.rejected.append(crm_field.label)
                continue
        if not _stamp_allows(contact.id, key, stamp, cache):
            report.kept_newer.append(key)
            continue
        if key in COLUMN_LIMITS:
            setattr(contact, key, value)
            names_changed = names_changed or key in NAME_TARGETS
        else:
            set_custom_value(contact, fields[key], value)
        report.written.append(key)
    if names_changed:
        contact.refresh_keys()
    return report


# Tag ids by lower-cased name: tags are never renamed or deleted by the sync, so a process can
# remember them (per database) and skip a look-up per event.
_TAG_IDS: dict[tuple[str, str], int] = {}


def _tag_id(name: str) -> int:
    """The tag's id, created if needed; only ids of tags already committed are remembered, since a
    tag created in this transaction disappears if it rolls back."""
    key = (str(db.engine.url), name.lower())
    tag_id = _TAG_IDS.get(key)
    if tag_id is None:
        existing = db.session.scalar(select(Tag.id).where(Tag.name_lower == name.lower()))
        if existing is not None:
            _TAG_IDS[key] = tag_id = existing
        else:
            tag_id = get_or_create_tag(name).id
    return tag_id


def add_tags(contact: Contact, names: Iterable[str], cache: "PageCache | None" = None) -> None:
    """Each tag at most once, even when another worker adds it at the same moment."""
    if cache is not None:
        cache.add_tags(contact, names)
        return
    wanted = {_tag_id(name) for name in names}
    have = set(db.session.scalars(select(ContactTag.tag_id).where(ContactTag.contact_id == contact.id,
                                                                 ContactTag.tag_id.in_(wanted))))
    for tag_id in sorted(wanted - have):
        try:
            with db.session.begin_nested():
                db.session.execute(insert(ContactTag.__table__).values(contact_id=contact.id, tag_id=tag_id,
                                                                       created_at=utcnow()))
        except IntegrityError:
            # Another worker tagged the contact at the same moment, or the remembered tag is gone.
            if db.session.get(Tag, tag_id) is None:
                _TAG_IDS.clear()
                raise
