"""The event table: the one place that says which Stripe events each resource brings in and what they do.

Every other part of the app (webhook endpoint provisioning, the worker, historical sync, the pages)
reads this module instead of restating event names, so the design's table lives here exactly once.

Decisions written down here:
- An event type not in the table is "unknown": it still gets the two base tags from
  `tags_for_event`, but `resource_for_event` and `effect_for_event` return None so the worker can
  skip it with a reason instead of guessing.
- Historical sync processes each listed record as the event Stripe would have sent for it. A charge
  whose `status` is not `succeeded` (failed or still pending) never produced a subscribed event, so
  `historical_event_type` returns None for it and the backfill skips it. Invoices have no `paid`
  boolean since API version 2025-03-31.basil; `status == "paid"` decides (the legacy boolean is
  still honoured for older shapes).
- A partial refund also makes Stripe send `charge.refunded`, so `amount_refunded > 0` counts as
  refunded for historical records too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)

BASE_TAG = "stripe-integration"
SUBSCRIPTION_EVENTS_TAG = "stripe-integration-Billing_Subscription_Events"
HISTORY_PAGE_SIZE = 100


class Effect(StrEnum):
    """What an event does beyond the contact, so the worker dispatches on data rather than names."""

    CONTACT = "contact"  # create or update the contact and its tags, nothing else
    RECURRING_PAYMENT = "recurring_payment"  # + Recurring Payment and E-commerce Customer
    ORDER = "order"  # + Order and E-commerce Customer, only when payment_status is paid
    REFUND = "refund"  # + mark the known order refunded


@dataclass(frozen=True)
class EventSpec:
    """One subscribed webhook event type and its effect, kept together so they cannot drift apart."""

    type: str
    effect: Effect = Effect.CONTACT
    extra_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class HistoricalList:
    """Which Stripe list API a backfill pages, so the job needs no per-resource branching."""

    api_path: str  # the REST path, e.g. "/v1/checkout/sessions"
    service: tuple[str, ...]  # attribute path under StripeClient.v1, e.g. ("checkout", "sessions")
    filters: tuple[tuple[str, str], ...] = ()

    def list_params(self, limit: int = HISTORY_PAGE_SIZE) -> dict[str, Any]:
        """Builds fresh params per call so a caller adding a cursor cannot mutate the table."""
        return {"limit": limit, **dict(self.filters)}


@dataclass(frozen=True)
class Resource:
    """A connectable Stripe resource: its events, its history source and how history maps to events."""

    kind: str
    name: str
    stripe_object: str  # the `object` value of its data.object, e.g. "checkout.session"
    events: tuple[EventSpec, ...]
    history: HistoricalList
    historical_event: Callable[[Mapping[str, Any]], str | None] = field(repr=False)

    @property
    def event_types(self) -> tuple[str, ...]:
        """The list Stripe's webhook endpoint is created with (`enabled_events`)."""
        return tuple(spec.type for spec in self.events)


def _subscription_events(*types: str) -> tuple[EventSpec, ...]:
    """Subscription events share one effect and one extra tag; stating it once avoids a typo in six rows."""
    return tuple(
        EventSpec(t, Effect.RECURRING_PAYMENT, (SUBSCRIPTION_EVENTS_TAG,)) for t in types
    )


def _charge_history(charge: Mapping[str, Any]) -> str | None:
    """Failed or pending charges never sent a subscribed event, so they are not replayed."""
    if charge.get("status") not in (None, "succeeded"):
        return None
    if charge.get("refunded") or (charge.get("amount_refunded") or 0) > 0:
        return "charge.refunded"
    return "charge.succeeded"


def _invoice_history(invoice: Mapping[str, Any]) -> str:
    """Paid invoices replay as their payment so the contact gets the same tag a live event gives."""
    if invoice.get("status") == "paid" or invoice.get("paid") is True:
        return "invoice.payment_succeeded"
    return "invoice.created"


RESOURCES: tuple[Resource, ...] = (
    Resource(
        kind="charge",
        name="Charge",
        stripe_object="charge",
        events=(
            EventSpec("charge.succeeded"),
            EventSpec("charge.refunded", Effect.REFUND),
        ),
        history=HistoricalList("/v1/charges", ("charges",)),
        historical_event=_charge_history,
    ),
    Resource(
        kind="customer",
        name="Customer",
        stripe_object="customer",
        events=(
            EventSpec("customer.created"),
            EventSpec("customer.updated"),
        ),
        history=HistoricalList("/v1/customers", ("customers",)),
        historical_event=lambda _customer: "customer.created",
    ),
    Resource(
        kind="subscription",
        name="Subscription",
        stripe_object="subscription",
        events=_subscription_events(
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.trial_will_end",
            "customer.subscription.paused",
            "customer.subscription.resumed",
        ),
        history=HistoricalList("/v1/subscriptions", ("subscriptions",), (("status", "all"),)),
        historical_event=lambda _sub: "customer.subscription.created",
    ),
    Resource(
        kind="invoice",
        name="Invoice",
        stripe_object="invoice",
        events=(
            EventSpec("invoice.created"),
            EventSpec("invoice.updated"),
            EventSpec("invoice.payment_succeeded"),
            EventSpec("invoice.payment_failed"),
            EventSpec("invoice.upcoming"),
        ),
        history=HistoricalList("/v1/invoices", ("invoices",)),
        historical_event=_invoice_history,
    ),
    Resource(
        kind="checkout_session",
        name="Checkout Session",
        stripe_object="checkout.session",
        events=(
            EventSpec("checkout.session.async_payment_succeeded", Effect.ORDER),
            EventSpec("checkout.session.completed", Effect.ORDER),
        ),
        history=HistoricalList(
            "/v1/checkout/sessions", ("checkout", "sessions"), (("status", "complete"),)
        ),
        historical_event=lambda _session: "checkout.session.completed",
    ),
)

RESOURCE_KINDS: tuple[str, ...] = tuple(r.kind for r in RESOURCES)
_BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
_BY_EVENT: dict[str, tuple[Resource, EventSpec]] = {
    spec.type: (r, spec) for r in RESOURCES for spec in r.events
}
ALL_EVENT_TYPES: tuple[str, ...] = tuple(_BY_EVENT)

SUBSCRIPTION_STATUS_MAP: Mapping[str, str] = {
    "active": "ACTIVE",
    "trialing": "ACTIVE",
    "past_due": "PAYMENT_FAILED",
    "unpaid": "PAYMENT_FAILED",
    "canceled": "CANCELLED",
    "incomplete": "PENDING",
    "incomplete_expired": "EXPIRED",
    "paused": "PAUSED",
}


def resource(kind: str) -> Resource:
    """Looks a resource up by slug; an unknown slug is a programming error, so it raises KeyError."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise KeyError(f"Unknown Stripe resource kind: {kind!r}") from None


def resource_choices() -> list[tuple[str, str]]:
    """(slug, display name) pairs in table order, ready for a select field."""
    return [(r.kind, r.name) for r in RESOURCES]


def is_known_event(event_type: str) -> bool:
    """Lets intake and the worker reject events no resource subscribed to."""
    return event_type in _BY_EVENT


def resource_for_event(event_type: str) -> Resource | None:
    """Which resource an event belongs to; None for events outside the table."""
    found = _BY_EVENT.get(event_type)
    return found[0] if found else None


def event_spec(event_type: str) -> EventSpec | None:
    """The table row for an event type; None for events outside the table."""
    found = _BY_EVENT.get(event_type)
    return found[1] if found else None


def effect_for_event(event_type: str) -> Effect | None:
    """What the worker must do beyond the contact; None for events outside the table."""
    spec = event_spec(event_type)
    return spec.effect if spec else None


def events_for_resource(kind: str) -> tuple[str, ...]:
    """The `enabled_events` for a resource's webhook endpoint."""
    return resource(kind).event_types


def tags_for_event(event_type: str) -> list[str]:
    """Tags every contact touched by this event gets, in a stable order for tests and display."""
    tags = [BASE_TAG, f"{BASE_TAG}-{event_type}"]
    spec = event_spec(event_type)
    if spec:
        tags.extend(t for t in spec.extra_tags if t not in tags)
    return tags


def historical_event_type(kind: str, obj: Mapping[str, Any]) -> str | None:
    """The event a listed record is processed as during backfill; None means skip the record."""
    return resource(kind).historical_event(obj)


def map_subscription_status(status: str | None) -> str:
    """CRM status for a Stripe status; a status Stripe adds later is kept (upper-cased) rather than lost."""
    if not status:
        return "UNKNOWN"
    mapped = SUBSCRIPTION_STATUS_MAP.get(status)
    if mapped is None:
        logger.warning("Unmapped Stripe subscription status %r; storing it upper-cased", status)
        return str(status).upper()
    return mapped
