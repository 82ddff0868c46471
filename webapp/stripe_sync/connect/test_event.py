"""A test event for a resource, so a marketer sees the path from Stripe to a contact work before a real
payment: "Send a test event" on the Stripe page.

Stripe's API has no call that makes an endpoint receive a test webhook (the CLI's `stripe trigger`
creates real objects in the account, which we will not do on someone's behalf), so the app builds a
sample event of the resource's first event type, signs it with the resource's own signing secret
exactly as Stripe signs, and hands it to its own webhook intake. It then takes the path every
delivery takes: signature check, record, queue, worker, contact, sync log. The sample is about a
"Test Event" person at test.event@example.com; its ids say "EngineTest" and a fresh event id per
click, so a second test is a new event, not a duplicate.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from webapp.crypto import SecretUnreadable, decrypt
from webapp.stripe_sync.client import STRIPE_API_VERSION
from webapp.stripe_sync.events import events_for_resource
from webapp.stripe_sync.models import SECRET_FROM_STRIPE, StripeResource

TEST_EMAIL = "test.event@example.com"
TEST_NAME = "Test Event"


class NoSigningSecret(Exception):
    """The resource has no active signing secret: Stripe could not sign for it either."""


def _customer(now: int, livemode: bool) -> dict:
    """The sample person, as Stripe's Customer object."""
    return {"id": "cus_EngineTest", "object": "customer", "email": TEST_EMAIL, "name": TEST_NAME, "phone": None,
            "description": None, "address": None, "metadata": {}, "created": now, "livemode": livemode}


def sample_object(kind: str, now: int, livemode: bool) -> dict:
    """A small but well-formed object of the resource's kind, about the sample person."""
    customer = _customer(now, livemode)
    if kind == "customer":
        return customer
    suffix = secrets.token_hex(4)
    common = {"created": now, "livemode": livemode, "metadata": {}, "customer": customer}
    if kind == "charge":
        return {**common, "id": f"ch_EngineTest{suffix}", "object": "charge", "amount": 100, "amount_refunded": 0,
                "currency": "usd", "status": "succeeded", "paid": True, "refunded": False, "payment_intent": None,
                "billing_details": {"email": TEST_EMAIL, "name": TEST_NAME, "phone": None, "address": None},
                "receipt_email": TEST_EMAIL}
    if kind == "invoice":
        return {**common, "id": f"in_EngineTest{suffix}", "object": "invoice", "status": "draft", "currency": "usd",
                "amount_due": 100, "amount_paid": 0, "customer_email": TEST_EMAIL, "customer_name": TEST_NAME}
    if kind == "subscription":
        return {**common, "id": f"sub_EngineTest{suffix}", "object": "subscription", "status": "trialing",
                "currency": "usd", "items": {"object": "list", "data": []}, "cancel_at_period_end": False}
    if kind == "checkout_session":
        return {**common, "id": f"cs_test_EngineTest{suffix}", "object": "checkout.session", "status": "complete",
                "payment_status": "unpaid", "mode": "payment", "amount_total": 100, "currency": "usd",
                "customer_details": {"email": TEST_EMAIL, "name": TEST_NAME}, "customer_email": TEST_EMAIL}
    raise KeyError(f"no sample for resource kind {kind!r}")


def build(res: StripeResource, now: int | None = None) -> tuple[bytes, str]:
    """The signed sample delivery for this resource: (body bytes, Stripe-Signature header)."""
    now = int(time.time() if now is None else now)
    livemode = bool(res.account.livemode)
    event = {"id": f"evt_EngineTest{secrets.token_hex(8)}", "object": "event", "api_version": STRIPE_API_VERSION,
             "created": now, "livemode": livemode, "pending_webhooks": 1,
             "request": {"id": None, "idempotency_key": None}, "type": events_for_resource(res.kind)[0],
             "data": {"object": sample_object(res.kind, now, livemode)}}
    body = json.dumps(event, indent=2).encode()
    return body, sign(body, _secret(res), now)


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: HMAC-SHA256 of "timestamp.body" with the endpoint's secret, as `t=…,v1=…`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _secret(res: StripeResource) -> str:
    """The endpoint's own secret first, else one pasted from `stripe listen`."""
    rows = sorted((s for s in res.secrets if s.active), key=lambda s: (s.source != SECRET_FROM_STRIPE, -s.id))
    for row in rows:
        try:
            return decrypt(row.secret_enc)
        except SecretUnreadable:
            continue
    raise NoSigningSecret("This resource has no signing secret yet, so no delivery to it can be verified. "
                          "Recreate its endpoint once Stripe can reach this app, or paste the secret "
                          "that stripe listen prints.")
