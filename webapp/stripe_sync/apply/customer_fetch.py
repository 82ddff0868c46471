"""Retrieving an account's customers from Stripe: in parallel, each id once, within the request budget.

Stripe answers a retrieve in 100–600 ms. One after another, that caps a worker at a few events a
second; many in flight, the account's request budget (stripe_sync/budget.py) is the only limit.
Decisions:
- A retrieve goes through the SDK (its retries, timeouts and error classes) but is read as plain
  JSON (`raw_request`), as the import reads its pages: building a StripeObject only to turn it
  back into a dict is most of a retrieve's CPU.
- One thread pool per worker process (STRIPE_FETCH_CONCURRENCY threads) serves every job; the
  threads only talk to Stripe and Redis, never to the database, and no transaction is open while
  they run (the caller reads what it needs first and rolls back).
- A `Fetcher` belongs to one job and one account; it asks for each customer id once, however many
  events or batches of the job need it (a drain keeps taking events while earlier ones wait).
- Layers of retry, innermost first:
  1. the SDK (`max_network_retries`) retries connection errors, 5xx, 409 and any 429 that carries
     `Stripe-Should-Retry: true` (lock timeouts), with jittered exponential backoff;
  2. here, a plain 429 holds every request of the account (`Budget.hold_off`) for a jittered
     exponential delay, at least Stripe's Retry-After, and tries again (STRIPE_RATE_LIMIT_RETRIES,
     STRIPE_RATE_LIMIT_BACKOFF);
  3. anything still failing is the answer for that id: the events that need it fail and are retried
     (EVENT_RETRY_INTERVALS); the rest of the batch goes on.
- A customer Stripe no longer has (404 resource_missing, or `deleted: true`) is an answer, not an
  error: None, and the events use their own details.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import quote

import stripe
from flask import current_app

from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.budget import Budget, backoff_delay, budget_for, retry_after
from webapp.stripe_sync.client import client_for_account
from webapp.tunables import setting

log = logging.getLogger(__name__)

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def _shared_pool(size: int) -> ThreadPoolExecutor:
    """The process's pool (a forked worker builds its own: threads do not survive a fork)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="stripe-fetch")
            _pool_pid = os.getpid()
        return _pool


def _client(account) -> stripe.StripeClient:
    """One SDK client per account and key per process, so keep-alive connections are reused."""
    cache = current_app.extensions.setdefault("stripe_clients", {})
    key = (account.id, account.secret_key_enc)
    client = cache.get(key)
    if client is None:
        client = client_for_account(account)
        cache[key] = client
    return client


class Fetcher:
    """One job's retrieves for one account (build it inside the app context, use it from anywhere)."""

    def __init__(self, account, budget: Budget | None = None, sleep: Callable[[float], None] = time.sleep):
        self.account_id = account.id
        self.client = _client(account)
        self.budget = budget or budget_for(account, sleep)
        self.retries = int(setting("STRIPE_RATE_LIMIT_RETRIES"))
        self.backoff = float(setting("STRIPE_RATE_LIMIT_BACKOFF"))
        self.slow_seconds = float(setting("STRIPE_BUDGET_SLOW_SECONDS") or 0)
        self.sleep = sleep
        self.pool = _shared_pool(int(setting("STRIPE_FETCH_CONCURRENCY")))
        self.futures: dict[str, Future] = {}

    @classmethod
    def for_account(cls, account) -> "Fetcher | None":
        """None when the account's key was erased (disconnected): events use their own details."""
        return cls(account) if account is not None and account.secret_key_enc else None

    def submit(self, customer_id: str) -> Future:
        """A future of the customer's `Learned` record; the same future for an id asked for before."""
        future = self.futures.get(customer_id)
        if future is None:
            future = self.pool.submit(self.fetch, customer_id)
            self.futures[customer_id] = future
        return future

    def fetch(self, customer_id: str) -> Learned:
        """The customer as Stripe has it now (data None when it is gone), within the budget."""
        data = retrieve(self.client, f"/v1/customers/{quote(customer_id, safe='')}", self.budget, self.retries,
                        self.backoff, self.slow_seconds, self.sleep)
        if data is None:
            log.info("Stripe customer %s no longer exists; using the events' own details", customer_id)
        return Learned(self.account_id, customer_id, None if data is None or data.get("deleted") else data,
                       int(time.time()))


def retrieve(client: stripe.StripeClient, path: str, budget: Budget, retries: int, backoff: float,
             slow_seconds: float, sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """One object at our API version within the account's budget; None when Stripe has no such object. A
    plain 429 holds every request of the account and is retried up to `retries` times."""
    for attempt in range(retries + 1):
        budget.wait()
        try:
            return client.raw_request("get", path).data
        except stripe.RateLimitError as exc:
            if attempt >= retries:
                raise
            delay = backoff_delay(attempt, backoff, 60.0, retry_after(exc))
            log.info("Stripe rate limited retrieving %s; every request of the account waits %.2f s", path, delay)
            budget.hold_off(delay, slow_seconds)
            if not budget.enabled:
                sleep(delay)
        except stripe.InvalidRequestError as exc:
            if getattr(exc, "code", None) == "resource_missing":
                return None
            raise
    raise RuntimeError("unreachable")  # pragma: no cover - the loop returns or raises
