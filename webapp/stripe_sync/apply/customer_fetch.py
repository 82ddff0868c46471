"""Fetching a linked Stripe Customer for the worker, with the retries Stripe asks for.

Layers of retry, innermost first:
1. the SDK (`max_network_retries`) retries connection errors, 5xx, 409 and any 429 that carries
   `Stripe-Should-Retry: true` (lock timeouts), with jittered exponential backoff;
2. here, a plain 429 rate limit (which the SDK leaves to the caller) is retried a few times with
   jittered exponential backoff (STRIPE_RATE_LIMIT_RETRIES, STRIPE_RATE_LIMIT_BACKOFF);
3. anything still failing propagates, the job fails and RQ retries it later (EVENT_RETRY_INTERVALS).
A customer Stripe no longer has (404 resource_missing) is "no customer", not an error: the event's
own details are used instead, as customer_data.py decides.
"""
import logging
import random
import time
from collections.abc import Callable

import stripe
from flask import current_app

from webapp.stripe_sync.client import client_for_account
from webapp.stripe_sync.sync_settings import setting

log = logging.getLogger(__name__)


def _client(account) -> stripe.StripeClient:
    """One SDK client per account and key per process, so keep-alive connections are reused."""
    cache = current_app.extensions.setdefault("stripe_clients", {})
    key = (account.id, account.secret_key_enc)
    client = cache.get(key)
    if client is None:
        client = client_for_account(account)
        cache[key] = client
    return client


def customer_fetcher(account, sleep: Callable[[float], None] = time.sleep) -> Callable[[str], dict | None] | None:
    """A `fetch_customer(id)` for resolve_customer_data; None when the account's key was erased."""
    if not account.secret_key_enc:
        return None
    client = _client(account)
    retries = int(setting("STRIPE_RATE_LIMIT_RETRIES"))
    base = float(setting("STRIPE_RATE_LIMIT_BACKOFF"))

    def fetch(customer_id: str) -> dict | None:
        """The Customer as a plain dict, or None when Stripe no longer has it."""
        for attempt in range(retries + 1):
            try:
                return client.v1.customers.retrieve(customer_id).to_dict()
            except stripe.RateLimitError:
                if attempt >= retries:
                    raise
                delay = base * (2 ** attempt) * random.uniform(0.5, 1.0)
                log.info("Stripe rate limited fetching customer %s; retry %d in %.2f s",
                         customer_id, attempt + 1, delay)
                sleep(delay)
            except stripe.InvalidRequestError as exc:
                if getattr(exc, "code", None) == "resource_missing":
                    log.info("Stripe customer %s no longer exists; using the event's own details", customer_id)
                    return None
                raise
        return None  # pragma: no cover - the loop returns or raises

    return fetch
