"""Stripe webhook intake: verify, record, enqueue. Nothing else.

The hot path is one SELECT (skipped while the resource is cached), one INSERT and one Redis round
trip (the row id joins the pending set a drain job works through, queue.enqueue.queue_events), so
Stripe gets its 2xx in milliseconds and every slow or fallible step happens in the worker.

Decisions:
- The row is inserted already marked "queued" and the job is enqueued after the commit; if Redis
  is down the row is set back to "received" for the sweep. A crash between commit and enqueue
  leaves a "queued" row without a job, which the sweep also finds, so nothing is lost either way.
- Decrypted signing secrets are cached per process for WEBHOOK_CACHE_SECONDS; a signature that
  fails against cached secrets is checked once more against fresh ones, so a rotation is seen at
  once. Disconnecting takes effect within the cache lifetime.
- Only the event id, type and a token prefix are logged: never the secret, never the payload.
- Every refusal also becomes a "rejected" sync-log row and a count on its resource, rate-limited and
  never failing the reply (webhooks/rejections.py).
- The fast lane asks `endpoint(token)` before reading the body, then hands `deliver` at most
  MAX_CONTENT_LENGTH bytes. JSON nested past what the parser takes is a 400 like any non-event; a
  payload spelling NUL (\\u0000) is stored re-serialised without it (stripe_sync/nul.py).
"""
import json
import logging
import time
from dataclasses import dataclass, field

import stripe
from flask import current_app
from sqlalchemy import create_engine, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload

from webapp.crypto import SecretUnreadable, decrypt
from webapp.extensions import db
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN, queue_events
from webapp.stripe_sync.events import events_for_resource, resource
from webapp.stripe_sync.models import (
    ACCOUNT_DISCONNECTED, EVENT_IGNORED, EVENT_QUEUED, EVENT_RECEIVED, OUTCOME_IGNORED,
    RESOURCE_DISCONNECTED, StripeEvent, StripeResource, SyncLog,
)
from webapp.stripe_sync.nul import json_text_without_nul
from webapp.tunables import setting
from webapp.timeutil import utcnow
from webapp.webhooks import rejections

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 64
LOCK_WAIT_SECONDS = 10  # as long as the app's SQLite busy timeout
LAST_EVENT_TOUCH_SECONDS = 5  # how stale resource.last_event_at may get, to spare a row lock per event
# A resource being removed still takes events: its endpoint may still exist in Stripe until the
# removal is confirmed, and nothing Stripe sends may be lost meanwhile.
CLOSED_STATUSES = {RESOURCE_DISCONNECTED}


@dataclass(frozen=True)
class Reply:
    """What the fast lane sends back: an HTTP status and a small JSON body."""

    status: int
    body: dict


@dataclass
class ResourceInfo:
    """The little intake needs about a resource, cacheable without holding ORM objects."""

    id: int
    account_id: int
    kind: str
    closed: bool
    secrets: list[str]
    events: frozenset[str]
    loaded_at: float
    touched_at: float = field(default=0.0)


def _cache() -> dict:
    """Per app, so test apps never see each other's resources."""
    return current_app.extensions.setdefault("webhook_resources", {})


def _load(token: str) -> ResourceInfo | None:
    """One query for the resource, its account and its secrets."""
    res = db.session.scalars(
        select(StripeResource)
        .options(joinedload(StripeResource.account), joinedload(StripeResource.secrets))
        .where(StripeResource.token == token)
    ).unique().first()
    if res is None:
        return None
    secrets = []
    for row in res.secrets:
        if not row.active:
            continue
        try:
            secrets.append(decrypt(row.secret_enc))
        except SecretUnreadable:
            log.error("Webhook secret %s of resource %s cannot be decrypted; check ENCRYPTION_KEY", row.id, res.id)
    last = res.last_event_at
    info = ResourceInfo(
        id=res.id, account_id=res.account_id, kind=res.kind,
        closed=res.status in CLOSED_STATUSES or res.account.status == ACCOUNT_DISCONNECTED,
        secrets=secrets, events=frozenset(events_for_resource(res.kind)), loaded_at=time.monotonic(),
        # Treat a recent last_event_at as a recent touch so a fresh process does not rewrite it at once.
        touched_at=time.monotonic() - ((utcnow() - last).total_seconds() if last else 1e9),
    )
    db.session.rollback()  # end the read so no SQLite snapshot is held into the insert
    return info


def _resource(token: str, fresh: bool = False) -> ResourceInfo | None:
    """Cached resource info, reloaded when stale or when asked."""
    cache = _cache()
    info = cache.get(token)
    ttl = float(setting("WEBHOOK_CACHE_SECONDS"))
    if fresh or info is None or time.monotonic() - info.loaded_at > ttl:
        previous = info
        info = _load(token)
        if info is None:
            cache.pop(token, None)
            return None
        if previous is not None:
            info.touched_at = max(info.touched_at, previous.touched_at)
        if ttl > 0:
            cache[token] = info
    return info


def forget(token: str | None = None) -> None:
    """Drop cached resource info (all of it when no token), e.g. after a disconnect or rotation."""
    if token is None:
        _cache().clear()
    else:
        _cache().pop(token, None)


class BadSignature(Exception):
    """The header does not verify with any active secret, or its timestamp is out of tolerance."""

    def __init__(self, message: str, why: str = rejections.BAD_SIGNATURE):
        super().__init__(message)
        self.why = why  # which plain-words reason the rejected log row gives


def _verify(text: str, header: str | None, secrets: list[str]) -> None:
    """Stripe's own verification against each active secret (a rotation keeps two active)."""
    if not header:
        raise BadSignature("missing Stripe-Signature header", rejections.NO_HEADER)
    if not secrets:
        raise BadSignature("the resource has no active signing secret", rejections.NO_SECRET)
    tolerance = int(setting("WEBHOOK_TOLERANCE"))
    messages = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError as exc:
            messages.append(str(getattr(exc, "user_message", None) or exc))
            continue
        # The SDK only rejects old timestamps; a signature dated far ahead is just as suspect.
        if _timestamp(header) > time.time() + tolerance:
            raise BadSignature("timestamp outside the tolerance zone (in the future)", rejections.IN_FUTURE)
        return
    # The SDK checks the timestamp only once a secret matched, so "tolerance" means a stale replay.
    if any("tolerance" in m for m in messages):
        raise BadSignature("timestamp outside the tolerance zone", rejections.TOO_OLD)
    if any("Unable to extract" in m or "expected scheme" in m for m in messages):
        raise BadSignature("malformed Stripe-Signature header", rejections.MALFORMED_HEADER)
    raise BadSignature("signature does not match")


def _timestamp(header: str) -> int:
    """The `t=` part of a header the SDK has already accepted."""
    for part in header.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "t":
            return int(value)
    return 0


class NotAnEvent(Exception):
    """The verified body is not a Stripe Event object."""

    def __init__(self, message: str, event_id: str | None = None):
        super().__init__(message)
        self.event_id = event_id  # a valid id the event did have, for the rejected log row


def parse_event(text: str) -> dict:
    """The envelope fields intake relies on, or NotAnEvent."""
    try:
        event = json.loads(text)
    except RecursionError:
        raise NotAnEvent("JSON nested too deep") from None
    except ValueError:
        raise NotAnEvent("body is not JSON") from None
    if not isinstance(event, dict):
        raise NotAnEvent("body is not a JSON object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    data = event.get("data")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        raise NotAnEvent("event has no id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        raise NotAnEvent("event has no type", event_id)
    if not isinstance(created, int) or isinstance(created, bool):
        raise NotAnEvent("event has no created timestamp", event_id)
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise NotAnEvent("event has no data.object", event_id)
    return event


def _without_nul(text: str) -> str:
    """The payload to store: as delivered, byte for byte, unless it holds a NUL character, which no
    database column may hold; then without it, so the stored event and all read from it have none."""
    try:
        cleaned = json_text_without_nul(text)
    except ValueError:
        return text  # not JSON: parse_event says so
    except RecursionError:
        raise NotAnEvent("JSON nested too deep") from None
    if cleaned is not text:
        log.info("NUL characters dropped from a Stripe event before storing it")
    return cleaned


def _short(token: str) -> str:
    """Enough of the URL token to tell resources apart in a log, not enough to post to it."""
    return token[:6] + "…"


def endpoint(token: str) -> ResourceInfo | Reply:
    """The resource a delivery is for, or the reply refusing it (unknown, disconnected): the fast lane
    asks before it reads the body, so a delivery to no endpoint costs no read at all."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        log.warning("Webhook for a malformed token rejected")
        return _refused(404, "unknown webhook endpoint", rejections.UNKNOWN_URL, None, token)
    info = _resource(token)
    if info is None:
        log.warning("Webhook for unknown token %s rejected", _short(token))
        return _refused(404, "unknown webhook endpoint", rejections.UNKNOWN_URL, None, token)
    if info.closed:
        # Checked fresh: a reconnect may have happened since the cache was filled.
        info = _resource(token, fresh=True)
        if info is None or info.closed:
            log.warning("Webhook for disconnected resource %s rejected", info.id if info else _short(token))
            why = rejections.DISCONNECTED if info else rejections.UNKNOWN_URL  # or removed meanwhile
            return _refused(410, "this resource is disconnected", why, info, token)
    return info


def too_large(token: str, limit: int, info: ResourceInfo | None = None) -> None:
    """Record a delivery the fast lane refused for its size (a 413), against its resource when known."""
    info = info or (_resource(token) if len(token) <= MAX_TOKEN_LENGTH else None)
    rejections.note(_write_with_lock_polling, rejections.TOO_LARGE, info, token, rejections.size_text(limit))


def _refused(status: int, error: str, why: str, info: ResourceInfo | None, token: str, detail: str = "",
             event_id: str | None = None) -> Reply:
    """The refusal Stripe sees, once it has its rejected sync-log row (which never fails it)."""
    rejections.note(_write_with_lock_polling, why, info, token, detail, event_id)
    return Reply(status, {"error": error})


def deliver(token: str, info: ResourceInfo, body: bytes, signature: str | None) -> Reply:
    """Verify, record and enqueue one delivery to the endpoint `endpoint(token)` found; the reply is what
    Stripe sees."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("Webhook for resource %s rejected: body is not UTF-8", info.id)
        return _refused(400, "body is not UTF-8", rejections.NOT_UTF8, info, token)
    try:
        try:
            _verify(text, signature, info.secrets)
        except BadSignature:
            if time.monotonic() - info.loaded_at < 0.5:
                raise
            info = _resource(token, fresh=True)  # maybe a secret was rotated since we cached
            if info is None:
                return _refused(404, "unknown webhook endpoint", rejections.UNKNOWN_URL, None, token)
            _verify(text, signature, info.secrets)
    except BadSignature as exc:
        log.warning("Webhook for resource %s rejected: %s", info.id, exc)
        return _refused(400, f"signature verification failed: {exc}", exc.why, info, token)
    try:
        text = _without_nul(text)
        event = parse_event(text)
    except NotAnEvent as exc:
        log.warning("Webhook for resource %s rejected: %s", info.id, exc)
        return _refused(400, f"not a Stripe event: {exc}", rejections.NOT_AN_EVENT, info, token, str(exc),
                        exc.event_id)
    return _record(info, event, text)


def _record(info: ResourceInfo, event: dict, text: str) -> Reply:
    """Insert the event once; enqueue it unless the resource does not subscribe to its type."""
    now = utcnow()
    subscribed = event["type"] in info.events
    values = dict(
        account_id=info.account_id, resource_id=info.id, stripe_event_id=event["id"], type=event["type"],
        created=event["created"], livemode=bool(event.get("livemode")), payload=text,
        status=EVENT_QUEUED if subscribed else EVENT_IGNORED, historical=False, attempts=0,
        received_at=now, enqueued_at=now if subscribed else None,
    )
    touch = time.monotonic() - info.touched_at > LAST_EVENT_TOUCH_SECONDS
    try:
        row_id = _write_with_lock_polling(lambda conn: _insert(conn, info, event, values, subscribed, touch, now))
    except IntegrityError:
        log.info("Duplicate Stripe event %s for resource %s acknowledged", event["id"], info.id)
        return Reply(200, {"received": True, "duplicate": True})
    if touch:
        info.touched_at = time.monotonic()
    if not subscribed:
        log.info("Stripe event %s (%s) ignored: resource %s does not subscribe to it",
                 event["id"], event["type"], info.id)
        return Reply(200, {"received": True, "ignored": True})
    try:
        queue_events([row_id], event=event)
    except REDIS_DOWN as exc:
        log.warning("Redis unavailable (%s); Stripe event %s stays recorded for the sweep",
                    type(exc).__name__, event["id"])
        db.session.execute(update(StripeEvent).where(StripeEvent.id == row_id, StripeEvent.status == EVENT_QUEUED)
                           .values(status=EVENT_RECEIVED, enqueued_at=None))
        db.session.commit()
        return Reply(200, {"received": True, "queued": False})
    log.debug("Stripe event %s (%s) recorded as row %s and queued", event["id"], event["type"], row_id)
    return Reply(200, {"received": True})


def _insert(conn, info: ResourceInfo, event: dict, values: dict, subscribed: bool, touch: bool, now) -> int:
    """The event row (and the ignored log row, and the resource's last-event time), as Core statements
    on a pooled connection: the hot path of the product, so no ORM bookkeeping."""
    row_id = conn.execute(_INSERT_EVENT, values).scalar_one()
    if not subscribed:
        conn.execute(insert(SyncLog.__table__), _ignored_log(info, event, row_id, now))
    if touch:
        conn.execute(update(StripeResource.__table__).where(StripeResource.__table__.c.id == info.id)
                     .values(last_event_at=now))
    return row_id


def _write_with_lock_polling(write, wait: float = LOCK_WAIT_SECONDS):
    """Run `write(conn)` in a transaction; on SQLite, wait for the write lock (up to `wait` seconds) by
    polling every fraction of a millisecond instead of in SQLite's busy handler, which sleeps up to
    100 ms at a time and so misses the short gaps between a worker's batches (intake then starves)."""
    engine = _intake_engine()
    if engine is db.engine:
        with engine.begin() as conn:
            return write(conn)
    deadline = time.monotonic() + wait
    pause = 0.0002
    while True:
        try:
            with engine.begin() as conn:
                return write(conn)
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)


def _intake_engine():
    """SQLite: a pool of its own whose connections never wait in SQLite (busy_timeout 0), so the
    loop above does the waiting; every other database: the app's engine."""
    if db.engine.dialect.name != "sqlite":
        return db.engine
    engine = current_app.extensions.get("intake_engine")
    if engine is None:
        engine = create_engine(db.engine.url, pool_size=2, max_overflow=8)

        @sa_event.listens_for(engine, "connect")
        def _no_busy_wait(dbapi_conn, _record):
            """Runs after the app-wide pragmas (class-level listeners come first), overriding their timeout."""
            dbapi_conn.execute("PRAGMA busy_timeout=0")

        current_app.extensions["intake_engine"] = engine
    return engine


def _ignored_log(info: ResourceInfo, event: dict, row_id: int, now) -> dict:
    """The sync log row that says why an event was recorded but not processed."""
    return dict(
        created_at=now, account_id=info.account_id, resource_id=info.id, event_row_id=row_id,
        stripe_event_id=event["id"], event_type=event["type"], outcome=OUTCOME_IGNORED,
        reason=f"The {resource(info.kind).name} resource does not subscribe to {event['type']}.",
        attempt=0, duration_ms=0, historical=False,
    )


# Built once: the compiled form is cached, so each delivery only binds its values.
_INSERT_EVENT = insert(StripeEvent.__table__).returning(StripeEvent.__table__.c.id)
