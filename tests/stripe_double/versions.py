"""Render the double's current-shape objects (2026-07-29.dahlia) as older API versions show them, because
Stripe renders an event in the version that was the account default when the event was created."""

from __future__ import annotations

from typing import Any, Callable

from .catalog import API_VERSIONS
from .objects import DEFAULT_API_VERSION

# 2025-03-31.basil moved the billing period onto subscription items and the subscription id of an invoice
# under invoice.parent; every version before it has the older shapes below.
BASIL = "2025-03-31"
KNOWN_VERSIONS = frozenset(API_VERSIONS | {DEFAULT_API_VERSION})


def check_version(version: str) -> str:
    """Refuse a version Stripe never released, so a typo fails the test instead of rendering current shapes."""
    if version not in KNOWN_VERSIONS:
        raise ValueError(f"unknown Stripe API version {version!r}")
    return version


def is_pre_basil(version: str) -> bool:
    """Versions compare by their date prefix (YYYY-MM-DD), which orders them as Stripe released them."""
    return check_version(version)[:10] < BASIL


def _ordered(obj: dict) -> dict:
    """Keep Stripe's key order (id, object, then a-z) after adding keys."""
    head = {k: obj[k] for k in ("id", "object") if k in obj}
    return {**head, **{k: obj[k] for k in sorted(obj) if k not in head}}


def _subscription_pre_basil(sub: dict) -> dict:
    """Before basil the billing period sat on the subscription (from its first item), not on each item."""
    out = dict(sub)
    items = sub.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    first = data[0] if data else {}
    out["current_period_start"] = first.get("current_period_start")
    out["current_period_end"] = first.get("current_period_end")
    if data is not None:
        stripped = [{k: v for k, v in item.items() if k not in ("current_period_start", "current_period_end")}
                    for item in data]
        out["items"] = {**items, "data": stripped}
    return _ordered(out)


def _invoice_pre_basil(invoice: dict) -> dict:
    """Before basil an invoice named its subscription at the top level and had `paid`; `parent` did not exist."""
    out = dict(invoice)
    parent = out.pop("parent", None) or {}
    details = parent.get("subscription_details") or {}
    out["subscription"] = details.get("subscription")
    out["paid"] = invoice.get("status") == "paid"
    return _ordered(out)


def _charge_pre_basil(charge: dict) -> dict:
    """Before basil a charge carried the invoice it paid (null for one-off charges)."""
    if "invoice" in charge:
        return charge
    return _ordered({**charge, "invoice": None})


_PRE_BASIL: dict[str, Callable[[dict], dict]] = {
    "subscription": _subscription_pre_basil,
    "invoice": _invoice_pre_basil,
    "charge": _charge_pre_basil,
}


def render_in_version(obj: Any, version: str) -> dict:
    """The object as an account pinned to `version` sees it; never mutates `obj`, and returns `obj` itself
    when the version shows it unchanged (so callers copy before mutating)."""
    if not is_pre_basil(version) or not isinstance(obj, dict):
        return obj
    renderer = _PRE_BASIL.get(obj.get("object"))
    return renderer(obj) if renderer is not None else obj
