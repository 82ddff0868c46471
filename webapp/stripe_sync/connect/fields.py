"""The catalog of mappable Stripe fields: only customer data.

Keys are stable strings stored in FieldMapping rows (`email`, `address.city`, `metadata.plan`);
labels are what the mapping page shows. `value_fits` / `misfit_reason` stop a mapping that would
put, say, an email into a number field, before any event is processed with it.

Fit rules (CRM field types: text, number, date, dropdown, email, phone):
- every Stripe field fits a text field;
- email fits email; phone fits phone; address country and state also fit a dropdown;
- nothing built in fits number or date (ids, postal codes such as "02110" and phone numbers are
  text that a number field would mangle);
- `metadata.*` holds free text of unknown shape, so it fits text or dropdown only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

METADATA_PREFIX = "metadata."
CRM_FIELD_TYPES: tuple[str, ...] = ("text", "number", "date", "dropdown", "email", "phone")
NAME_SPLIT_NOTE = (
    "Customer Name is split into First Name and Last Name: the first word goes to First Name "
    "and the rest to Last Name."
)


@dataclass(frozen=True)
class StripeField:
    """A mappable Stripe customer field and the CRM field types its values can be stored in."""

    key: str
    label: str
    fits: frozenset[str]


def _fits(*types: str) -> frozenset[str]:
    """Text always fits, so each row only lists what it adds."""
    return frozenset(("text", *types))


STRIPE_FIELDS: tuple[StripeField, ...] = (
    StripeField("email", "Customer Email", _fits("email")),
    StripeField("name", "Customer Name", _fits()),
    StripeField("phone", "Customer Phone", _fits("phone")),
    StripeField("address.line1", "Address Line 1", _fits()),
    StripeField("address.line2", "Address Line 2", _fits()),
    StripeField("address.city", "City", _fits()),
    StripeField("address.state", "State", _fits("dropdown")),
    StripeField("address.postal_code", "Postal Code", _fits()),
    StripeField("address.country", "Country", _fits("dropdown")),
    StripeField("description", "Customer Description", _fits()),
    StripeField("id", "Stripe ID", _fits()),
)
_BY_KEY: dict[str, StripeField] = {f.key: f for f in STRIPE_FIELDS}
_METADATA_FITS = _fits("dropdown")


def metadata_key(key: str) -> str | None:
    """The metadata key inside `metadata.<key>`, or None when the key is not a metadata field."""
    if key.startswith(METADATA_PREFIX) and len(key) > len(METADATA_PREFIX):
        return key[len(METADATA_PREFIX):]
    return None


def is_known_key(key: str) -> bool:
    """Rejects posted mapping keys that are not in the catalog."""
    return key in _BY_KEY or metadata_key(key) is not None


def label_for(key: str) -> str:
    """The UI label of a stored key; an unknown key is shown as itself rather than hidden."""
    if key in _BY_KEY:
        return _BY_KEY[key].label
    meta = metadata_key(key)
    if meta is not None:
        return f"Metadata: {meta}"
    return key


def stripe_field_choices(metadata_keys: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(key, label) pairs for the Stripe side of a mapping row: fixed fields, then metadata keys."""
    choices = [(f.key, f.label) for f in STRIPE_FIELDS]
    seen: set[str] = set()
    for raw in sorted(str(k) for k in metadata_keys if k is not None):
        meta = raw.strip()
        if meta and meta not in seen:
            seen.add(meta)
            choices.append((f"{METADATA_PREFIX}{meta}", f"Metadata: {meta}"))
    return choices


def _metadata_of(customer: Any) -> Mapping[str, Any]:
    """Accepts CustomerData, a plain dict, or a stripe-python object alike."""
    if isinstance(customer, Mapping):
        meta = customer.get("metadata")
    else:
        meta = getattr(customer, "metadata", None)
        if meta is not None and not isinstance(meta, Mapping):
            to_dict = getattr(meta, "to_dict", None)
            meta = to_dict() if callable(to_dict) else None
    return meta if isinstance(meta, Mapping) else {}


def collect_metadata_keys(
    customers: Iterable[Any], limit: int = 100, max_keys: int = 200
) -> list[str]:
    """Sorted metadata keys seen on up to `limit` customers; bounded so a lazy Stripe pager is safe."""
    keys: set[str] = set()
    for count, customer in enumerate(customers):
        if count >= limit:
            break
        for key in _metadata_of(customer):
            key = str(key).strip()
            if key:
                keys.add(key)
    result = sorted(keys)
    if len(result) > max_keys:
        logger.info("Found %d metadata keys; offering the first %d", len(result), max_keys)
        result = result[:max_keys]
    return result


def _get(source: Any, name: str) -> Any:
    """Reads a field from a mapping or an attribute-style object."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def extract_value(customer_data: Any, key: str) -> str | None:
    """The string a mapping writes for this key; None when Stripe has nothing for it."""
    meta = metadata_key(key)
    if meta is not None:
        value = _metadata_of(customer_data).get(meta)
    elif key.startswith("address."):
        address = _get(customer_data, "address")
        value = _get(address, key[len("address."):]) if address is not None else None
    elif key in _BY_KEY:
        value = _get(customer_data, key)
    else:
        logger.warning("Unknown Stripe field key %r in a mapping", key)
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def split_name(full: str | None) -> tuple[str, str]:
    """First word to First Name, the rest to Last Name, as the design states."""
    if not full:
        return "", ""
    words = re.sub(r"\s+", " ", str(full)).strip().split(" ")
    if not words or words == [""]:
        return "", ""
    return words[0], " ".join(words[1:])


def _fits_for(stripe_key: str) -> frozenset[str]:
    """Allowed CRM types for a key; an unknown key fits text only, the one safe choice."""
    if stripe_key in _BY_KEY:
        return _BY_KEY[stripe_key].fits
    if metadata_key(stripe_key) is not None:
        return _METADATA_FITS
    return _fits()


def value_fits(stripe_key: str, crm_field_type: str) -> bool:
    """Whether values of this Stripe field can be stored in a CRM field of this type."""
    return (crm_field_type or "").strip().lower() in _fits_for(stripe_key)


def misfit_reason(stripe_key: str, crm_field_label: str, crm_field_type: str) -> str | None:
    """A sentence for the mapping page explaining a rejected row; None when the row is fine."""
    crm_type = (crm_field_type or "").strip().lower()
    if crm_type in _fits_for(stripe_key):
        return None
    label = label_for(stripe_key)
    if metadata_key(stripe_key) is not None:
        return (
            f"{label} can hold any text, so it can only be stored in a text or dropdown field, "
            f"not the {crm_type or 'unknown'} field “{crm_field_label}”."
        )
    return f"{label} is text and cannot be stored in the {crm_type or 'unknown'} field “{crm_field_label}”."
