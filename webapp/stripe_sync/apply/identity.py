"""Which contact an event is about: the contact linked to its Stripe customer first, then its email.

A contact matched by email alone becomes a second contact when the customer changes email in
Stripe, the most common complaint about CRM–Stripe integrations. So every Stripe customer is linked
to one contact per account (ContactStripeCustomer), and the link, not the email, decides. Rules:
- The first event naming a customer links it to the contact its email finds (or creates).
- A linked customer's event goes to the linked contact. When its email differs and comes from the
  Customer itself (not a payment's billing email, apply/customer.py `email_from_customer`), the
  contact's email changes, the old one is kept in its history (ContactEmailChange), and the
  contact's "email" stamp moves: an older event (a late `customer.updated`) never moves it back.
- If the new email already belongs to another contact, nothing is merged: the customer is linked
  to that contact and the log says so. The same happens when the linked contact is shared by
  several Stripe customers (one person with two customers, or two accounts): changing its email
  would take it from the others, so the customer moves to a contact of its own.
- New links and moved links are written at the batch's flush; a concurrent batch linking the same
  customer makes the insert fail, and the batch is replayed (batch.py) and sees the other's link.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timezone

from sqlalchemy import and_, insert, or_, select, update

from webapp.crm.models import Contact, ContactEmailChange, ContactStripeCustomer
from webapp.extensions import db
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

CustomerKey = tuple[int, str]  # (account id, Stripe customer id)
EMAIL_KEY = "email"


def load_links(keys: set[CustomerKey]) -> dict[CustomerKey, int]:
    """The contacts the batch's customers are linked to."""
    by_account: dict[int, list[str]] = defaultdict(list)
    for account_id, customer_id in sorted(keys):
        by_account[account_id].append(customer_id)
    links: dict[CustomerKey, int] = {}
    table = ContactStripeCustomer.__table__
    for account_id, ids in by_account.items():
        for start in range(0, len(ids), 500):
            for row in db.session.execute(select(table.c.customer_id, table.c.contact_id).where(
                    table.c.account_id == account_id, table.c.customer_id.in_(ids[start:start + 500]))):
                links[(account_id, row.customer_id)] = row.contact_id
    return links


def load_shared(contact_ids: list[int]) -> dict[int, set[CustomerKey]]:
    """Every customer linked to each of these contacts, so a shared contact is recognised."""
    found: dict[int, set[CustomerKey]] = defaultdict(set)
    table = ContactStripeCustomer.__table__
    for start in range(0, len(contact_ids), 500):
        for row in db.session.execute(select(table.c.account_id, table.c.customer_id, table.c.contact_id)
                                      .where(table.c.contact_id.in_(contact_ids[start:start + 500]))):
            found[row.contact_id].add((row.account_id, row.customer_id))
    return found


def contacts_query(emails_lower: list[str], contact_ids: list[int]):
    """The batch's contacts by email or by link, row-locked in id order."""
    wanted = []
    if emails_lower:
        wanted.append(Contact.email_lower.in_(emails_lower))
    if contact_ids:
        wanted.append(Contact.id.in_(contact_ids))
    return (select(Contact).where(or_(*wanted)).order_by(Contact.id).with_for_update()
            .execution_options(populate_existing=True))


class Links:
    """The batch's customer links: those stored, and those it adds or moves (written at the flush)."""

    def __init__(self, stored: dict[CustomerKey, int], shared: dict[int, set[CustomerKey]]):
        self.stored = dict(stored)
        self.current = dict(stored)
        self.customers_of = shared  # contact id → its linked customers
        self.changes: list[dict] = []  # email changes to record

    def linked(self, key: CustomerKey | None) -> int | None:
        """The contact this customer is linked to, if any."""
        return self.current.get(key) if key else None

    def link(self, key: CustomerKey, contact_id: int) -> None:
        """Link (or move) a customer to a contact."""
        old = self.current.get(key)
        if old is not None:
            self.customers_of.get(old, set()).discard(key)
        self.current[key] = contact_id
        self.customers_of.setdefault(contact_id, set()).add(key)

    def shared(self, contact_id: int, key: CustomerKey) -> bool:
        """True when another customer is linked to this contact too."""
        return bool(self.customers_of.get(contact_id, set()) - {key})

    def record_change(self, contact: Contact, old_email: str, key: CustomerKey, stamp: tuple[int, int]) -> None:
        """The old email goes into the contact's history, with the time Stripe changed it."""
        self.changes.append({
            "contact_id": contact.id, "old_email": old_email, "new_email": contact.email,
            "changed_at": datetime.fromtimestamp(stamp[0], timezone.utc).replace(tzinfo=None),
            "stripe_customer_id": key[1], "event_row_id": stamp[1], "recorded_at": utcnow()})

    def flush(self) -> None:
        """Insert new links, move changed ones, and record email changes."""
        table = ContactStripeCustomer.__table__
        new = [{"account_id": a, "customer_id": c, "contact_id": contact_id, "created_at": utcnow()}
               for (a, c), contact_id in sorted(self.current.items()) if (a, c) not in self.stored]
        moved = [((a, c), contact_id) for (a, c), contact_id in sorted(self.current.items())
                 if (a, c) in self.stored and self.stored[(a, c)] != contact_id]
        if new:
            db.session.execute(insert(table), new)
        for (account_id, customer_id), contact_id in moved:
            db.session.execute(update(table).where(and_(table.c.account_id == account_id,
                                                        table.c.customer_id == customer_id))
                               .values(contact_id=contact_id))
        self.stored = dict(self.current)
        if self.changes:
            db.session.execute(insert(ContactEmailChange.__table__), self.changes)
            self.changes = []
