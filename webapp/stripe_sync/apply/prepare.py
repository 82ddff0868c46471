"""The read half of a batch, before its transaction: each event's object and its customer.

A batch (a drain's webhooks, one retried event, a page of imported records) is prepared in two steps,
so a drain can write the events that are ready while others still wait for Stripe:
1. `Resolver.start`: read the mappings of the batch's resources and the remembered customers
   (customer_store) the events need, then roll back, so nothing is open while Stripe is asked.
   Every customer an event needs (customer.object_serves is False) and that is not remembered
   recently enough is retrieved, each id once, in parallel within the account's request budget
   (customer_fetch). `start` returns at once.
2. `Preparation.resolve` (the ready entries) or `finish` (all, after waiting): resolve each event's
   customer (customer.resolve_customer_data) from the newest of: the remembered record, what the
   batch's own customer events or expanded objects say, and the retrieve. An event whose needed
   customer could not be retrieved carries the error into the transaction and fails there alone. An
   event whose own details serve the mapping always uses them alone, even when the customer happens
   to be remembered, so what a contact ends up with never depends on timing. An entry is ready as
   soon as its own customer is answered.
What was learned (customer events, expanded customers, retrieves) goes to the transaction that
writes the entries, which remembers it (customer_store.remember).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass

from sqlalchemy import select

from webapp.crm.service import ValidationError, normalise_email
from webapp.extensions import db
from webapp.stripe_sync.apply import customer_store
from webapp.stripe_sync.apply.customer import (
    NO_EMAIL_REASON, CustomerData, linked_customer_id, object_serves, resolve_customer_data,
)
from webapp.stripe_sync.apply.customer_fetch import Fetcher
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.events import effect_for_event
from webapp.stripe_sync.models import FieldMapping, StripeAccount
from webapp.tunables import setting

log = logging.getLogger(__name__)

CUSTOMER_DELETED = "customer.deleted"


@dataclass
class Prepared:
    """Everything read before the write transaction: the event's object and its customer."""

    event_type: str
    obj: dict
    customer: CustomerData | None
    email: str | None
    skip_reason: str | None = None


def prepare(event_type: str, obj: dict, fetch) -> Prepared:
    """One event's customer (`fetch(id)` gives a linked Customer or None) and the email it is matched by."""
    if effect_for_event(event_type) is None:
        return Prepared(event_type, obj, None, None, f"{event_type} is not an event this integration handles")
    customer = resolve_customer_data(event_type, obj, fetch)
    if not customer.has_email:
        return Prepared(event_type, obj, customer, None, NO_EMAIL_REASON)
    try:
        email = normalise_email(customer.email)
    except ValidationError:
        return Prepared(event_type, obj, customer, None, "invalid email")
    return Prepared(event_type, obj, customer, email)


@dataclass
class Entry:
    """One event to prepare; `described_at` is the time a customer object inside it describes
    (a webhook event's `created`; for an imported record, when the page was read)."""

    account_id: int
    resource_id: int | None
    event_type: str
    obj: dict
    described_at: int


def _learned_from(entry: Entry) -> list[Learned]:
    """The customers an event carries whole: a customer event's object, an expanded `customer`."""
    obj = entry.obj
    found = []
    if obj.get("object") == "customer" and isinstance(obj.get("id"), str):
        gone = bool(obj.get("deleted")) or entry.event_type == CUSTOMER_DELETED
        found.append(Learned(entry.account_id, obj["id"], None if gone else obj, entry.described_at))
    ref = obj.get("customer")
    if isinstance(ref, Mapping) and isinstance(ref.get("id"), str):
        found.append(Learned(entry.account_id, ref["id"], None if ref.get("deleted") else dict(ref),
                             entry.described_at))
    return found


class Preparation:
    """A batch whose customers are being retrieved. Entries are resolved when ready (their customer
    known, or not needed), so a drain can write the ready ones while the rest wait for Stripe."""

    def __init__(self, entries: list[Entry], needs: list[str | None], known: dict,
                 learned: list[list[Learned]], futures: dict[tuple[int, str], tuple[Fetcher, Future]]):
        self.entries, self.needs, self.known, self.learned, self.futures = entries, needs, known, learned, futures
        self.errors: dict[tuple[int, str], BaseException] = {}
        self.collected: set[tuple[int, str]] = set()

    def is_ready(self, index: int) -> bool:
        """True when the entry's needed customer has been answered (or it needs none)."""
        future = self.futures.get((self.entries[index].account_id, self.needs[index]))
        return future is None or future[1].done()

    def waiting(self) -> list[Future]:
        """The retrieves not answered yet."""
        return [future for _, future in self.futures.values() if not future.done()]

    def finish(self) -> tuple[list[Prepared | BaseException], list[Learned]]:
        """Wait for every retrieve, then resolve every entry."""
        wait(self.waiting())
        return self.resolve(range(len(self.entries)))

    def resolve(self, indices) -> tuple[list[Prepared | BaseException], list[Learned]]:
        """Each ready entry's Prepared (or error, returned not raised), and what was learned since the
        last call (to be remembered by the transaction that writes these entries)."""
        learned: list[Learned] = []
        for key, (fetcher, future) in self.futures.items():
            if key in self.collected or not future.done():
                continue
            self.collected.add(key)
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 - the events needing this customer fail alone
                self.errors[key] = exc
                fetcher.futures.pop(key[1], None)  # a later batch asks again
                continue
            learned.append(record)
            if key not in self.known or record.described_at > self.known[key].described_at:
                self.known[key] = record
        results: list[Prepared | BaseException] = []
        for index in indices:
            learned.extend(self.learned[index])
            results.append(self._prepare(index))
        return results, learned

    def _prepare(self, index: int) -> Prepared | BaseException:
        """One entry, with the best record of its customer; the retrieve's error if it needed it."""
        entry, needed = self.entries[index], self.needs[index]

        def fetch(customer_id: str) -> Mapping | None:
            """The best record of the customer, or the retrieve's error."""
            key = (entry.account_id, customer_id)
            if key in self.errors:
                raise self.errors[key]
            record = self.known.get(key)
            return record.data if record is not None else None
        try:
            return prepare(entry.event_type, entry.obj, fetch if needed else None)
        except Exception as exc:  # noqa: BLE001 - this event fails alone and is retried alone
            return exc


class Resolver:
    """One job's customer resolution: its fetchers (one per account) remember what they asked for."""

    def __init__(self):
        self.fetchers: dict[int, Fetcher | None] = {}

    def start(self, entries: list[Entry]) -> Preparation:
        """Read what is known, roll back, and start retrieving the rest; returns at once."""
        fields = _mapped_fields({e.resource_id for e in entries} - {None})
        fresh = float(setting("STRIPE_CUSTOMER_FRESH_SECONDS"))
        learned: list[list[Learned]] = []
        needs: list[str | None] = []
        named: dict[int, set[str]] = defaultdict(set)
        for entry in entries:
            handled = effect_for_event(entry.event_type) is not None
            learned.append(_learned_from(entry) if handled else [])
            customer_id = linked_customer_id(entry.obj) if handled else None
            if customer_id and object_serves(entry.event_type, entry.obj, fields.get(entry.resource_id, ())):
                customer_id = None  # the event's own details, always: the result never depends on timing
            if customer_id:
                named[entry.account_id].add(customer_id)
            needs.append(customer_id)
        known: dict[tuple[int, str], Learned] = {}
        for account_id, ids in named.items():
            known.update(((account_id, cid), rec) for cid, rec in customer_store.load(account_id, ids, fresh).items())
        since = customer_store.fresh_since(fresh)
        for key, record in customer_store.newest(r for rs in learned for r in rs).items():
            if record.described_at >= since and (key not in known or record.described_at > known[key].described_at):
                known[key] = record
        wanted = {(e.account_id, cid) for e, cid in zip(entries, needs) if cid} - known.keys()
        for account_id in {a for a, _ in wanted} - self.fetchers.keys():
            self.fetchers[account_id] = Fetcher.for_account(db.session.get(StripeAccount, account_id))
        db.session.rollback()  # no transaction (nor SQLite snapshot) open while Stripe is asked
        futures = {}
        for account_id, customer_id in sorted(wanted):
            fetcher = self.fetchers.get(account_id)
            if fetcher is not None:
                futures[(account_id, customer_id)] = (fetcher, fetcher.submit(customer_id))
        return Preparation(entries, needs, known, learned, futures)


def _mapped_fields(resource_ids: set[int]) -> dict[int, list[str]]:
    """The Stripe fields each resource's mapping reads, as the mapping is now."""
    fields: dict[int, list[str]] = defaultdict(list)
    if resource_ids:
        for resource_id, stripe_field in db.session.execute(
                select(FieldMapping.resource_id, FieldMapping.stripe_field)
                .where(FieldMapping.resource_id.in_(sorted(resource_ids)))):
            fields[resource_id].append(stripe_field)
    return fields
