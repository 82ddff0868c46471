"""Which automations a fired trigger starts: the trigger kinds, their options, and the match rule.

Pure functions over plain values, so the rules are tested without a database:
- "Stripe event received" matches when the event's type is one of the chosen types.
- "Makes a purchase" matches any purchase, or one whose product names contain the text (any
  case), or one whose amount is at least the minimum, in the order's currency's major units
  (so a minimum of 100 means $100.00 for USD and ¥100 for JPY).
- "Recurring Payment Created" / "Recurring Payment Updated" match any status, or the chosen one
  (the CRM's status after the event: ACTIVE, PAYMENT_FAILED, CANCELLED, PENDING, EXPIRED, PAUSED).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from webapp.money import format_amount, minor_digits
from webapp.stripe_sync.apply.triggers import (
    MAKES_PURCHASE, RECURRING_PAYMENT_CREATED, RECURRING_PAYMENT_UPDATED, STRIPE_EVENT_RECEIVED, TRIGGERS,
)

RECURRING_TRIGGERS = (RECURRING_PAYMENT_CREATED, RECURRING_PAYMENT_UPDATED)
RECURRING_STATUSES = ("ACTIVE", "PAYMENT_FAILED", "CANCELLED", "PENDING", "EXPIRED", "PAUSED")

PURCHASE_ANY = "any"
PURCHASE_PRODUCT = "product"
PURCHASE_MIN_AMOUNT = "min_amount"
PURCHASE_FILTERS = {
    PURCHASE_ANY: "Any purchase",
    PURCHASE_PRODUCT: "Product name contains",
    PURCHASE_MIN_AMOUNT: "Minimum amount",
}


@dataclass
class Fired:
    """What a fired trigger says, with the order behind a purchase when there is one."""

    trigger: str
    event_type: str
    details: Mapping[str, Any] = field(default_factory=dict)
    products: list[str] = field(default_factory=list)
    amount: int | None = None     # minor units
    currency: str | None = None


def _major(amount: int, currency: str | None) -> Decimal:
    """Minor units to major units for the currency."""
    return Decimal(int(amount)).scaleb(-minor_digits(currency))


def matches(trigger_type: str | None, config: Mapping[str, Any] | None, fired: Fired) -> bool:
    """Whether an automation with this trigger starts for this firing."""
    if not trigger_type or trigger_type != fired.trigger:
        return False
    config = config or {}
    if trigger_type == STRIPE_EVENT_RECEIVED:
        return fired.event_type in (config.get("event_types") or [])
    if trigger_type == MAKES_PURCHASE:
        mode = config.get("filter") or PURCHASE_ANY
        if mode == PURCHASE_PRODUCT:
            needle = str(config.get("product_name") or "").strip().lower()
            return bool(needle) and any(needle in name.lower() for name in fired.products)
        if mode == PURCHASE_MIN_AMOUNT:
            try:
                minimum = Decimal(str(config.get("min_amount")))
            except InvalidOperation:
                return False
            return fired.amount is not None and _major(fired.amount, fired.currency) >= minimum
        return True
    if trigger_type in RECURRING_TRIGGERS:
        wanted = config.get("status")
        return not wanted or (fired.details or {}).get("status") == wanted
    return False


def describe(trigger_type: str | None, config: Mapping[str, Any] | None) -> str:
    """One line for the list and the editor: what starts this automation."""
    if not trigger_type:
        return "No trigger yet"
    config = config or {}
    name = TRIGGERS.get(trigger_type, trigger_type)
    if trigger_type == STRIPE_EVENT_RECEIVED:
        return f"{name}: {', '.join(config.get('event_types') or []) or 'no event type'}"
    if trigger_type == MAKES_PURCHASE:
        mode = config.get("filter") or PURCHASE_ANY
        if mode == PURCHASE_PRODUCT:
            return f"{name}: product name contains “{config.get('product_name', '')}”"
        if mode == PURCHASE_MIN_AMOUNT:
            return f"{name}: at least {config.get('min_amount')} (in the order's currency)"
        return f"{name}: any purchase"
    if trigger_type in RECURRING_TRIGGERS:
        status = config.get("status")
        return f"{name}: {'status ' + status if status else 'any status'}"
    return name


def describe_firing(fired: Fired) -> str:
    """How a run's log says what let the contact in."""
    text = f"{TRIGGERS.get(fired.trigger, fired.trigger)} by {fired.event_type}"
    if fired.trigger == MAKES_PURCHASE and fired.amount is not None:
        text += f" ({format_amount(fired.amount, fired.currency)}"
        text += f", {', '.join(fired.products)})" if fired.products else ")"
    elif fired.trigger in RECURRING_TRIGGERS and (fired.details or {}).get("status"):
        text += f" (status {fired.details['status']})"
    return text
