"""Resolve who an event is about, so every event type feeds the mapping the same customer shape.

Order: the linked Stripe Customer first, then the object's own data.
- customer.* events: the object is the customer.
- other objects: `obj["customer"]` is an id, an expanded Customer, or null. With only an id the
  caller's `fetch_customer(id)` is called once; the caller owns the Stripe API call and its
  retries, so an exception from it propagates (a transient outage must fail the job for a retry,
  not quietly sync poorer data). A fetch returning None or `{"deleted": true}` counts as no customer.
- the object's own data fills what the customer lacks: charges `billing_details` then
  `receipt_email`; invoices `customer_email` / `customer_name` / `customer_phone` /
  `customer_address`; checkout sessions `customer_details` then `customer_email`. Subscriptions
  carry none of their own.

Merge decisions: the linked customer's non-empty values win field by field; the address is taken
as a whole (the customer's if any part is set, otherwise the object's) so two addresses are never
spliced together. `description` and `metadata` come from the customer only: an object's own
description and metadata describe the payment, not the person. `id` is the Stripe customer id
whenever the object names one, even if the fetch found nothing. Values are kept verbatim (HTML in a
name stays text; escaping is the template's job); strings are stripped and empty ones become None,
and NUL characters are dropped (stripe_sync/nul.py).

Fetching a linked Customer (`customer_fetcher`), layers of retry, innermost first:
1. the SDK (`max_network_retries`) retries connection errors, 5xx, 409 and any 429 that carries
   `Stripe-Should-Retry: true` (lock timeouts), with jittered exponential backoff;
2. here, a plain 429 rate limit (which the SDK leaves to the caller) is retried a few times with
   jittered exponential backoff (STRIPE_RATE_LIMIT_RETRIES, STRIPE_RATE_LIMIT_BACKOFF);
3. anything still failing propagates and the event fails, to be retried (EVENT_RETRY_INTERVALS).
A customer Stripe no longer has (404 resource_missing) is "no customer", not an error: the event's
own details are used instead.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe
from flask import current_app

from webapp.stripe_sync.client import client_for_account
from webapp.stripe_sync.events import resource_for_event
from webapp.stripe_sync.nul import without_nul
from webapp.tunables import setting

logger = logging.getLogger(__name__)

ADDRESS_PARTS: tuple[str, ...] = ("line1", "line2", "city", "state", "postal_code", "country")
NO_EMAIL_REASON = "no email"

SOURCE_CUSTOMER = "customer"
SOURCE_NONE = "none"

FetchCustomer = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class CustomerData:
    """The normalized customer an event is about; the one input the field mapping reads."""

    id: str | None = None
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    description: str | None = None
    address: Mapping[str, str | None] = field(
        default_factory=lambda: dict.fromkeys(ADDRESS_PARTS), hash=False
    )
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Where the values came from, e.g. "customer", "customer+billing_details", "invoice", "none".
    source: str = SOURCE_NONE

    @property
    def has_email(self) -> bool:
        """Contacts are matched by email, so without one the event is skipped."""
        return self.email is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for storing alongside a sync log row or passing to a job."""
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "phone": self.phone,
            "description": self.description,
            "address": dict(self.address),
            "metadata": dict(self.metadata),
            "source": self.source,
        }


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    """stripe-python 16 objects are not dicts, so convert them once at the boundary."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return None


def _clean(value: Any) -> str | None:
    """Stripe sends "" and None interchangeably for "not set"; the CRM wants one spelling (and no NUL,
    which PostgreSQL text cannot hold)."""
    if value is None:
        return None
    text = without_nul(str(value)).strip()
    return text or None


def _address(raw: Any) -> dict[str, str | None]:
    """All six parts always present, so templates and mapping never test for missing keys."""
    raw = _as_mapping(raw) or {}
    return {part: _clean(raw.get(part)) for part in ADDRESS_PARTS}


def _has_address(address: Mapping[str, str | None]) -> bool:
    """An address of only nulls (a guest's billing_details) is no address."""
    return any(address.values())


def _metadata(raw: Any) -> dict[str, str]:
    """Metadata values are strings in Stripe; coerce defensively and drop nothing but NUL characters."""
    raw = _as_mapping(raw) or {}
    return {without_nul(str(k)): "" if v is None else without_nul(str(v)) for k, v in raw.items()}


def _own_data(kind: str | None, obj: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The object's own contact details, with a label for where they came from."""
    if kind == "charge":
        billing = _as_mapping(obj.get("billing_details")) or {}
        return "billing_details", {
            "email": _clean(billing.get("email")) or _clean(obj.get("receipt_email")),
            "name": _clean(billing.get("name")),
            "phone": _clean(billing.get("phone")),
            "address": _address(billing.get("address")),
        }
    if kind == "invoice":
        return "invoice", {
            "email": _clean(obj.get("customer_email")),
            "name": _clean(obj.get("customer_name")),
            "phone": _clean(obj.get("customer_phone")),
            "address": _address(obj.get("customer_address")),
        }
    if kind == "checkout_session":
        details = _as_mapping(obj.get("customer_details")) or {}
        return "customer_details", {
            "email": _clean(details.get("email")) or _clean(obj.get("customer_email")),
            "name": _clean(details.get("name")),
            "phone": _clean(details.get("phone")),
            "address": _address(details.get("address")),
        }
    return "object", {"email": None, "name": None, "phone": None, "address": _address(None)}


_KIND_BY_OBJECT = {
    "charge": "charge",
    "customer": "customer",
    "subscription": "subscription",
    "invoice": "invoice",
    "checkout.session": "checkout_session",
}


def _object_kind(event_type: str, obj: Mapping[str, Any]) -> str | None:
    """The object's own `object` field is authoritative; the event table covers objects without it."""
    by_object = _KIND_BY_OBJECT.get(str(obj.get("object") or ""))
    if by_object:
        return by_object
    res = resource_for_event(event_type)
    return res.kind if res else None


def _linked_customer(
    obj: Mapping[str, Any], fetch_customer: FetchCustomer | None
) -> tuple[str | None, Mapping[str, Any] | None]:
    """The customer id the object names and, when available, that customer's full record."""
    ref = obj.get("customer")
    if ref is None:
        return None, None
    if isinstance(ref, str):
        customer_id = _clean(ref)
        if customer_id is None:
            return None, None
        if fetch_customer is None:
            logger.debug("No fetch_customer given; using the object's own data for %s", customer_id)
            return customer_id, None
        fetched = _as_mapping(fetch_customer(customer_id))
        if fetched is None or fetched.get("deleted"):
            logger.info("Stripe customer %s not available; using the object's own data", customer_id)
            return customer_id, None
        return customer_id, fetched
    expanded = _as_mapping(ref)
    if expanded is None:
        return None, None
    customer_id = _clean(expanded.get("id"))
    if expanded.get("deleted"):
        return customer_id, None
    return customer_id, expanded


def resolve_customer_data(
    event_type: str,
    obj: Mapping[str, Any] | Any,
    fetch_customer: FetchCustomer | None = None,
) -> CustomerData:
    """One event's customer, merged from the linked Customer and the object's own details."""
    obj = _as_mapping(obj) or {}
    kind = _object_kind(event_type, obj)

    if kind == "customer":
        customer_id: str | None = _clean(obj.get("id"))
        customer: Mapping[str, Any] | None = None if obj.get("deleted") else obj
    else:
        customer_id, customer = _linked_customer(obj, fetch_customer)

    own_label, own = _own_data(kind, obj)
    from_customer: dict[str, Any] = {}
    if customer is not None:
        from_customer = {
            "email": _clean(customer.get("email")),
            "name": _clean(customer.get("name")),
            "phone": _clean(customer.get("phone")),
            "address": _address(customer.get("address")),
        }

    used: list[str] = []

    def pick(key: str) -> Any:
        """Customer value first, own value second, remembering which source contributed."""
        value = from_customer.get(key)
        if value:
            if SOURCE_CUSTOMER not in used:
                used.append(SOURCE_CUSTOMER)
            return value
        value = own.get(key)
        if value and own_label not in used:
            used.append(own_label)
        return value

    email = pick("email")
    name = pick("name")
    phone = pick("phone")
    customer_address = from_customer.get("address")
    if customer_address and _has_address(customer_address):
        address = customer_address
        if SOURCE_CUSTOMER not in used:
            used.append(SOURCE_CUSTOMER)
    else:
        address = own["address"]
        if _has_address(address) and own_label not in used:
            used.append(own_label)

    description = metadata = None
    if customer is not None:
        description = _clean(customer.get("description"))
        metadata = _metadata(customer.get("metadata"))
        if (description or metadata) and SOURCE_CUSTOMER not in used:
            used.append(SOURCE_CUSTOMER)
    if customer is not None and SOURCE_CUSTOMER not in used:
        # The customer was found but empty; still say so, it explains an empty contact.
        used.insert(0, SOURCE_CUSTOMER)
    used.sort(key=lambda label: label != SOURCE_CUSTOMER)

    data = CustomerData(
        id=customer_id,
        email=email,
        name=name,
        phone=phone,
        description=description,
        address=address,
        metadata=metadata or {},
        source="+".join(used) or SOURCE_NONE,
    )
    if data.email is None:
        logger.debug("No email resolved for %s (customer %s)", event_type, customer_id)
    return data


# --- fetching the linked Customer -------------------------------------------------------------

def _client(account) -> stripe.StripeClient:
    """One SDK client per account and key per process, so keep-alive connections are reused."""
    cache = current_app.extensions.setdefault("stripe_clients", {})
    key = (account.id, account.secret_key_enc)
    client = cache.get(key)
    if client is None:
        client = client_for_account(account)
        cache[key] = client
    return client


def customer_fetcher(account, sleep: Callable[[float], None] = time.sleep) -> Callable[[str], dict | None] | None:
    """A `fetch_customer(id)` for resolve_customer_data; None when the account's key was erased."""
    if not account.secret_key_enc:
        return None
    client = _client(account)
    retries = int(setting("STRIPE_RATE_LIMIT_RETRIES"))
    base = float(setting("STRIPE_RATE_LIMIT_BACKOFF"))

    def fetch(customer_id: str) -> dict | None:
        """The Customer as a plain dict, or None when Stripe no longer has it."""
        for attempt in range(retries + 1):
            try:
                return client.v1.customers.retrieve(customer_id).to_dict()
            except stripe.RateLimitError:
                if attempt >= retries:
                    raise
                delay = base * (2 ** attempt) * random.uniform(0.5, 1.0)
                logger.info("Stripe rate limited fetching customer %s; retry %d in %.2f s",
                         customer_id, attempt + 1, delay)
                sleep(delay)
            except stripe.InvalidRequestError as exc:
                if getattr(exc, "code", None) == "resource_missing":
                    logger.info("Stripe customer %s no longer exists; using the event's own details", customer_id)
                    return None
                raise
        return None  # pragma: no cover - the loop returns or raises

    return fetch
