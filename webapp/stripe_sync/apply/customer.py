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

When the Customer is needed at all (`object_serves`): not when the object itself carries an email
and every mapped field (email, name, phone, address, Stripe ID) is one the object has (an invoice's
`customer_*`, a charge's `billing_details`, a session's `customer_details`). Description and
metadata are only on the Customer, and a subscription carries no details of its own. Where the
Customer comes from (remembered, or retrieved in parallel within the request budget) is
apply/prepare.py's business; retrieving is apply/customer_fetch.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webapp.stripe_sync.events import resource_for_event
from webapp.stripe_sync.nul import without_nul

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
    # The email is the Stripe Customer's own (not a payment's billing email): only it may change the
    # email of the contact linked to that customer (apply/identity.py).
    email_from_customer: bool = False

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
            "email_from_customer": self.email_from_customer,
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
            logger.debug("Stripe customer %s not available; using the object's own data", customer_id)
            return customer_id, None
        return customer_id, fetched
    expanded = _as_mapping(ref)
    if expanded is None:
        return None, None
    customer_id = _clean(expanded.get("id"))
    if expanded.get("deleted"):
        return customer_id, None
    return customer_id, expanded


OWN_DATA_KINDS = ("charge", "invoice", "checkout_session")
CUSTOMER_ONLY_FIELDS = ("description",)
CUSTOMER_ONLY_PREFIX = "metadata."


def linked_customer_id(obj: Mapping[str, Any]) -> str | None:
    """The customer id an object names without expanding it (the only case that needs a retrieve)."""
    ref = obj.get("customer")
    return _clean(ref) if isinstance(ref, str) else None


def object_serves(event_type: str, obj: Mapping[str, Any], mapped_fields: Iterable[str]) -> bool:
    """True when the object alone gives the email and every mapped field, so Stripe need not be asked."""
    kind = _object_kind(event_type, obj)
    if kind not in OWN_DATA_KINDS:
        return False
    if any(f in CUSTOMER_ONLY_FIELDS or f.startswith(CUSTOMER_ONLY_PREFIX) for f in mapped_fields):
        return False
    return _own_data(kind, obj)[1]["email"] is not None


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
        email_from_customer=bool(from_customer.get("email")),
    )
    if data.email is None:
        logger.debug("No email resolved for %s (customer %s)", event_type, customer_id)
    return data
