"""Reading a resource's history from Stripe: pages of 100, newest first, within the rate limit.

Decisions:
- One page at a time with `starting_after`, so memory holds one page whatever the account's size.
  Pages are requested through the SDK (`StripeClient.raw_request` on the list's path: the same
  retries, timeouts and error classes as `client.v1.customers.list`) but read as plain JSON: building
  a StripeObject per record, only to turn it back into a dict, took a fifth of the import's time.
- A rate limiter shared through Redis by every import of the same Stripe account and mode spaces
  list requests evenly at BACKFILL_MAX_RPS_* (0 turns it off); Redis unreachable falls back to
  spacing within this process. Webhook processing is not counted: the headroom under Stripe's 25/100
  read requests a second is left for it.
- A plain 429 (which the SDK does not retry) backs off with jittered exponential delays, at least
  Stripe's Retry-After when sent, and holds every import of the account for that long. A response
  with `Stripe-Should-Retry: false` is not retried. Connection errors and 5xx are retried by the
  SDK first, then backed off here a few times more.
- Non-customer lists ask Stripe to expand `data.customer`, so a page needs one request instead of
  one more per customer. If Stripe refuses the expansion, the import falls back to fetching each
  linked customer once (an LRU per job), through the same limiter.
- If the object the cursor names has gone (deleted since the last page), the next page is asked
  for by `created <= cursor's created` instead; records seen again are passed over as duplicates.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from math import ceil

import stripe

from webapp.stripe_sync.apply.customer import customer_fetcher
from webapp.stripe_sync.events import resource as resource_spec

log = logging.getLogger(__name__)

RETRY_AFTER_CAP = 600.0

_LIMITER_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local hold = tonumber(ARGV[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold > 0 then
  if now + hold > nxt then
    redis.call('SET', KEYS[1], now + hold, 'PX', hold + 60000)
  end
  return 0
end
local slot = math.max(now, nxt)
redis.call('SET', KEYS[1], slot + interval, 'PX', slot + interval - now + 60000)
return slot - now
"""


class RateLimiter:
    """Even spacing of requests for one Stripe account and mode, shared through Redis."""

    def __init__(self, redis, account_key: str, per_second: float, sleep: Callable[[float], None] = time.sleep):
        self.key = f"stripe-sync:backfill-rate:{account_key}"
        self.interval_ms = int(ceil(1000.0 / per_second)) if per_second and per_second > 0 else 0
        self.sleep = sleep
        self._redis = redis
        self._script = redis.register_script(_LIMITER_SCRIPT) if redis is not None and self.interval_ms else None
        self._local_next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this request's slot; returns how long it waited."""
        if not self.interval_ms:
            return 0.0
        delay = self._reserve(0)
        if delay > 0:
            self.sleep(delay)
        return delay

    def hold_off(self, seconds: float) -> None:
        """After a 429: no import of this account sends anything for this long."""
        if self.interval_ms:
            self._reserve(int(seconds * 1000))

    def _reserve(self, hold_ms: int) -> float:
        """Seconds until the reserved slot (Redis), or the same computed locally when Redis is away."""
        from webapp.stripe_sync.queue.enqueue import REDIS_DOWN

        if self._script is not None:
            try:
                return int(self._script(keys=[self.key], args=[self.interval_ms, hold_ms])) / 1000.0
            except REDIS_DOWN as exc:
                log.warning("Backfill rate limiter: Redis unavailable (%s); spacing requests locally",
                            type(exc).__name__)
        with self._lock:
            now = time.monotonic()
            if hold_ms:
                self._local_next = max(self._local_next, now + hold_ms / 1000.0)
                return 0.0
            slot = max(now, self._local_next)
            self._local_next = slot + self.interval_ms / 1000.0
            return slot - now


def backoff_delay(attempt: int, base: float, cap: float, floor: float | None = None,
                  uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Jittered exponential delay for the n-th retry (0-based), never below Stripe's Retry-After."""
    delay = min(cap, base * (2 ** attempt)) * uniform(0.5, 1.0)
    return max(delay, min(floor, RETRY_AFTER_CAP)) if floor else delay


def _header(exc: stripe.StripeError, name: str) -> str | None:
    """A response header of an SDK error, case-insensitively."""
    headers = getattr(exc, "headers", None) or {}
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def retry_after(exc: stripe.StripeError) -> float | None:
    """Stripe's Retry-After in seconds (a number or an HTTP date), if it sent one."""
    raw = _header(exc, "Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def should_retry(exc: stripe.StripeError) -> bool | None:
    """Stripe-Should-Retry as a boolean; None when Stripe gave no hint."""
    raw = _header(exc, "Stripe-Should-Retry")
    if raw is None:
        return None
    return raw.strip().lower() == "true"


class BackfillStop(Exception):
    """Raised from a wait when the import must stop (cancelled, superseded, resource removed)."""


class RateLimitedTooLong(Exception):
    """Stripe kept answering 429; the import fails and can be resumed later."""


class Waiter:
    """What the reader calls while it backs off; the importer records the pause and checks for a cancel."""

    def rate_limited(self, delay: float) -> None:  # pragma: no cover - interface
        """Wait `delay` seconds after a 429, showing "paused by rate limit"."""
        raise NotImplementedError

    def wait(self, delay: float) -> None:  # pragma: no cover - interface
        """Wait `delay` seconds after a transient error."""
        raise NotImplementedError


@dataclass
class Page:
    """One list page as plain dicts, newest first."""

    objects: list[dict]
    has_more: bool


@dataclass
class ReaderSettings:
    """The retry knobs, read from the app config by the caller."""

    backoff_base: float = 1.0
    backoff_max: float = 60.0
    rate_limit_retries: int = 10
    error_retries: int = 5


class HistoryReader:
    """Pages of one resource kind's list API for one account."""

    def __init__(self, client: stripe.StripeClient, kind: str, limiter: RateLimiter, waiter: Waiter,
                 settings: ReaderSettings):
        spec = resource_spec(kind)
        self.kind = kind
        self.history = spec.history
        self.request = lambda params: client.raw_request("get", spec.history.api_path, **params).data
        self.limiter = limiter
        self.waiter = waiter
        self.settings = settings
        self.expand = kind != "customer"
        self.cursor_lost = False
        self.requests = 0

    def _params(self, cursor: str | None, cursor_created: int | None) -> dict:
        """List params for the page after `cursor`."""
        params = self.history.list_params()
        if cursor and self.cursor_lost and cursor_created is not None:
            params["created"] = {"lte": int(cursor_created)}
        elif cursor:
            params["starting_after"] = cursor
        if self.expand:
            params["expand"] = ["data.customer"]
        return params

    def fetch(self, cursor: str | None, cursor_created: int | None) -> Page:
        """The page after `cursor` (the first page when None), retrying what Stripe says can be retried."""
        limited = failed = 0
        s = self.settings
        while True:
            self.limiter.wait()
            self.requests += 1
            try:
                data = self.request(self._params(cursor, cursor_created))
            except stripe.RateLimitError as exc:
                if should_retry(exc) is False:
                    raise
                limited += 1
                if limited > s.rate_limit_retries:
                    raise RateLimitedTooLong(
                        f"Stripe answered {limited} requests in a row with 429 (rate limited)") from exc
                delay = backoff_delay(limited - 1, s.backoff_base, s.backoff_max, retry_after(exc))
                log.info("Backfill of %s: Stripe rate limited the list request; pausing %.2f s", self.kind, delay)
                self.limiter.hold_off(delay)
                self.waiter.rate_limited(delay)
                continue
            except stripe.InvalidRequestError as exc:
                param = getattr(exc, "param", None)
                if (getattr(exc, "code", None) == "resource_missing" and param == "starting_after"
                        and cursor_created is not None and not self.cursor_lost):
                    log.warning("Backfill of %s: Stripe no longer has %s; continuing from its created time",
                                self.kind, cursor)
                    self.cursor_lost = True
                    continue
                if param == "expand" and self.expand:
                    log.info("Backfill of %s: Stripe refused to expand customers; fetching them one by one",
                             self.kind)
                    self.expand = False
                    continue
                raise
            except (stripe.APIConnectionError, stripe.APIError) as exc:
                if should_retry(exc) is False:
                    raise
                failed += 1
                if failed > s.error_retries:
                    raise
                delay = backoff_delay(failed - 1, s.backoff_base, s.backoff_max, retry_after(exc))
                log.info("Backfill of %s: %s; retrying in %.2f s", self.kind, type(exc).__name__, delay)
                self.waiter.wait(delay)
                continue
            self.cursor_lost = False
            return Page(objects=list(data.get("data") or []), has_more=bool(data.get("has_more")))


class CustomerLookup:
    """fetch_customer for resolve_customer_data, remembered per job and paced by the limiter."""

    def __init__(self, account, limiter: RateLimiter, size: int):
        self.inner = customer_fetcher(account)
        self.limiter = limiter
        self.size = max(1, int(size))
        self.cache: OrderedDict[str, dict | None] = OrderedDict()

    @property
    def usable(self) -> bool:
        """False when the account's key was erased: records use their own details."""
        return self.inner is not None

    def __call__(self, customer_id: str) -> dict | None:
        """The customer (None when Stripe no longer has it); errors propagate as for a webhook."""
        if customer_id in self.cache:
            self.cache.move_to_end(customer_id)
            return self.cache[customer_id]
        self.limiter.wait()
        value = self.inner(customer_id)
        self.cache[customer_id] = value
        if len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return value
