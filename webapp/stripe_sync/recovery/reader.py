"""Reading an account's events from Stripe's Events API, oldest first, within the request budget.

Stripe lists newest first. To hand events over oldest first without holding a whole backlog in
memory, the walk anchors on the newest event before the start (`created[lt]`, limit 1) and then
pages forward with `ending_before`, each page the 100 events just newer than the last one, which
Stripe returns newest first and the walk reverses. When no event precedes the start (a new account,
or the start is older than Stripe keeps), the range is read newest first and handed over reversed.

Every request waits for the account's budget, its endpoint's share and the imports' share
(budget.import_pacer): recovery is background reading like the historical import, so webhook
processing's customer retrieves keep the rest. A 429 pauses the budget Stripe-Rate-Limited-Reason
names and is retried with jittered backoff; connection errors and 5xx, after the SDK's own retries,
a few times more.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import stripe

from webapp.stripe_sync.budget import Pacer, backoff_delay, limited_reason, retry_after, should_retry
from webapp.stripe_sync.history.reader import ReaderSettings

log = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
PAGE_SIZE = 100
MAX_TYPES = 20  # Stripe's limit on `types[]`


class RateLimitedTooLong(Exception):
    """Stripe kept answering 429: the check ends and the next one continues from the checkpoint."""


class EventsReader:
    """Pages of one account's events of the given types."""

    def __init__(self, client: stripe.StripeClient, types: list[str], pacer: Pacer, settings: ReaderSettings,
                 sleep: Callable[[float], None] = time.sleep):
        if not types or len(types) > MAX_TYPES:
            raise ValueError(f"between 1 and {MAX_TYPES} event types, not {len(types)}")
        self.request = lambda params: client.raw_request("get", EVENTS_PATH, **params).data
        self.types = sorted(types)
        self.pacer = pacer
        self.settings = settings
        self.sleep = sleep
        self.requests = 0
        self.rate_limited = 0

    def _get(self, params: dict) -> dict:
        """One list request, retried as Stripe says it may be."""
        limited = failed = 0
        s = self.settings
        params = {"types": self.types, **params}
        while True:
            self.pacer.wait()
            self.requests += 1
            try:
                return self.request(params)
            except stripe.RateLimitError as exc:
                if should_retry(exc) is False:
                    raise
                limited += 1
                self.rate_limited += 1
                if limited > s.rate_limit_retries:
                    raise RateLimitedTooLong(
                        f"Stripe answered {limited} requests in a row with 429 (rate limited)") from exc
                delay = backoff_delay(limited - 1, s.backoff_base, s.backoff_max, retry_after(exc))
                log.info("Event recovery: Stripe rate limited /v1/events (%s); pausing %.2f s",
                         limited_reason(exc) or "no reason given", delay)
                self.pacer.hold_off(delay, limited_reason(exc))
                if not self.pacer.enabled:
                    self.sleep(delay)
            except (stripe.APIConnectionError, stripe.APIError) as exc:
                if should_retry(exc) is False:
                    raise
                failed += 1
                if failed > s.error_retries:
                    raise
                delay = backoff_delay(failed - 1, s.backoff_base, s.backoff_max, retry_after(exc))
                log.info("Event recovery: %s; retrying in %.2f s", type(exc).__name__, delay)
                self.sleep(delay)

    def walk(self, since: int) -> Iterator[list[dict]]:
        """Pages of the events created at or after `since`, oldest first, each page oldest first."""
        anchor = self._get({"created": {"lt": int(since)}, "limit": 1}).get("data") or []
        if not anchor:
            yield from self._read_all(since)
            return
        cursor = anchor[0]["id"]
        while True:
            page = self._get({"ending_before": cursor, "limit": PAGE_SIZE})
            data = list(page.get("data") or [])
            if not data:
                return
            yield data[::-1]
            if not page.get("has_more"):
                return
            cursor = data[0]["id"]

    def _read_all(self, since: int) -> Iterator[list[dict]]:
        """No anchor: read the range newest first, then hand it over oldest first."""
        collected: list[dict] = []
        cursor = None
        while True:
            params = {"created": {"gte": int(since)}, "limit": PAGE_SIZE}
            if cursor:
                params["starting_after"] = cursor
            page = self._get(params)
            data = list(page.get("data") or [])
            collected.extend(data)
            if not data or not page.get("has_more"):
                break
            cursor = data[-1]["id"]
        collected.reverse()
        for start in range(0, len(collected), PAGE_SIZE):
            yield collected[start:start + PAGE_SIZE]
