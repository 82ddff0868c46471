"""Running stored events through the one write path: the bodies of the drain job and of an event's
own job (a retry, the sweep's requeue, the Retry button).

A drain takes batches of row ids from its shard's pending set (pending.py) until none are left or
EVENT_DRAIN_SECONDS have passed; an event's own job is the same thing for one id. For each batch:
1. Count the attempt of every event in one small commit, so a worker killed mid-batch still
   leaves a trace and the sweep can stop requeuing an event that kills workers (sweep.py).
2. Parse the payloads and resolve customers (maybe Stripe calls) with no transaction open.
3. Apply them in one transaction (apply/batch.py), where a failing event is recorded failed alone
   and retried by a job of its own.
"""
from __future__ import annotations

import json
import logging
import time

from sqlalchemy import update

from webapp.extensions import db
from webapp.stripe_sync.apply.batch import (
    ALREADY_DONE, DONE_STATUSES, BatchResult, Item, Source, apply, prepare, record_failures,
)
from webapp.stripe_sync.apply.customer import customer_fetcher
from webapp.stripe_sync.events import effect_for_event
from webapp.stripe_sync.models import EventRef, StripeAccount, StripeEvent
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.queue.enqueue import batch_size
from webapp.tunables import setting

log = logging.getLogger(__name__)


def drain(queue, worker_name: str, shard: int = 0) -> str:
    """The drain job's loop: take a batch of the shard, process it, repeat until nothing is pending or
    time is up; then release the shard and, if anything is left (or came after the last look),
    queue the next drain for it."""
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
                result = process_events(ids)
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


def process_event(event_row_id: int) -> str:
    """One event, exactly once; raises its error after recording it, so RQ retries the job."""
    result = process_events([event_row_id])
    for applied in result.failed:
        raise applied.item.error
    return next(iter(result.outcomes), ALREADY_DONE)


def process_events(row_ids: list[int]) -> BatchResult:
    """Count the attempts, prepare with no transaction open, apply in one transaction."""
    items, payloads = _load(row_ids)
    result = BatchResult()
    if items:
        _prepare(items, payloads)
        try:
            result = apply(Source(items))
        except Exception as exc:
            record_failures(items, exc)
            raise
    if len(items) < len(row_ids):
        result.outcomes[ALREADY_DONE] += len(row_ids) - len(items)
    return result


def _load(row_ids: list[int]) -> tuple[list[Item], list[str]]:
    """Count the attempt and read what preparing needs, in one statement; events already done are left out."""
    table = StripeEvent.__table__
    rows = db.session.execute(
        update(table).where(table.c.id.in_(row_ids), table.c.status.not_in(DONE_STATUSES))
        .values(attempts=table.c.attempts + 1)
        .returning(table.c.id, table.c.account_id, table.c.resource_id, table.c.stripe_event_id, table.c.type,
                   table.c.created, table.c.historical, table.c.attempts, table.c.payload)).all()
    db.session.commit()
    if len(rows) < len(row_ids):
        log.info("%s of %s Stripe event row(s) already done or gone", len(row_ids) - len(rows), len(row_ids))
    rows = sorted(rows, key=lambda r: r.id)
    items = [Item(ref=EventRef(id=row.id, account_id=row.account_id, resource_id=row.resource_id,
                               stripe_event_id=row.stripe_event_id, type=row.type, created=row.created,
                               historical=row.historical), attempt=row.attempts) for row in rows]
    return items, [row.payload for row in rows]


def _prepare(items: list[Item], payloads: list[str]) -> None:
    """Parse and resolve customers with no transaction (nor SQLite snapshot) open during API calls."""
    fetchers = {}
    for account_id in {i.ref.account_id for i in items if effect_for_event(i.ref.type) is not None}:
        account = db.session.get(StripeAccount, account_id)
        fetchers[account_id] = customer_fetcher(account) if account is not None else None
    db.session.rollback()
    for item, payload in zip(items, payloads):
        item.started = time.monotonic()
        try:
            obj = json.loads(payload)["data"]["object"]
            item.prepared = prepare(item.ref.type, obj, fetchers.get(item.ref.account_id))
        except Exception as exc:  # noqa: BLE001 - this event fails alone and is retried alone
            item.error = exc
