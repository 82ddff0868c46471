"""Our webhook endpoints as Stripe has them, and the three repairs the Stripe page offers.

Stripe disables an endpoint after repeated failed deliveries and sends nothing to it meanwhile; a
colleague may delete one in the Dashboard; PUBLIC_BASE_URL may have moved since an endpoint was
made. Each check (with the account's event recovery, recover.py) lists the account's endpoints and
stores on each resource what it found: enabled, disabled, or missing, and the URL Stripe posts to.

Repairs, each followed by an event check so the gap is recovered at once:
- Re-enable: `disabled=false` on the endpoint.
- Recreate endpoint: a new endpoint with a new signing secret and a new URL token; the old secrets are
  retired and the old URL answers 404 from then on (a deleted endpoint's URL must not keep working;
  intake's per-process cache forgets it within WEBHOOK_CACHE_SECONDS).
- Update URL: the endpoint's URL set to this app's address (PUBLIC_BASE_URL) for the same token.
"""
from __future__ import annotations

import logging
import secrets

import stripe
from flask import current_app

from webapp.crypto import encrypt
from webapp.extensions import db
from webapp.stripe_sync.client import StripeProblem, client_for_account, describe
from webapp.stripe_sync.connect import endpoints as connect_endpoints
from webapp.stripe_sync.models import (
    ENDPOINT_DISABLED, ENDPOINT_ENABLED, ENDPOINT_MISSING, RESOURCE_ACTIVE, RESOURCE_DISCONNECTED,
    RESOURCE_DISCONNECTING, StripeAccount, StripeResource, WebhookSecret,
)

log = logging.getLogger(__name__)

CHECKED = (RESOURCE_DISCONNECTING, RESOURCE_DISCONNECTED)  # not checked: on their way out, or gone


def check(account: StripeAccount, client: stripe.StripeClient) -> dict[int, str]:
    """Read the account's endpoints and note each resource's; returns resource id → status."""
    found = {ep["id"]: ep for ep in connect_endpoints.list_endpoints(client)}
    statuses = {}
    for res in account.resources:
        if res.status in CHECKED or not res.webhook_endpoint_id:
            continue
        ep = found.get(res.webhook_endpoint_id)
        if ep is None:
            status, url = ENDPOINT_MISSING, None
        else:
            status = ENDPOINT_DISABLED if ep.get("status") == "disabled" else ENDPOINT_ENABLED
            url = ep.get("url")
        if status != res.endpoint_status:
            log.log(logging.INFO if status == ENDPOINT_ENABLED else logging.WARNING,
                    "Stripe webhook endpoint %s of resource %s is %s", res.webhook_endpoint_id, res.id, status)
        res.endpoint_status, res.endpoint_seen_url = status, url
        statuses[res.id] = status
    db.session.commit()
    return statuses


def expected_url(res: StripeResource) -> str | None:
    """Where Stripe should post this resource's events, when PUBLIC_BASE_URL says; None when unset."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    return connect_endpoints.webhook_url(base, res.token) if base else None


def url_mismatch(res: StripeResource) -> str | None:
    """The URL Stripe posts to, when it is not this app's address for the resource; else None."""
    expected = expected_url(res)
    seen = res.endpoint_seen_url
    if not expected or not seen or res.endpoint_status != ENDPOINT_ENABLED:
        return None
    return seen if seen.rstrip("/") != expected.rstrip("/") else None


def reenable(res: StripeResource) -> None:
    """Enable the endpoint Stripe disabled; StripeProblem when Stripe refuses or cannot be reached."""
    client = client_for_account(res.account)
    try:
        client.v1.webhook_endpoints.update(res.webhook_endpoint_id, params={"disabled": False})
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "code", None) == "resource_missing":
            res.endpoint_status = ENDPOINT_MISSING
            db.session.commit()
            raise StripeProblem("This endpoint no longer exists in Stripe. Use “Recreate endpoint”.", "missing") \
                from None
        raise describe(exc) from None
    except stripe.StripeError as exc:
        raise describe(exc) from None
    res.endpoint_status = ENDPOINT_ENABLED
    db.session.commit()
    log.info("Re-enabled Stripe webhook endpoint %s of resource %s", res.webhook_endpoint_id, res.id)


def update_url(res: StripeResource, base_url: str) -> None:
    """Point the endpoint at this app's address for the resource."""
    url = connect_endpoints.webhook_url(base_url, res.token)
    client = client_for_account(res.account)
    try:
        client.v1.webhook_endpoints.update(res.webhook_endpoint_id, params={"url": url})
    except stripe.InvalidRequestError as exc:
        if "publicly accessible" in str(getattr(exc, "user_message", "") or ""):
            raise StripeProblem(f"Stripe cannot deliver to {url}: it is not a public address. Set PUBLIC_BASE_URL "
                                "to this app's public HTTPS address.", "unreachable") from None
        raise describe(exc) from None
    except stripe.StripeError as exc:
        raise describe(exc) from None
    res.webhook_url = res.endpoint_seen_url = url
    db.session.commit()
    log.info("Pointed Stripe webhook endpoint %s of resource %s at this app", res.webhook_endpoint_id, res.id)


def recreate(res: StripeResource, base_url: str) -> None:
    """A new endpoint, secret and URL token for the resource; the old token stops accepting deliveries."""
    client = client_for_account(res.account)
    token = secrets.token_urlsafe(32)
    url = connect_endpoints.webhook_url(base_url, token)
    try:
        endpoint_id, signing_secret = connect_endpoints.create_endpoint(client, res.kind, url, res.account.livemode)
    except connect_endpoints.UnreachableUrl:
        raise StripeProblem(f"Stripe cannot deliver to {url}: it is not a public address. Set PUBLIC_BASE_URL to "
                            "this app's public HTTPS address, or forward events with the Stripe CLI.",
                            "unreachable") from None
    except connect_endpoints.EndpointLimitReached:
        raise StripeProblem("This Stripe account already has 16 webhook endpoints, Stripe's limit. Delete one in "
                            "Stripe (Developers → Webhooks), then recreate this one.", "endpoint_limit") from None
    except stripe.StripeError as exc:
        raise describe(exc) from None
    old_endpoint = res.webhook_endpoint_id
    try:
        for row in res.secrets:
            row.active = False
        res.secrets.append(WebhookSecret(secret_enc=encrypt(signing_secret)))
        res.token, res.webhook_url, res.webhook_endpoint_id = token, url, endpoint_id
        res.endpoint_status, res.endpoint_seen_url = ENDPOINT_ENABLED, url
        res.status, res.status_reason = RESOURCE_ACTIVE, None
        db.session.commit()
    except Exception:
        db.session.rollback()
        log.exception("storing the recreated endpoint failed; removing %s from Stripe", endpoint_id)
        try:
            connect_endpoints.delete_endpoint(client, endpoint_id)
        except (stripe.StripeError, StripeProblem):
            log.error("could not remove endpoint %s after a failed recreation", endpoint_id)
        raise
    log.info("Recreated the Stripe webhook endpoint of resource %s: %s replaces %s", res.id, endpoint_id,
             old_endpoint)
