"""Reading a resource's history from Stripe: pages of 100, newest first, within the rate limit.

Decisions:
- One page at a time with `starting_after`, so memory holds one page whatever the account's size.
  Pages are requested through the SDK (`StripeClient.raw_request` on the list's path: the same
  retries, timeouts and error classes as `client.v1.customers.list`) but read as plain JSON: building
  a StripeObject per record, only to turn it back into a dict, took a fifth of the import's time.
- Every list request draws from the account's request budget (stripe_sync/budget.py), shared
  through Redis with every other import and with webhook processing's customer retrieves.
- A plain 429 (which the SDK does not retry) backs off with jittered exponential delays, at least
  Stripe's Retry-After when sent, and holds every import of the account for that long. A response
  with `Stripe-Should-Retry: false` is not retried. Connection errors and 5xx are retried by the
  SDK first, then backed off here a few times more.
- Non-customer lists ask Stripe to expand `data.customer`, so a page needs one request instead of
  one more per customer. If Stripe refuses the expansion, the page's linked customers are resolved
  like a webhook batch's (apply/prepare.py): remembered ones reused, the rest retrieved in parallel
  within the same budget.
- A page may be bounded to a window of `created` (`created[gte]`, `created[lt]`): the importer reads
  several windows at once, each with its own cursor (importer.py).
- If the object the cursor names has gone (deleted since the last page), the next page is asked
  for by `created <= cursor's created` instead; records seen again are passed over as duplicates.
- A 429 is charged to the budget Stripe's Stripe-Rate-Limited-Reason names (budget.Pacer): the list
  endpoint's or the account's, which then pauses and runs at half rate for a while.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe

from webapp.stripe_sync.budget import Budget, Pacer, backoff_delay, limited_reason, retry_after, should_retry
from webapp.stripe_sync.events import resource as resource_spec

log = logging.getLogger(__name__)

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
    """The retry knobs of reading Stripe in the background (this import, and event recovery)."""

    backoff_base: float = 1.0
    backoff_max: float = 60.0
    rate_limit_retries: int = 10
    error_retries: int = 5

    @classmethod
    def from_config(cls) -> "ReaderSettings":
        """The BACKFILL_* tunables (call inside the app context)."""
        from webapp.tunables import setting

        return cls(backoff_base=float(setting("BACKFILL_BACKOFF_BASE")),
                   backoff_max=float(setting("BACKFILL_BACKOFF_MAX")),
                   rate_limit_retries=int(setting("BACKFILL_RATE_LIMIT_RETRIES")),
                   error_retries=int(setting("BACKFILL_ERROR_RETRIES")))


class HistoryReader:
    """Pages of one resource kind's list API for one account."""

    def __init__(self, client: stripe.StripeClient, kind: str, limiter: Budget | Pacer, waiter: Waiter,
                 settings: ReaderSettings):
        spec = resource_spec(kind)
        self.kind = kind
        self.history = spec.history
        self.request = lambda params: client.raw_request("get", spec.history.api_path, **params).data
        self.limiter = limiter if isinstance(limiter, Pacer) else Pacer(limiter)
        self.waiter = waiter
        self.settings = settings
        self.expand = kind != "customer"
        self.cursor_lost = False
        self.requests = 0

    def _params(self, cursor: str | None, cursor_created: int | None, lo: int | None = None,
                hi: int | None = None) -> dict:
        """List params for the page after `cursor`, within [lo, hi) of `created` when given."""
        params = self.history.list_params()
        created = {}
        if lo is not None:
            created["gte"] = int(lo)
        if cursor and self.cursor_lost and cursor_created is not None:
            created["lte"] = int(cursor_created)
        elif cursor:
            params["starting_after"] = cursor
        if hi is not None and "lte" not in created:
            created["lt"] = int(hi)
        if created:
            params["created"] = created
        if self.expand:
            params["expand"] = ["data.customer"]
        return params

    def fetch(self, cursor: str | None, cursor_created: int | None, lo: int | None = None,
              hi: int | None = None) -> Page:
        """The page after `cursor` (the first page when None), retrying what Stripe says can be retried."""
        limited = failed = 0
        s = self.settings
        while True:
            self.limiter.wait()
            self.requests += 1
            try:
                data = self.request(self._params(cursor, cursor_created, lo, hi))
            except stripe.RateLimitError as exc:
                if should_retry(exc) is False:
                    raise
                limited += 1
                if limited > s.rate_limit_retries:
                    raise RateLimitedTooLong(
                        f"Stripe answered {limited} requests in a row with 429 (rate limited)") from exc
                delay = backoff_delay(limited - 1, s.backoff_base, s.backoff_max, retry_after(exc))
                reason = limited_reason(exc)
                log.info("Backfill of %s: Stripe rate limited the list request (%s); pausing %.2f s", self.kind,
                         reason or "no reason given", delay)
                self.limiter.hold_off(delay, reason)
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
