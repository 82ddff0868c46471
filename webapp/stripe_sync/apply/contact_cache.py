"""The rows one page of records touches (a page of historical records, or a drain's batch of webhook
events, batch.py), loaded in a few queries instead of a few per record.

`processing.apply_to_crm(..., cache)` runs the same rules as for a single webhook, but `contact_sync`
asks this cache for contacts, field stamps, tags and custom fields, and new stamps, tag links and
trigger firings are written in bulk inserts when the page is flushed. Decisions:
- The page's contacts are selected `FOR UPDATE` in id order (PostgreSQL; SQLite locks the whole
  database for the writer), so a webhook for the same contact waits for the page, never interleaves.
- Missing contacts get their ids reserved up front (PostgreSQL: the sequence; SQLite: max(id), safe
  because the page's transaction already holds SQLite's write lock), so stamps and tag links can
  name them while the contacts themselves are inserted once, with their final names, in one
  executemany at the end instead of an INSERT now and an UPDATE later.
- A webhook worker creating the same contact at the same moment makes the page's flush raise
  IntegrityError; the importer rolls the page back and writes it again record by record, with the
  webhook path's own race handling. No savepoint per record otherwise, which keeps a page cheap.
- "Created" is reported once per contact: by the first record of the page that meets it.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import selectinload

from webapp.crm.models import Contact, ContactField, ContactFieldStamp, ContactTag
from webapp.crm.service import get_or_create_tag
from webapp.extensions import db
from webapp.stripe_sync.apply.contacts import COLUMN_LIMITS
from webapp.stripe_sync.apply.stamps import Stamp, is_newer
from webapp.timeutil import utcnow


class PageCache:
    """Prefetched contacts, stamps, tag links and fields of one page, plus the rows it will insert."""

    def __init__(self, mapping: list[tuple[str, str]]):
        self.mapping = mapping
        self.mappings: dict[int, list[tuple[str, str]]] = {}  # per resource, when a batch mixes resources
        self.contacts: dict[str, Contact] = {}  # by lower-cased email
        self.unreported: set[str] = set()  # contacts this page created that no record has reported yet
        self.stamps: dict[tuple[int, str], ContactFieldStamp] = {}
        self.new_stamps: dict[tuple[int, str], Stamp] = {}
        self.links: dict[int, set[int]] = {}  # contact id → tag ids it carries
        self.new_links: list[dict] = []
        self.new_firings: list[dict] = []  # staged by triggers.fire_trigger, inserted at the flush
        self.tag_ids: dict[str, int] = {}
        self.fields: dict[str, ContactField] = {}

    def mapping_for(self, resource_id: int | None) -> list[tuple[str, str]]:
        """The mapping of the record's resource; `mapping` is the union the page was prefetched for."""
        return self.mappings.get(resource_id, self.mapping) if self.mappings else self.mapping

    def contact_for(self, email: str) -> tuple[Contact, bool]:
        """The prefetched contact, and whether this record is the one that created it."""
        key = email.strip().lower()
        contact = self.contacts[key]
        if key in self.unreported:
            self.unreported.discard(key)
            return contact, True
        return contact, False

    def stamp_allows(self, contact_id: int, field_key: str, stamp: Stamp) -> bool:
        """contact_sync._stamp_allows against the prefetched stamps."""
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
        """contact_sync.add_tags against the prefetched links."""
        links = self.links.setdefault(contact.id, set())
        for name in names:
            tag_id = self.tag_ids.get(name)
            if tag_id is None:
                tag_id = self.tag_ids[name] = get_or_create_tag(name).id
            if tag_id not in links:
                links.add(tag_id)
                self.new_links.append({"contact_id": contact.id, "tag_id": tag_id, "created_at": utcnow()})

    def flush(self) -> None:
        """Insert the page's contacts, then what points at them: new stamps, tag links and firings."""
        db.session.flush()
        if self.new_stamps:
            db.session.execute(insert(ContactFieldStamp.__table__), [
                {"contact_id": cid, "field_key": key, "event_created": created, "event_row_id": row_id}
                for (cid, key), (created, row_id) in self.new_stamps.items()])
            self.new_stamps.clear()
        if self.new_links:
            db.session.execute(insert(ContactTag.__table__), self.new_links)
            self.new_links = []
        if self.new_firings:
            from webapp.stripe_sync.apply.triggers import insert_firings

            insert_firings(self.new_firings)
            self.new_firings = []


def _reserve_contact_ids(n: int) -> list[int]:
    """Ids for n new contacts, taken inside the page's (write-locked) transaction."""
    if n <= 0:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        return list(db.session.scalars(text(
            "SELECT nextval(pg_get_serial_sequence('contacts', 'id')) FROM generate_series(1, :n)"), {"n": n}))
    start = (db.session.scalar(select(func.max(Contact.id))) or 0) + 1
    return list(range(start, start + n))


def prefetch(emails: Iterable[str], mapping: list[tuple[str, str]], tag_names: Iterable[str]) -> PageCache:
    """Load and lock a page's contacts, their stamps, tags and fields; stage the missing contacts."""
    cache = PageCache(mapping)
    custom_keys = [key for _stripe, key in mapping if key not in COLUMN_LIMITS and key != "email"]
    wanted: dict[str, str] = {}
    for email in emails:
        wanted.setdefault(email.strip().lower(), email)
    if wanted:
        query = (select(Contact).where(Contact.email_lower.in_(sorted(wanted))).order_by(Contact.id)
                 .with_for_update().execution_options(populate_existing=True))
        if custom_keys:
            query = query.options(selectinload(Contact.values))
        for contact in db.session.scalars(query):
            cache.contacts[contact.email_lower] = contact
    existing_ids = [c.id for c in cache.contacts.values()]
    if existing_ids:
        for contact_id, tag_id in db.session.execute(
                select(ContactTag.contact_id, ContactTag.tag_id).where(ContactTag.contact_id.in_(existing_ids))):
            cache.links.setdefault(contact_id, set()).add(tag_id)
        if mapping:
            for row in db.session.scalars(select(ContactFieldStamp)
                                          .where(ContactFieldStamp.contact_id.in_(existing_ids))):
                cache.stamps[(row.contact_id, row.field_key)] = row
    for name in tag_names:
        cache.tag_ids[name] = get_or_create_tag(name).id
    if custom_keys:
        cache.fields = {f.key: f for f in db.session.scalars(
            select(ContactField).where(ContactField.key.in_(custom_keys)))}
    # Last, after every query: a pending contact would otherwise be autoflushed (inserted) early.
    missing = [key for key in wanted if key not in cache.contacts]
    for key, contact_id in zip(missing, _reserve_contact_ids(len(missing))):
        contact = Contact(id=contact_id, email=wanted[key], first_name="", last_name="", phone="")
        contact.refresh_keys()
        db.session.add(contact)  # inserted at the page's flush, with whatever the page wrote into it
        cache.contacts[key] = contact
        cache.unreported.add(key)
    return cache
