"""Remembered Stripe customers: what Stripe last told us about each, and the time it describes.

A payment brings several events (invoice, charge, subscription) naming one customer; remembering the
customer lets one retrieve serve all of them. Decisions:
- Sources: `customer.*` events (describing their `created` time), retrieves (the time the answer
  came) and imported records (the time the page was read). A deleted customer is remembered too
  (data None), so it is not asked for again.
- Only the fields the mapping can read are kept (apply/customer.py's shape), not the whole object.
- Never older: a record replaces the stored one only if it describes a strictly later time, in the
  same statement (`ON CONFLICT … DO UPDATE … WHERE stored.described_at < new.described_at`), so two
  workers racing cannot make it older either; exactly the contact's own out-of-order rule.
- Recent enough to use instead of a retrieve: described within STRIPE_CUSTOMER_FRESH_SECONDS.
- Written inside the batch's transaction (apply/batch.py), in (account, customer) order so two
  batches on PostgreSQL lock the rows in the same order.
- Disconnecting the account forgets its customers (connect/disconnect.py).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from webapp.extensions import db
from webapp.stripe_sync.models import StripeCustomer
from webapp.stripe_sync.nul import json_text_without_nul
from webapp.timeutil import utcnow
from webapp.upsert import dialect_insert

KEPT = ("id", "email", "name", "phone", "address", "description", "metadata")


@dataclass(frozen=True)
class Learned:
    """One thing Stripe told us about a customer; data None means Stripe no longer has it."""

    account_id: int
    customer_id: str
    data: Mapping[str, Any] | None
    described_at: int


def slim(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a mapping can read; the rest of a Customer is never used."""
    return {key: customer.get(key) for key in KEPT}


def newest(records: Iterable[Learned]) -> dict[tuple[int, str], Learned]:
    """The latest record per customer (the first of equals, as the store keeps the first)."""
    best: dict[tuple[int, str], Learned] = {}
    for rec in records:
        key = (rec.account_id, rec.customer_id)
        if key not in best or rec.described_at > best[key].described_at:
            best[key] = rec
    return best


def fresh_since(fresh_seconds: float) -> int:
    """The oldest described time still recent enough to use instead of a retrieve."""
    return int(time.time() - fresh_seconds)


def load(account_id: int, customer_ids: Iterable[str], fresh_seconds: float) -> dict[str, Learned]:
    """The account's remembered customers among these ids that are recent enough."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    since = fresh_since(fresh_seconds)
    found: dict[str, Learned] = {}
    for start in range(0, len(ids), 500):
        rows = db.session.execute(
            select(StripeCustomer.customer_id, StripeCustomer.data, StripeCustomer.described_at)
            .where(StripeCustomer.account_id == account_id, StripeCustomer.customer_id.in_(ids[start:start + 500]),
                   StripeCustomer.described_at >= since))
        for row in rows:
            found[row.customer_id] = Learned(account_id, row.customer_id,
                                             json.loads(row.data) if row.data is not None else None,
                                             row.described_at)
    return found


def remember(records: Iterable[Learned]) -> None:
    """Store each record unless a newer one is already stored (inside the caller's transaction)."""
    best = newest(records)
    if not best:
        return
    now = utcnow()
    rows = [{"account_id": rec.account_id, "customer_id": rec.customer_id,
             "data": None if rec.data is None else json_text_without_nul(json.dumps(slim(rec.data))),
             "described_at": int(rec.described_at), "stored_at": now}
            for _, rec in sorted(best.items())]
    table = StripeCustomer.__table__
    for start in range(0, len(rows), 200):
        stmt = dialect_insert(table).values(rows[start:start + 200])
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.account_id, table.c.customer_id],
            set_={"data": stmt.excluded.data, "described_at": stmt.excluded.described_at,
                  "stored_at": stmt.excluded.stored_at},
            where=table.c.described_at < stmt.excluded.described_at)
        db.session.execute(stmt)


def stored(account_id: int, customer_ids: Iterable[str]) -> dict[str, Learned]:
    """Whatever is stored for these ids, however old (what the tests check)."""
    return load(account_id, customer_ids, fresh_seconds=time.time())


def forget_account(account_id: int) -> None:
    """A disconnected account's Stripe data does not linger (its contacts stay)."""
    db.session.execute(delete(StripeCustomer).where(StripeCustomer.account_id == account_id))

