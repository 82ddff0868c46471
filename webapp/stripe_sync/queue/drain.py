"""Processing a batch of webhook events in one transaction: the body of a drain job (pending.py).

The rules are the ones `process_event` applies to a single event, through the same
`apply_to_crm`, with the page cache historical imports use, so a batch costs a few queries
instead of ~25 per event. Steps, as in processing.py:
1. Count the attempt of every event in one small commit (a worker killed mid-batch leaves a trace).
2. Parse payloads and resolve customers (maybe Stripe calls) outside any transaction. An event
   whose customer cannot be fetched fails alone: its error is recorded and it gets its own RQ job,
   due after the first retry interval, so it goes on exactly as a failed `process_event` would.
3. One transaction: claim the rows (`UPDATE … WHERE status is not done RETURNING id`, so events a
   concurrent job finished are left out), lock and prefetch the contacts, apply every event, then
   write the SyncLog rows, counters and statuses in bulk. Lock waits, deadlocks and unique-key
   races replay the transaction; any other error rolls it back and the events are processed one
   by one through processing.py, where a failing event is isolated and retried by RQ.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, insert, update

from webapp.extensions import db
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.history.writer import EventRef, _bump_counters
from webapp.stripe_sync.apply.contact_cache import prefetch
from webapp.stripe_sync.apply.customer_fetch import customer_fetcher
from webapp.stripe_sync.queue.enqueue import JOB_FUNC, enqueue_event, job_id_for, retry_policy
from webapp.stripe_sync.events import effect_for_event, tags_for_event
from webapp.stripe_sync.models import (
    EVENT_PROCESSED, EVENT_SKIPPED, OUTCOME_SKIPPED, StripeAccount, StripeEvent, StripeResource, SyncLog,
)
from webapp.stripe_sync.apply.batch import (
    DONE_STATUSES, Prepared, _record_failure, _write, apply_to_crm, commit_with_replays, prepare_object,
)
from webapp.stripe_sync.sync_settings import batch_size, max_attempts, retry_intervals, setting
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)


def drain(queue, worker_name: str, shard: int = 0) -> str:
    """The drain job's loop (pending.py): take a batch of the shard, process it, repeat until nothing
    is pending or EVENT_DRAIN_SECONDS have passed; then release the shard and, if anything is left
    (or came after the last look), queue the next drain for it."""
    from webapp.metrics import EVENTS_PROCESSED, PROCESSING_SECONDS

    size = batch_size()
    hold = float(setting("EVENT_JOB_TIMEOUT"))
    until = time.monotonic() + float(setting("EVENT_DRAIN_SECONDS"))
    done = 0
    try:
        while time.monotonic() < until or done == 0:
            ids = pending.take(queue, shard, size, worker_name, hold)
            if not ids:
                break
            try:
                result = process_batch(ids)
            except BaseException:
                pending.give_back(queue, shard, ids)
                raise
            pending.finish(queue, ids)
            done += len(ids)
            for outcome, count in result.outcomes.items():
                EVENTS_PROCESSED.labels(outcome=outcome.replace(" ", "_")).inc(count)
            for _ in ids:
                PROCESSING_SECONDS.observe(result.seconds)
    finally:
        pending.release(queue, shard)  # after a failure too: the next delivery (or the sweep) re-arms
    if pending.has_pending(queue, shard):  # time is up, or a delivery came after our last look
        pending.arm(queue, shard)
        return f"{done} events (handed over)"
    return f"{done} events"


@dataclass
class Item:
    """One event of the batch on its way through the steps."""

    ref: EventRef
    attempt: int
    payload: str
    prepared: Prepared | None = None
    error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class BatchResult:
    """What a batch did, for the job's metrics and log line."""

    outcomes: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def process_batch(row_ids: list[int]) -> BatchResult:
    """Process these event rows exactly once each; failures are isolated per event, never raised."""
    result = BatchResult()
    started = time.monotonic()
    items = _load(row_ids)
    result.outcomes["already done"] += len(row_ids) - len(items)
    _prepare(items)
    for item in [i for i in items if i.error is not None]:
        _fail(item, item.error, result)
    ready = [i for i in items if i.error is None]
    if ready:
        try:
            outcomes = _write_with_replays(ready)
        except Exception as exc:  # noqa: BLE001 - one by one below isolates the event that caused it
            db.session.rollback()
            log.warning("Batch of %s Stripe events failed as a whole (%s); processing them one by one",
                        len(ready), type(exc).__name__)
            outcomes = _one_by_one(ready, result)
        result.outcomes.update(outcomes)
    result.seconds = time.monotonic() - started
    return result


def _load(row_ids: list[int]) -> list[Item]:
    """Count the attempt and read what preparing needs, in one statement; events already done are left out."""
    table = StripeEvent.__table__
    rows = db.session.execute(
        update(table).where(table.c.id.in_(row_ids), table.c.status.not_in(DONE_STATUSES))
        .values(attempts=table.c.attempts + 1)
        .returning(table.c.id, table.c.account_id, table.c.resource_id, table.c.stripe_event_id, table.c.type,
                   table.c.created, table.c.historical, table.c.attempts, table.c.payload)).all()
    db.session.commit()
    items = []
    for row in sorted(rows, key=lambda r: r.id):
        items.append(Item(ref=EventRef(id=row.id, account_id=row.account_id, resource_id=row.resource_id,
                                       stripe_event_id=row.stripe_event_id, type=row.type, created=row.created,
                                       historical=row.historical), attempt=row.attempts, payload=row.payload))
    return items


def _prepare(items: list[Item]) -> None:
    """Parse and resolve customers with no transaction open, as `process_event` does."""
    fetchers = {}
    for account_id in {i.ref.account_id for i in items if effect_for_event(i.ref.type) is not None}:
        account = db.session.get(StripeAccount, account_id)
        fetchers[account_id] = customer_fetcher(account) if account is not None else None
    db.session.rollback()  # no transaction (nor SQLite snapshot) stays open during API calls
    for item in items:
        item.started = time.monotonic()
        try:
            obj = json.loads(item.payload)["data"]["object"]
            item.prepared = prepare_object(item.ref.type, obj, fetchers.get(item.ref.account_id))
        except Exception as exc:  # noqa: BLE001 - this event fails alone and is retried alone
            item.prepared, item.error = None, exc


def _write_with_replays(items: list[Item]) -> Counter:
    """The batch's transaction, replayed when a concurrent writer got in the way."""
    return commit_with_replays(lambda: _write_batch(items), f"Batch of {len(items)} Stripe events")


def _write_batch(items: list[Item]) -> Counter:
    """Everything the batch changes, inside one transaction the caller commits."""
    table = StripeEvent.__table__
    claimed = set(db.session.scalars(
        update(table).where(table.c.id.in_([i.ref.id for i in items]), table.c.status.not_in(DONE_STATUSES))
        .values(processed_at=utcnow()).returning(table.c.id)))
    outcomes: Counter = Counter()
    outcomes["already done"] += len(items) - len(claimed)
    items = [i for i in items if i.ref.id in claimed]
    if not items:
        return outcomes
    resources = {rid: db.session.get(StripeResource, rid) for rid in {i.ref.resource_id for i in items} if rid}
    # Per resource, as `apply_to_crm` would read it; an event without a resource maps nothing.
    mappings = {rid: [(m.stripe_field, m.field.key) for m in res.mappings] if res is not None else []
                for rid, res in resources.items()}
    mappings[None] = []
    live = [i for i in items if not i.prepared.skip_reason]
    cache = prefetch([i.prepared.email for i in live],
                     list(dict.fromkeys(pair for pairs in mappings.values() for pair in pairs)),
                     sorted({t for i in live for t in tags_for_event(i.ref.type)}))
    cache.mappings = mappings

    logs, statuses = [], []
    now = utcnow()
    for item in items:
        ref, prepared = item.ref, item.prepared
        if prepared.skip_reason:
            outcome, contact_id, reason, status = OUTCOME_SKIPPED, None, prepared.skip_reason, EVENT_SKIPPED
            log.info("Stripe event %s (%s) skipped: %s", ref.stripe_event_id, ref.type, reason)
        else:
            outcome, contact, reason = apply_to_crm(ref, resources.get(ref.resource_id), prepared, cache)
            contact_id, status = contact.id, EVENT_PROCESSED
        outcomes[outcome] += 1
        statuses.append({"row_id": ref.id, "new_status": status, "new_contact": contact_id})
        logs.append(dict(created_at=now, account_id=ref.account_id, resource_id=ref.resource_id,
                         event_row_id=ref.id, stripe_event_id=ref.stripe_event_id, event_type=ref.type,
                         contact_id=contact_id, outcome=outcome, reason=reason, attempt=item.attempt,
                         duration_ms=int((time.monotonic() - item.started) * 1000), historical=ref.historical))
    cache.flush()
    db.session.execute(insert(SyncLog.__table__), logs)
    for resource_id in {entry["resource_id"] for entry in logs if entry["resource_id"]}:
        _bump_counters(resource_id, Counter(e["outcome"] for e in logs if e["resource_id"] == resource_id))
    db.session.execute(
        update(table).where(table.c.id == bindparam("row_id"))
        .values(status=bindparam("new_status"), contact_id=bindparam("new_contact"), error=None), statuses)
    return outcomes


def _one_by_one(items: list[Item], result: BatchResult) -> Counter:
    """processing.py's own transaction per event, so one bad event cannot hold back the others."""
    outcomes: Counter = Counter()
    for item in items:
        try:
            outcomes[_write(item.ref.id, item.attempt, item.prepared, item.started)] += 1
        except Exception as exc:  # noqa: BLE001 - recorded and retried by its own job
            db.session.rollback()
            _fail(item, exc, result)
    return outcomes


def _fail(item: Item, exc: BaseException, result: BatchResult) -> None:
    """Record the failure as `process_event` would and give the event its own job for the retries."""
    attempt = item.attempt
    retry = attempt < max_attempts()
    _record_failure(item.ref.id, attempt, exc, item.started, retry=retry)
    result.outcomes["failed"] += 1
    if retry:
        _schedule_retry(item.ref.id, attempt)


def _schedule_retry(row_id: int, attempt: int) -> None:
    """A `process_event` job due after this attempt's interval, with the retries left after it."""
    from webapp.redis_queue import get_queue

    intervals = retry_intervals()
    delay = intervals[min(attempt, len(intervals)) - 1] if intervals else 0
    retries = max_attempts() - attempt - 1
    enqueue_event(row_id, get_queue(), retries=retries, delay=delay)
