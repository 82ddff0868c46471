"""Recorded Stripe Events: their envelope, how GET /v1/events filters them, and per-endpoint rendering."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from .errors import StripeError
from .versions import render_in_version

# Stripe lists and retrieves events for 30 days only.
RETENTION_SECONDS = 30 * 24 * 60 * 60
MAX_TYPES = 20
DROPPED = "dropped (simulated outage)"


class EventRecord:
    """One recorded event: the envelope as rendered in its own api_version, the current-shape object it was
    built from (so a resend can render it for an endpoint pinned to another version), and the endpoints it
    has not yet reached (pending_webhooks counts them)."""

    __slots__ = ("event", "source", "pending")

    def __init__(self, event: dict, source: Any, pending: set[str]) -> None:
        self.event = event
        self.source = source
        self.pending = pending

    def mark_delivered(self, endpoint_id: str) -> None:
        """A 2xx answer settles that endpoint, as Stripe's pending_webhooks shows."""
        self.pending.discard(endpoint_id)
        self.event["pending_webhooks"] = len(self.pending)


def envelope(event_id: str, event_type: str, data_object: Any, *, api_version: str, created: int,
             livemode: bool, pending_webhooks: int, previous_attributes: dict | None) -> dict:
    """The Event object with the field order of Stripe's webhook payloads."""
    data: dict[str, Any] = {"object": data_object}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": pending_webhooks,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def for_version(record: EventRecord, version: str) -> dict:
    """The event as an endpoint pinned to `version` receives it (the recorded event when versions agree)."""
    event = record.event
    if version == event["api_version"]:
        return event
    data = dict(event["data"], object=render_in_version(record.source, version))
    return dict(event, api_version=version, data=data)


def payload(event: dict) -> bytes:
    """Webhook bytes as Stripe sends them: 2-space indented JSON in raw UTF-8."""
    return json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")


def _type_pattern(pattern: str) -> Callable[[str], bool]:
    """`*` matches any run of characters, so `customer.*` takes every customer event, nested ones included."""
    if "*" not in pattern:
        return lambda t: t == pattern
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
    return lambda t: regex.fullmatch(t) is not None


def type_filter(params: dict) -> Callable[[EventRecord], bool] | None:
    """The match for GET /v1/events' `type` (one name or a wildcard) or `types` (up to 20 exact names)."""
    one, many = params.get("type"), params.get("types")
    if one is not None and many is not None:
        raise StripeError(400, "You may only specify one of these parameters: type, types.")
    if one is not None:
        if not isinstance(one, str):
            raise StripeError(400, "Invalid string", param="type")
        matches = _type_pattern(one)
        return lambda rec: matches(rec.event["type"])
    if many is None:
        return None
    if not isinstance(many, list) or not all(isinstance(t, str) for t in many):
        raise StripeError(400, "Invalid array", param="types")
    if len(many) > MAX_TYPES:
        raise StripeError(400, f"You may pass at most {MAX_TYPES} values for types (got {len(many)}).",
                          param="types")
    wanted = frozenset(many)
    return lambda rec: rec.event["type"] in wanted
