"""Pure extraction of e-commerce rows (orders, recurring payments, refunds) from Stripe objects.

The worker turns these dicts into Order / RecurringPayment rows; keeping the Stripe reading here
means the shape of API version 2026-07-29.dahlia is understood in one place. Amounts stay integers
in the currency's minor unit and timestamps stay Unix seconds, exactly as Stripe sends them.

Shape notes (see shared/stripe-events/README.md):
- Checkout Sessions carry no `line_items` in webhooks (expand-only). Products therefore come from
  expanded `line_items` when a caller fetched them, otherwise from metadata keys `product`,
  `product_name` or `products` (comma-separated), otherwise an empty list.
- A subscription's billing period is on its items (`items.data[].current_period_end`). The amount
  per interval is the sum of `price.unit_amount × quantity` over items billed on the first item's
  interval and currency; it is None when a price has no `unit_amount` (tiered or metered). Discounts
  and taxes are not applied: this is the list price per interval.
- Charges lost their `invoice` field in 2025-03-31.basil; it is read when present (older shapes)
  and None otherwise. A refund is matched to an order through `payment_intent`.
- Every string of what is extracted has its NUL characters dropped (stripe_sync/nul.py): product
  names and metadata are free text, and PostgreSQL text cannot hold NUL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from webapp.stripe_sync.events import map_subscription_status
from webapp.stripe_sync.nul import without_nul

logger = logging.getLogger(__name__)

PRODUCT_METADATA_KEYS: tuple[str, ...] = ("product", "product_name", "products")


def _as_mapping(value: Any) -> Mapping[str, Any]:
    """stripe-python 16 objects are not dicts; accept them and None alike."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else {}


def _id_of(ref: Any) -> str | None:
    """A reference may be an id string or an expanded object."""
    if ref is None:
        return None
    if isinstance(ref, str):
        return ref or None
    return _as_mapping(ref).get("id")


def _products_from_line_items(session: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Real line items, available only when the caller expanded them through the API."""
    items = _as_mapping(session.get("line_items")).get("data") or []
    products = []
    for raw in items:
        item = _as_mapping(raw)
        price = _as_mapping(item.get("price"))
        product = price.get("product")
        quantity = item.get("quantity") or 1
        name = (
            (_as_mapping(product).get("name") if not isinstance(product, str) else None)
            or item.get("description")
            or price.get("nickname")
            or _id_of(product)
            or price.get("id")
        )
        products.append(
            {
                "name": name,
                "external_id": _id_of(product) or price.get("id"),
                "price_id": price.get("id"),
                "quantity": quantity,
                "unit_amount": price.get("unit_amount"),
                "amount_total": item.get("amount_total"),
            }
        )
    return products


def _products_from_metadata(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Merchants often tag sessions with a product name; better a named product than none."""
    names: list[str] = []
    for key in PRODUCT_METADATA_KEYS:
        value = metadata.get(key)
        if not value:
            continue
        for name in str(value).split(",") if key == "products" else [str(value)]:
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return [
        {
            "name": name,
            "external_id": None,
            "price_id": None,
            "quantity": 1,
            "unit_amount": None,
            "amount_total": None,
        }
        for name in names
    ]


def order_from_checkout_session(session: Mapping[str, Any] | Any) -> dict[str, Any] | None:
    """The Order a paid session creates; None when unpaid, so the event updates the contact only."""
    session = _as_mapping(session)
    if session.get("payment_status") != "paid":
        return None
    metadata = dict(_as_mapping(session.get("metadata")))
    products = _products_from_line_items(session) or _products_from_metadata(metadata)
    mode = session.get("mode")
    if products:
        description = ", ".join(str(p["name"]) for p in products)
    else:
        description = f"Stripe Checkout ({mode})" if mode else "Stripe Checkout"
    return without_nul({
        "external_id": session.get("id"),
        "amount_total": session.get("amount_total"),
        "amount_subtotal": session.get("amount_subtotal"),
        "currency": session.get("currency"),
        "created": session.get("created"),
        "mode": mode,
        "payment_status": session.get("payment_status"),
        "payment_intent": _id_of(session.get("payment_intent")),
        "invoice": _id_of(session.get("invoice")),
        "subscription": _id_of(session.get("subscription")),
        "customer_id": _id_of(session.get("customer")),
        "client_reference_id": session.get("client_reference_id"),
        "description": description,
        "products": products,
        "metadata": metadata,
    })


def _price_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """`price` is current; `plan` is the legacy twin and only a fallback."""
    return _as_mapping(item.get("price")) or _as_mapping(item.get("plan"))


def _interval_of(price: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """Billing interval from a Price (`recurring`) or a legacy Plan (top-level)."""
    recurring = _as_mapping(price.get("recurring"))
    if recurring:
        return recurring.get("interval"), recurring.get("interval_count")
    return price.get("interval"), price.get("interval_count")


def _product_name(price: Mapping[str, Any]) -> str | None:
    """Readable name: expanded product's name, then the price's nickname or lookup key, then ids."""
    product = price.get("product")
    if product is not None and not isinstance(product, str):
        name = _as_mapping(product).get("name")
        if name:
            return name
    return price.get("nickname") or price.get("lookup_key") or _id_of(product) or price.get("id")


def recurring_payment_from_subscription(sub: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The Recurring Payment row for a subscription, one per Stripe subscription id."""
    sub = _as_mapping(sub)
    items = [_as_mapping(i) for i in _as_mapping(sub.get("items")).get("data") or []]
    first = items[0] if items else {}
    price = _price_of(first)
    interval, interval_count = _interval_of(price)
    currency = price.get("currency") or sub.get("currency")

    amount: int | None = 0 if items else None
    for item in items:
        item_price = _price_of(item)
        if _interval_of(item_price)[0] != interval or (item_price.get("currency") or currency) != currency:
            logger.info("Subscription %s mixes intervals or currencies; amount covers %s only",
                        sub.get("id"), interval)
            continue
        unit = item_price.get("unit_amount")
        if unit is None or amount is None:
            amount = None
            continue
        quantity = item.get("quantity")
        amount += unit * (1 if quantity is None else quantity)

    products = [
        {
            "name": _product_name(_price_of(item)),
            "product_id": _id_of(_price_of(item).get("product")),
            "price_id": _price_of(item).get("id"),
            "quantity": item.get("quantity"),
            "unit_amount": _price_of(item).get("unit_amount"),
        }
        for item in items
    ]
    raw_status = sub.get("status")
    cancellation = _as_mapping(sub.get("cancellation_details"))
    return without_nul({
        "external_id": sub.get("id"),
        "customer_id": _id_of(sub.get("customer")),
        "status": map_subscription_status(raw_status),
        "stripe_status": raw_status,
        "name": _product_name(price),
        "product_id": _id_of(price.get("product")),
        "price_id": price.get("id"),
        "amount": amount,
        "currency": currency,
        "interval": interval,
        "interval_count": interval_count,
        "current_period_start": first.get("current_period_start"),
        "current_period_end": first.get("current_period_end"),
        "trial_start": sub.get("trial_start"),
        "trial_end": sub.get("trial_end"),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "cancel_at": sub.get("cancel_at"),
        "canceled_at": sub.get("canceled_at"),
        "ended_at": sub.get("ended_at"),
        "cancellation_reason": cancellation.get("reason"),
        "created": sub.get("created"),
        "products": products,
        "metadata": dict(_as_mapping(sub.get("metadata"))),
    })


def refund_from_charge(charge: Mapping[str, Any] | Any) -> dict[str, Any]:
    """What a refund event tells us, for marking the order paid by this charge as refunded."""
    charge = _as_mapping(charge)
    amount = charge.get("amount")
    amount_refunded = charge.get("amount_refunded") or 0
    refunded = bool(charge.get("refunded"))
    return without_nul({
        "charge_id": charge.get("id"),
        "payment_intent": _id_of(charge.get("payment_intent")),
        "invoice": _id_of(charge.get("invoice")),
        "customer_id": _id_of(charge.get("customer")),
        "amount": amount,
        "amount_refunded": amount_refunded,
        "currency": charge.get("currency"),
        "refunded": refunded,
        "partial": not refunded and amount_refunded > 0,
        "created": charge.get("created"),
    })
