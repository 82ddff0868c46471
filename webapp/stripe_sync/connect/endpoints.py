"""Webhook endpoints in Stripe: create one per resource, list them, delete them, respect the limit."""
import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import stripe

from webapp.stripe_sync.client import ENDPOINT_LIMIT_RE, STRIPE_API_VERSION, describe
from webapp.stripe_sync.events import events_for_resource, resource

log = logging.getLogger(__name__)

MAX_ENDPOINTS = 16  # Stripe's per-account, per-mode limit
APP_MARKER = "engine-crm"
WEBHOOK_PATH = "/webhooks/stripe/"


class UnreachableUrl(Exception):
    """Stripe refused the endpoint URL because it is not on the public internet."""


class EndpointLimitReached(Exception):
    """Stripe allows 16 endpoints per account and mode; this account has no room."""

    def __init__(self, endpoints: list[dict], message: str | None = None):
        super().__init__(message or "The Stripe account has reached its webhook endpoint limit.")
        self.endpoints = endpoints


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint as the limit panel lists it."""

    id: str
    url: str
    status: str
    created: datetime | None
    ours: bool
    in_use_by: str | None  # the resource of ours that still uses it

    @property
    def removable(self) -> bool:
        """Only our own leftovers may be removed from this page."""
        return self.ours and self.in_use_by is None


def webhook_url(base_url: str, token: str) -> str:
    """The address Stripe posts a resource's events to."""
    return base_url.rstrip("/") + WEBHOOK_PATH + token


def base_url_warning(base_url: str, configured: bool) -> str | None:
    """Say why Stripe could not deliver to this address, and what to do; None when it looks reachable."""
    host = (urlsplit(base_url).hostname or "").lower()
    local = host in ("localhost", "") or host.endswith(".localhost") or host.endswith(".local")
    try:
        local = local or ipaddress.ip_address(host).is_private or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not configured or local:
        return (f"Stripe cannot deliver events to {base_url}: it is not an address on the public internet. "
                "Set PUBLIC_BASE_URL to the public HTTPS address of this app and connect again, or, for local "
                "development, forward events with the Stripe CLI: "
                f"stripe listen --forward-to {base_url.rstrip('/')}{WEBHOOK_PATH}<token>.")
    return None


def list_endpoints(client: stripe.StripeClient) -> list[dict]:
    """Every webhook endpoint of the account, following pagination."""
    endpoints = []
    for ep in client.v1.webhook_endpoints.list(params={"limit": 100}).auto_paging_iter():
        endpoints.append(ep.to_dict() if hasattr(ep, "to_dict") else dict(ep))
    return endpoints


def describe_endpoints(endpoints: list[dict], base_url: str, in_use: dict[str, str]) -> list[EndpointInfo]:
    """Mark which endpoints point at this app and which of ours are still in use."""
    ours_prefix = base_url.rstrip("/") + WEBHOOK_PATH
    infos = []
    for ep in sorted(endpoints, key=lambda e: (e.get("created") or 0, e.get("url") or "", e["id"])):
        url = ep.get("url") or ""
        metadata = ep.get("metadata") or {}
        ours = url.startswith(ours_prefix) or metadata.get("app") == APP_MARKER
        created = ep.get("created")
        infos.append(EndpointInfo(
            id=ep["id"], url=url, status=ep.get("status") or "enabled",
            created=datetime.fromtimestamp(created, timezone.utc).replace(tzinfo=None) if created else None,
            ours=ours, in_use_by=in_use.get(ep["id"])))
    return infos


def create_endpoint(client: stripe.StripeClient, kind: str, url: str, livemode: bool) -> tuple[str, str]:
    """Create the resource's endpoint and return (endpoint id, signing secret).

    Checks the count first, and still handles Stripe's refusal, since another app may add one in between."""
    existing = list_endpoints(client)
    same_mode = [e for e in existing if bool(e.get("livemode")) == livemode]
    if len(same_mode) >= MAX_ENDPOINTS:
        raise EndpointLimitReached(existing)
    try:
        ep = client.v1.webhook_endpoints.create(params={
            "url": url,
            "enabled_events": list(events_for_resource(kind)),
            "description": f"Engine CRM: {resource(kind).name} sync",
            "metadata": {"app": APP_MARKER, "resource": kind},
            "api_version": STRIPE_API_VERSION,
        })
    except stripe.InvalidRequestError as exc:
        message = str(getattr(exc, "user_message", "") or "")
        if ENDPOINT_LIMIT_RE.search(message):
            raise EndpointLimitReached(list_endpoints(client), message) from None
        if "publicly accessible" in message:
            raise UnreachableUrl(message) from None
        raise
    log.info("created Stripe webhook endpoint %s for %s", ep.id, kind)
    return ep.id, ep.secret


def delete_endpoint(client: stripe.StripeClient, endpoint_id: str) -> bool:
    """Delete an endpoint; one Stripe already lost is not an error (returns False)."""
    try:
        client.v1.webhook_endpoints.delete(endpoint_id)
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "code", None) == "resource_missing" or getattr(exc, "http_status", None) == 404:
            log.info("webhook endpoint %s was already gone in Stripe", endpoint_id)
            return False
        raise describe(exc) from exc
    log.info("deleted Stripe webhook endpoint %s", endpoint_id)
    return True
