"""One request budget per Stripe account and mode, shared through Redis by every worker and job.

Stripe allows 100 requests a second in live mode and 25 in test mode, per account; above that it
answers 429. Customer retrieves for webhook events and the historical import's list pages draw from
the same budget, so together they stay under the limit however many workers run.

Decisions:
- A token bucket kept as one "theoretical arrival time" in Redis (GCRA): a request takes a slot only
  when one is free now (`1/rate` after the previous one; up to `burst` at once after a quiet spell),
  else it sleeps until one may be and asks again. A slot is taken at the moment the request goes, so
  threads that wake late on a busy CPU cannot bunch up: in any second at most `rate + burst` start. Defaults: 80% of
  Stripe's limit (STRIPE_BUDGET_LIVE=80, STRIPE_BUDGET_TEST=20) and a burst of a tenth of a
  second's worth (STRIPE_BUDGET_BURST=0.1: 8 live, 2 test), so even a burst stays under the limit
  and the rest is left for the account's own dashboard and other integrations. 0 turns it off.
- After a 429, `hold_off(seconds)` stops every request of the account for that long (a separate
  key, so the burst allowance cannot cut the pause short), then the rate stays halved for
  STRIPE_BUDGET_SLOW_SECONDS, so a limit we misjudged (another integration using the same account)
  is not hit again at once.
- The historical import also draws from two more buckets (`import_pacer`): one per list endpoint
  (STRIPE_BUDGET_LIST, 20/s: Stripe allows about 25 on one list; paced evenly at 95% of it, so a
  request that wakes late cannot make one second hold 21) and one for every import of the
  account together (BACKFILL_BUDGET_SHARE of the account's rate), so webhook processing's customer
  retrieves always keep the rest. A 429 naming `endpoint-rate` in Stripe-Rate-Limited-Reason
  slows that endpoint; any other slows the whole account.
- One Lua script does the arithmetic on Redis's own clock, so workers on other machines agree.
  Redis unreachable: the same arithmetic in this process, so one worker still keeps its pace.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from math import ceil

import stripe

log = logging.getLogger(__name__)

RETRY_AFTER_CAP = 600.0
ENDPOINT_MARGIN = 0.95  # a list endpoint is paced at 95% of its budget, evenly

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local hold = tonumber(ARGV[3])
local slow = tonumber(ARGV[4])
if hold > 0 then
  local until_ms = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now + hold > until_ms then
    redis.call('SET', KEYS[2], now + hold, 'PX', hold + 1000)
  end
  if slow > 0 then
    redis.call('SET', KEYS[3], '1', 'PX', hold + slow)
  end
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  interval = interval * 2
  tolerance = 0
end
local held = tonumber(redis.call('GET', KEYS[2]) or '0')
if held > now then
  return held - now
end
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local allow_at = tat - tolerance
if allow_at > now then
  return allow_at - now
end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 60000)
return 0
"""


def account_key(account) -> str:
    """The budget's key: one per Stripe account and mode, as Stripe counts."""
    return f"{account.stripe_account_id}:{'live' if account.livemode else 'test'}"


class Budget:
    """Requests per second for one Stripe account and mode; `wait()` before every request."""

    def __init__(self, redis, key: str, per_second: float, burst_seconds: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.key = f"stripe-sync:budget:{key}"
        self.interval_ms = int(ceil(1000.0 / per_second)) if per_second and per_second > 0 else 0
        burst = max(1, int(per_second * burst_seconds)) if self.interval_ms else 1
        self.tolerance_ms = (burst - 1) * self.interval_ms
        self.sleep = sleep
        self._script = redis.register_script(_SCRIPT) if redis is not None and self.interval_ms else None
        self._local_tat = 0.0
        self._local_hold = 0.0
        self._local_slow = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when the rate is 0: requests are not paced (nor held after a 429)."""
        return bool(self.interval_ms)

    def wait(self) -> float:
        """Block until a slot is free and take it; returns how long it waited."""
        if not self.interval_ms:
            return 0.0
        waited = 0.0
        while True:
            delay = self._reserve(0)
            if delay <= 0:
                return waited
            self.sleep(delay)
            waited += delay

    def hold_off(self, seconds: float, slow_seconds: float = 0.0) -> None:
        """After a 429: no request of this budget starts for `seconds`, then half the rate for `slow_seconds`."""
        if self.interval_ms and seconds > 0:
            self._reserve(max(1, int(seconds * 1000)), max(0, int(slow_seconds * 1000)))

    def _reserve(self, hold_ms: int, slow_ms: int = 0) -> float:
        """0 when a slot was free and is now taken, else the seconds until one may be (Redis, or the same
        computed locally when Redis is away)."""
        from webapp.stripe_sync.queue.enqueue import REDIS_DOWN

        if self._script is not None:
            try:
                return int(self._script(keys=[self.key, self.key + ":hold", self.key + ":slow"],
                                        args=[self.interval_ms, self.tolerance_ms, hold_ms, slow_ms])) / 1000.0
            except REDIS_DOWN as exc:
                log.warning("Stripe request budget: Redis unavailable (%s); pacing requests in this process",
                            type(exc).__name__)
        with self._lock:
            now = time.monotonic()
            if hold_ms:
                self._local_hold = max(self._local_hold, now + hold_ms / 1000.0)
                self._local_slow = max(self._local_slow, now + (hold_ms + slow_ms) / 1000.0)
                return 0.0
            if self._local_hold > now:
                return self._local_hold - now
            slow = now < self._local_slow
            interval = self.interval_ms * (2 if slow else 1) / 1000.0
            tat = max(self._local_tat, now)
            allow_at = tat - (0 if slow else self.tolerance_ms / 1000.0)
            if allow_at > now:
                return allow_at - now
            self._local_tat = tat + interval
            return 0.0


class Pacer:
    """Several budgets a request must all wait for (the import's: its list endpoint, every import of the
    account, the account); a 429 is charged to the one Stripe names."""

    def __init__(self, account: Budget, *others: Budget, endpoint: Budget | None = None, slow_seconds: float = 0.0):
        self.account, self.endpoint, self.slow_seconds = account, endpoint, slow_seconds
        self.budgets = [b for b in (endpoint, *others, account) if b is not None]

    @property
    def enabled(self) -> bool:
        """Paced at all."""
        return any(b.enabled for b in self.budgets)

    def wait(self) -> float:
        """Wait for a slot in every budget in turn."""
        return sum(b.wait() for b in self.budgets)

    def hold_off(self, seconds: float, reason: str | None = None) -> None:
        """After a 429: pause and slow the endpoint when Stripe said `endpoint-…`, else the whole account."""
        target = self.endpoint if self.endpoint is not None and (reason or "").startswith("endpoint") \
            else self.account
        target.hold_off(seconds, self.slow_seconds)


def _redis():
    """The app's Redis, or None when none is configured (pace within this process)."""
    from webapp.redis_queue import get_redis

    try:
        return get_redis()
    except Exception:  # noqa: BLE001 - no Redis configured
        return None


def account_rate(account) -> float:
    """The account's requests per second (call inside the app context)."""
    from webapp.tunables import setting

    return float(setting("STRIPE_BUDGET_LIVE" if account.livemode else "STRIPE_BUDGET_TEST") or 0)


def budget_for(account, sleep: Callable[[float], None] = time.sleep) -> Budget:
    """The account's budget with the configured rate (call inside the app context)."""
    from webapp.tunables import setting

    return Budget(_redis(), account_key(account), account_rate(account), float(setting("STRIPE_BUDGET_BURST") or 0),
                  sleep)


def import_pacer(account, api_path: str, sleep: Callable[[float], None] = time.sleep) -> Pacer:
    """What one import's list request waits for: its endpoint's share, the imports' share, the account."""
    from webapp.tunables import setting

    redis, burst, key = _redis(), float(setting("STRIPE_BUDGET_BURST") or 0), account_key(account)
    rate = account_rate(account)
    if not rate:
        return Pacer(Budget(None, key, 0))
    share = rate * float(setting("BACKFILL_BUDGET_SHARE") or 1)
    imports = Budget(redis, f"{key}:imports", share, burst, sleep)
    # No burst on a list, and a twentieth of margin: a request that wakes late (a busy CPU) must not
    # bring a second into the same second as the next one, or the list would see one more than its budget.
    endpoint = Budget(redis, f"{key}:list:{api_path}", float(setting("STRIPE_BUDGET_LIST") or 0) * ENDPOINT_MARGIN,
                      0.0, sleep)
    return Pacer(budget_for(account, sleep), imports, endpoint=endpoint,
                 slow_seconds=float(setting("STRIPE_BUDGET_SLOW_SECONDS") or 0))


# --- what a 429 says ----------------------------------------------------------------------------

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


def limited_reason(exc: stripe.StripeError) -> str | None:
    """Stripe-Rate-Limited-Reason (global-rate, endpoint-rate, global-concurrency, …), if sent."""
    return _header(exc, "Stripe-Rate-Limited-Reason")


def should_retry(exc: stripe.StripeError) -> bool | None:
    """Stripe-Should-Retry as a boolean; None when Stripe gave no hint."""
    raw = _header(exc, "Stripe-Should-Retry")
    if raw is None:
        return None
    return raw.strip().lower() == "true"
