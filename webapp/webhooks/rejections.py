"""Rejected Stripe deliveries made visible: a sync-log row (outcome "rejected") and a count on the
resource, saying when and why in plain words, so a rolled secret or a body-changing proxy is seen on
the Stripe page and not only in the server log.

Decisions:
- A row holds the reason and, for an unknown URL, a 6-character token prefix: never the body, the
  signature header or the whole token. A Stripe event id only from a body whose signature verified.
- Flood protection: at most one row per (resource, or every unknown URL together; reason) per
  RATE_SECONDS, and the next row says how many were left out. The memory is a dict under a lock,
  per process (per app, as intake's cache): N processes write at most N rows per window and key,
  which bounds the log as well, without a Redis round trip or a shared failure on this path. Keys
  are resources × reasons (every unknown token shares one), so random URLs cannot grow the dict.
- Left-out deliveries are reported, and counted on the resource, by the next row of their key; a
  burst that simply stops is reported by none (the server log has each one).
- Written on intake's own connection (lock polling on SQLite for at most WRITE_WAIT_SECONDS, far
  less than an event's wait: a refusal is not worth holding Stripe's request) in one transaction with
  the counter, which is synclog.count's upsert on that connection (synclog.count itself runs on the
  app's session). A failed write is logged and dropped, its window still taken so a failing
  database is not asked again on every refusal; the refusal goes out regardless.
"""
import logging
import math
import os
import re
import threading
import time

from flask import current_app
from sqlalchemy import insert

from webapp.stripe_sync.models import COUNTER_SHARDS, OUTCOME_REJECTED, ResourceCounter, SyncLog
from webapp.timeutil import utcnow
from webapp.tunables import setting
from webapp.upsert import dialect_insert

log = logging.getLogger(__name__)

RATE_SECONDS = 60.0  # one row per key per this long, per process
WRITE_WAIT_SECONDS = 1.0  # how long a rejection's row may wait for SQLite's write lock before it is dropped
MAX_KEYS = 10_000  # a safety net: keys are resources × reasons, far fewer
EVENT_TYPE = "rejected delivery"
UNKNOWN = "unknown"

BAD_SIGNATURE = "bad_signature"
TOO_OLD = "too_old"
IN_FUTURE = "in_future"
MALFORMED_HEADER = "malformed_header"
NO_HEADER = "no_header"
NO_SECRET = "no_secret"
NOT_UTF8 = "not_utf8"
NOT_AN_EVENT = "not_an_event"
UNKNOWN_URL = "unknown_url"
DISCONNECTED = "disconnected"
TOO_LARGE = "too_large"

_REASONS = {
    BAD_SIGNATURE: "Bad signature: the signing secret may have been rolled in Stripe, or a proxy changed the body",
    TOO_OLD: "Timestamp too old (over {tolerance}): a replay, or this server's clock is off",
    IN_FUTURE: "Timestamp in the future (over {tolerance} ahead): this server's clock is off, or the delivery "
               "is forged",
    MALFORMED_HEADER: "Malformed Stripe-Signature header: the request is not from Stripe, or a proxy changed "
                      "the header",
    NO_HEADER: "Missing Stripe-Signature header: the request is not from Stripe, or a proxy dropped the header",
    NO_SECRET: "No signing secret: this resource has none active to check deliveries with; reconnect it",
    NOT_UTF8: "Not UTF-8: the body is not a Stripe event, or a proxy changed it",
    NOT_AN_EVENT: "Not a Stripe event: {detail}",
    UNKNOWN_URL: "Unknown webhook URL (token {token}): no resource has it; an endpoint left in Stripe after a "
                 "removal, or a wrong URL",
    DISCONNECTED: "Resource disconnected: Stripe still sends to its URL; delete that endpoint in Stripe or "
                  "reconnect the resource",
    TOO_LARGE: "Body too large (over {detail}): not a Stripe event",
}
_TOKEN_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class Limiter:
    """Per key, when its last row was written and how many rejections were left out since."""

    def __init__(self):
        self._lock = threading.Lock()
        self._keys: dict[tuple, list] = {}  # key → [monotonic time of the last row, left out since]

    def admit(self, key: tuple, now: float) -> tuple[int, float] | None:
        """(left out since the previous row, seconds since it) when a row is due, else None, so a flood is one row."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and now - entry[0] < RATE_SECONDS:
                entry[1] += 1
                return None
            if entry is None and len(self._keys) >= MAX_KEYS:
                self._keys = {k: e for k, e in self._keys.items() if now - e[0] < RATE_SECONDS}
            self._keys[key] = [now, 0]
            return (entry[1], now - entry[0]) if entry else (0, 0.0)


def _limiter() -> Limiter:
    """Per app, so test apps never share a window; in production that is per process."""
    return current_app.extensions.setdefault("webhook_rejections", Limiter())


def note(write_with, why: str, resource, token: str = "", detail: str = "", event_id: str | None = None) -> None:
    """Log a refusal where a marketer sees it; never raises, so the refusal is answered whatever happens here."""
    # resource: intake's ResourceInfo (None for an unknown URL); write_with: intake's lock-polling writer.
    resource_id = resource.id if resource is not None else None
    try:
        admitted = _limiter().admit((resource_id or UNKNOWN, why), time.monotonic())
        if admitted is None:
            return
        row = rejected_row(why, resource_id, resource.account_id if resource is not None else None, token,
                           detail, event_id, *admitted)
        write_with(lambda conn: _insert(conn, row, 1 + admitted[0]), WRITE_WAIT_SECONDS)
    except Exception:  # noqa: BLE001 (the log row must never cost the delivery its answer)
        log.warning("Rejected webhook delivery (%s) for resource %s not written to the sync log", why,
                    resource_id or UNKNOWN, exc_info=True)


def rejected_row(why: str, resource_id: int | None, account_id: int | None, token: str, detail: str,
                 event_id: str | None, left_out: int = 0, since: float = 0.0) -> dict:
    """The sync-log row: what a marketer reads, nothing of what was sent."""
    return dict(
        created_at=utcnow(), account_id=account_id, resource_id=resource_id, event_row_id=None,
        stripe_event_id=event_id, event_type=EVENT_TYPE, contact_id=None, outcome=OUTCOME_REJECTED,
        reason=reason(why, token, detail) + _left_out(left_out, since), detail=None, attempt=0, duration_ms=0,
        historical=False, recovered=False,
    )


def reason(why: str, token: str = "", detail: str = "") -> str:
    """The reason in plain words; a token shows only as its first 6 URL-safe characters."""
    prefix = _TOKEN_CHARS.sub("?", token[:6]) + "…"
    return _REASONS[why].format(tolerance=_span(int(setting("WEBHOOK_TOLERANCE"))), token=prefix,
                                detail=detail[:200])


def _span(seconds: int) -> str:
    """300 → "5 minutes", 90 → "90 seconds"."""
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def size_text(limit: int) -> str:
    """1048576 → "1 MB", 5000 → "5,000 bytes"."""
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MB"
    return f"{limit:,} bytes"


def _left_out(count: int, since: float) -> str:
    """" (12 more like this in the last minute)" for the rejections no row was written for."""
    if count <= 0:
        return ""
    minutes = max(1, math.ceil(since / 60))
    span = "minute" if minutes == 1 else f"{minutes} minutes"
    return f" ({count} more like this in the last {span})"


def _insert(conn, row: dict, deliveries: int) -> None:
    """Row and counter in one transaction, so the page's count always matches the log."""
    # synclog.count's upsert, issued on intake's connection (synclog.count runs on the app's session); the
    # counter rises by every delivery the row reports, left-out ones included.
    conn.execute(insert(SyncLog.__table__), row)
    if row["resource_id"]:
        table = ResourceCounter.__table__
        stmt = dialect_insert(table).values(resource_id=row["resource_id"], outcome=OUTCOME_REJECTED,
                                            shard=os.getpid() % COUNTER_SHARDS, count=deliveries)
        conn.execute(stmt.on_conflict_do_update(index_elements=["resource_id", "outcome", "shard"],
                                                set_={"count": table.c["count"] + deliveries}))
