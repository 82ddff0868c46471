"""One account's check for events webhooks did not deliver: read them from Stripe, record what is
missing exactly as intake would, and move the checkpoint past what was stored.

Decisions:
- The checkpoint (StripeAccount.events_checkpoint, epoch seconds) says every subscribed event created
  before it is stored. A check reads from RECOVERY_OVERLAP seconds before it (an event may become
  visible in the API a little after its `created`), oldest first (reader.py), and moves it after
  each page's commit to that page's newest stored event, so a check killed halfway loses nothing and
  repeats little. Events younger than RECOVERY_SETTLE are left to their webhook, which is usually a
  second away; the next check takes them if it never comes.
- A new account's checkpoint starts when it is connected. An event is recovered only for
  a resource connected (and not removed) when it happened: an event from before a resource existed is
  history, which is the historical sync's job, and "Sync new records only" means just that.
- Recorded like intake: one StripeEvent row, unique on (account, Stripe event id), inserted with
  ON CONFLICT DO NOTHING, so an event recovered and delivered at once, or delivered later by Stripe's
  retries, is stored and processed once. Rows are marked `recovered`; the sync log shows that. They
  go to the same drain as deliveries (queue.enqueue.queue_events), sharded by customer.
- Stripe keeps events for STRIPE_EVENTS_RETENTION_DAYS (30). A checkpoint older than that cannot be
  closed: the check reads what Stripe still has and records the gap on the account, which the Stripe
  page shows with an offer to re-run the historical sync; the gap is cleared when that sync starts.
- /v1/events renders an event in the API version that was the account's default when Stripe created
  it, whatever version we ask for. An event not in ours (client.STRIPE_API_VERSION) is not applied as
  it is: its object is retrieved at our version (within the account's budget) and applied with the
  event's id, type and time; the payload keeps `api_version` as Stripe sent it and adds
  `applied_object_version`. If the object is gone from Stripe, the event's own object is kept (its
  customer data is what stays stable across versions) and the log line says so.
- One check per account at a time: a Redis lock names the worker holding it; a lock whose worker died
  (SIGKILL) is taken over at once instead of waiting for it to expire.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import stripe
from sqlalchemy import select, update

from webapp.extensions import db
from webapp.stripe_sync.apply.customer_fetch import retrieve
from webapp.stripe_sync.budget import Budget, budget_for, import_pacer
from webapp.stripe_sync.client import STRIPE_API_VERSION, client_for_account, describe
from webapp.stripe_sync.events import RESOURCES, events_for_resource
from webapp.stripe_sync.models import (
    ACCOUNT_CONNECTED, EVENT_QUEUED, EVENT_RECEIVED, RESOURCE_ACTIVE, RESOURCE_NEEDS_ATTENTION, StripeAccount,
    StripeEvent, StripeResource,
)
from webapp.stripe_sync.nul import json_text_without_nul
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN, queue_events
from webapp.stripe_sync.recovery import endpoint_health
from webapp.stripe_sync.history.reader import ReaderSettings
from webapp.stripe_sync.recovery.reader import EVENTS_PATH, EventsReader, RateLimitedTooLong
from webapp.timeutil import epoch, utcnow
from webapp.tunables import setting
from webapp.upsert import dialect_insert

log = logging.getLogger(__name__)

RECOVERING = (RESOURCE_ACTIVE, RESOURCE_NEEDS_ATTENTION)  # resources whose events are recovered
LOCAL_HOLDER = "local-"  # a check run outside an RQ job: its lock just expires
RETENTION_MARGIN = 600  # read no closer than this to the edge of what Stripe keeps
REFRESH_THREADS = 8
OBJECT_PATHS = {r.stripe_object: r.history.api_path for r in RESOURCES}


@dataclass(frozen=True)
class Subscriber:
    """The resource an event type is recovered for, and since when (its connection)."""

    resource_id: int
    since: int


@dataclass
class Report:
    """What one check did, for the job's result, the log line and the page."""

    read: int = 0
    recovered: int = 0
    refreshed: int = 0  # events in another API version applied from the object retrieved at ours
    requests: int = 0
    rate_limited: int = 0
    gap: bool = False
    skipped: str | None = None  # why nothing ran

    def __str__(self) -> str:
        """The log line's wording."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        text = f"{self.read} events read, {self.recovered} recovered"
        if self.refreshed:
            text += f" ({self.refreshed} from objects retrieved at {STRIPE_API_VERSION})"
        if self.gap:
            text += "; older than Stripe keeps events, so a gap remains"
        return text + f"; {self.requests} requests, {self.rate_limited} rate limited"


def subscribers(account: StripeAccount) -> dict[str, Subscriber]:
    """Event type → the connected resource that subscribes to it."""
    found = {}
    for res in account.resources:
        if res.status not in RECOVERING:
            continue
        for event_type in events_for_resource(res.kind):
            found[event_type] = Subscriber(res.id, epoch(res.created_at))
    return found


class AccountLock:
    """One check per account: a Redis key naming the worker that holds it."""

    def __init__(self, redis, account_id: int, holder: str, seconds: int):
        self.redis, self.key, self.holder, self.seconds = redis, f"stripe-sync:recovery-lock:{account_id}", holder, seconds

    def take(self) -> bool:
        """True when this check may run: the lock was free, or its holder is a dead worker."""
        from webapp.redis_queue import worker_alive

        if self.redis.set(self.key, self.holder, nx=True, ex=self.seconds):
            return True
        current = self.redis.get(self.key)
        name = current.decode() if current else ""
        if current is not None and (name.startswith(LOCAL_HOLDER) or worker_alive(self.redis, name)):
            return False
        log.warning("Event recovery lock of %s held by dead worker %s; taking it over", self.key, name or "?")
        self.redis.set(self.key, self.holder, ex=self.seconds)
        return True

    def release(self) -> None:
        """Free the lock if it is still ours."""
        current = self.redis.get(self.key)
        if current is not None and current.decode() == self.holder:
            self.redis.delete(self.key)


def recover_account(account_id: int, worker_name: str = "") -> Report:
    """Check one account: its endpoints' health, then its missed events. Errors are noted on the account
    (in plain words, for the page) and re-raised, so RQ records the failure and retries."""
    from webapp.redis_queue import get_redis

    account = db.session.get(StripeAccount, account_id)
    if account is None or account.status != ACCOUNT_CONNECTED or not account.secret_key_enc:
        return Report(skipped="the account is not connected")
    holder = worker_name or f"{LOCAL_HOLDER}{uuid.uuid4().hex}"
    lock = AccountLock(get_redis(), account_id, holder, int(setting("RECOVERY_JOB_TIMEOUT")))
    if not lock.take():
        log.info("Event recovery of account %s already running elsewhere", account_id)
        return Report(skipped="another check of this account is running")
    try:
        client = client_for_account(account)
        try:
            endpoint_health.check(account, client)
        except stripe.StripeError as exc:
            db.session.rollback()
            log.warning("Endpoint health of account %s not checked: %s", account_id, describe(exc).message)
        report = _recover(db.session.get(StripeAccount, account_id), client)
    except Exception as exc:
        db.session.rollback()
        account = db.session.get(StripeAccount, account_id)
        if account is not None:
            account.events_error = _plain(exc)
            db.session.commit()
        raise
    finally:
        lock.release()
    log.info("Event recovery of account %s: %s", account_id, report)
    return report


def _plain(exc: Exception) -> str:
    """Why a check failed, for the Stripe page (never a key, never a trace)."""
    if isinstance(exc, RateLimitedTooLong):
        return "Stripe kept answering “too many requests”. The check continues from where it stopped next time."
    if isinstance(exc, stripe.StripeError):
        return describe(exc).message
    return "The check stopped with an error; it runs again at the next interval."


def _recover(account: StripeAccount, client: stripe.StripeClient) -> Report:
    """Read from the checkpoint (less the overlap) to now, storing page by page."""
    report = Report()
    subs = subscribers(account)
    now = int(time.time())
    settle_at = now - int(setting("RECOVERY_SETTLE"))
    if not subs:
        _finish(account, max(account.events_checkpoint or 0, settle_at), report)
        return report
    kept_from = now - int(setting("STRIPE_EVENTS_RETENTION_DAYS")) * 86400 + RETENTION_MARGIN
    # An account connected before recovery existed has no checkpoint: read what Stripe still has, and call
    # nothing a gap, since its webhooks may well have delivered everything before.
    checkpoint = account.events_checkpoint or max(min(s.since for s in subs.values()), kept_from)
    if checkpoint < kept_from:
        report.gap = True
        account.events_gap_from = min(account.events_gap_from or checkpoint, checkpoint)
        account.events_gap_to = kept_from
        start = kept_from
        log.warning("Event recovery of account %s: checkpoint %s is older than Stripe keeps events; reading from %s",
                    account.id, checkpoint, kept_from)
    else:
        start = checkpoint - int(setting("RECOVERY_OVERLAP"))
    account_id = account.id
    db.session.commit()  # end the read (and keep a gap noted) before the first slow request
    reader = EventsReader(client, list(subs), import_pacer(account, EVENTS_PATH),
                          ReaderSettings.from_config())
    refresher = ObjectRefresher(client, budget_for(account))
    try:
        for page in reader.walk(start):
            ready = [e for e in page if int(e.get("created") or 0) <= settle_at]
            report.read += len(ready)
            stored, refreshed = _store(account_id, ready, subs, refresher)
            report.recovered += stored
            report.refreshed += refreshed
            if ready:
                newest = int(ready[-1]["created"])
                db.session.execute(update(StripeAccount).where(StripeAccount.id == account_id)
                                   .values(events_checkpoint=newest)
                                   .where((StripeAccount.events_checkpoint.is_(None))
                                          | (StripeAccount.events_checkpoint < newest)))
                db.session.commit()
            if len(ready) < len(page):
                break
    finally:
        report.requests, report.rate_limited = reader.requests + refresher.requests, reader.rate_limited
    account = db.session.get(StripeAccount, account_id)
    _finish(account, max(account.events_checkpoint or 0, settle_at), report)
    return report


def _finish(account: StripeAccount, checkpoint: int, report: Report) -> None:
    """The check got through: move the checkpoint and note what it did."""
    account.events_checkpoint = checkpoint
    account.events_checked_at = utcnow()
    account.events_last_recovered = report.recovered
    account.events_recovered = (account.events_recovered or 0) + report.recovered
    account.events_error = None
    db.session.commit()


def _store(account_id: int, events: list[dict], subs: dict[str, Subscriber],
           refresher: "ObjectRefresher") -> tuple[int, int]:
    """Record the events not stored yet (for a resource connected when they happened) and queue them;
    returns (recorded, applied from a retrieved object)."""
    wanted = [e for e in events if e.get("type") in subs and int(e.get("created") or 0) >= subs[e["type"]].since
              and isinstance(e.get("id"), str) and isinstance((e.get("data") or {}).get("object"), dict)]
    if not wanted:
        return 0, 0
    known = set(db.session.scalars(select(StripeEvent.stripe_event_id).where(
        StripeEvent.account_id == account_id, StripeEvent.stripe_event_id.in_([e["id"] for e in wanted]))))
    fresh = [e for e in wanted if e["id"] not in known]
    db.session.rollback()  # no snapshot held while Stripe is asked for objects
    if not fresh:
        return 0, 0
    refreshed = refresher.refresh([e for e in fresh if e.get("api_version") != STRIPE_API_VERSION])
    now = utcnow()
    rows = [dict(account_id=account_id, resource_id=subs[e["type"]].resource_id, stripe_event_id=e["id"],
                 type=e["type"], created=int(e["created"]), livemode=bool(e.get("livemode")),
                 payload=json_text_without_nul(json.dumps(e, ensure_ascii=False)), status=EVENT_QUEUED,
                 historical=False, recovered=True, attempts=0, received_at=now, enqueued_at=now) for e in fresh]
    inserted = db.session.execute(
        dialect_insert(StripeEvent.__table__).values(rows)
        .on_conflict_do_nothing(index_elements=["account_id", "stripe_event_id"])
        .returning(StripeEvent.__table__.c.id, StripeEvent.__table__.c.stripe_event_id)).all()
    resources = {subs[e["type"]].resource_id for e in fresh}
    db.session.execute(update(StripeResource).where(StripeResource.id.in_(resources)).values(last_event_at=now))
    db.session.commit()
    by_id = {e["id"]: e for e in fresh}
    ids = [row.id for row in inserted]
    try:
        queue_events(ids, events=[by_id[row.stripe_event_id] for row in inserted])
    except REDIS_DOWN as exc:
        log.warning("Redis unavailable (%s); %s recovered events stay recorded for the sweep", type(exc).__name__,
                    len(ids))
        db.session.execute(update(StripeEvent).where(StripeEvent.id.in_(ids), StripeEvent.status == EVENT_QUEUED)
                           .values(status=EVENT_RECEIVED, enqueued_at=None))
        db.session.commit()
    if len(inserted) < len(fresh):
        log.info("%s of %s recovered events arrived by webhook meanwhile", len(fresh) - len(inserted), len(fresh))
    return len(inserted), refreshed


class ObjectRefresher:
    """Retrieves the objects of events rendered in another API version, at ours, within the budget."""

    def __init__(self, client: stripe.StripeClient, budget: Budget):
        self.client, self.budget = client, budget
        self.retries = int(setting("STRIPE_RATE_LIMIT_RETRIES"))
        self.backoff = float(setting("STRIPE_RATE_LIMIT_BACKOFF"))
        self.slow_seconds = float(setting("STRIPE_BUDGET_SLOW_SECONDS") or 0)
        self.requests = 0

    def refresh(self, events: list[dict]) -> int:
        """Replace each event's object by the one retrieved at our version; returns how many were."""
        if not events:
            return 0
        with ThreadPoolExecutor(max_workers=min(REFRESH_THREADS, len(events)),
                                thread_name_prefix="stripe-refresh") as pool:
            return sum(pool.map(self._one, events))

    def _one(self, event: dict) -> int:
        """One event: 1 when its object was replaced."""
        obj = event["data"]["object"]
        path = OBJECT_PATHS.get(obj.get("object"))
        if not path or not isinstance(obj.get("id"), str):
            event["applied_object_version"] = f"{event.get('api_version')} (no object to retrieve)"
            return 0
        current = self._retrieve(f"{path}/{quote(obj['id'], safe='')}")
        if current is None or current.get("deleted"):
            event["applied_object_version"] = f"{event.get('api_version')} (the object is gone from Stripe)"
            log.info("Recovered event %s: its %s is gone from Stripe; applying the event's own object",
                     event.get("id"), obj.get("object"))
            return 0
        event["data"]["object"] = current
        event["applied_object_version"] = STRIPE_API_VERSION
        return 1

    def _retrieve(self, path: str) -> dict | None:
        """The object at our API version; None when Stripe no longer has it."""
        self.requests += 1
        data = retrieve(self.client, path, self.budget, self.retries, self.backoff, self.slow_seconds)
        return dict(data) if data is not None else None


def rerun_history(account_id: int) -> int:
    """The gap's remedy: the historical sync of every connected resource of the account (records synced
    before are applied again, and stamps keep newer values); the gap is then considered handled.
    Returns how many imports were started (a resource already importing keeps its import)."""
    from webapp.stripe_sync.history import importer

    account = db.session.get(StripeAccount, account_id)
    started = 0
    for res in account.resources:
        if res.status not in RECOVERING:
            continue
        latest = importer.latest_for(res.id)
        if latest is not None and latest.is_active:
            continue
        importer.start_backfill(res)
        started += 1
    account.events_gap_from = account.events_gap_to = None
    db.session.commit()
    log.info("Historical sync re-run for %s resource(s) of account %s to cover a gap in events", started, account_id)
    return started
