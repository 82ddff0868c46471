"""Running stored events through the one write path: the bodies of the drain job and of an event's
own job (a retry, the sweep's requeue, the Retry button).

A drain takes batches of row ids from its shard's pending set (pending.py) until none are left or
EVENT_DRAIN_SECONDS have passed; an event's own job is the same thing for one id. For each batch:
1. Count the attempt of every event in one small commit, so a worker killed mid-batch still
   leaves a trace and the sweep can stop requeuing an event that kills workers (sweep.py).
2. Parse the payloads and start resolving customers (apply/prepare.py: remembered ones, the rest
   retrieved from Stripe in parallel) with no transaction open.
3. Take the next batch and start its customers too, so Stripe's answer time overlaps the writing.
4. Apply the batch in one transaction (apply/batch.py), where a failing event is recorded failed
   alone and retried by a job of its own.
"""
from __future__ import annotations

import json
import logging
import time

from sqlalchemy import update

from webapp.extensions import db
from webapp.stripe_sync.apply.batch import (
    ALREADY_DONE, DONE_STATUSES, BatchResult, Item, Source, apply, record_failures,
)
from webapp.stripe_sync.apply.prepare import Entry, Preparation, Resolver
from webapp.stripe_sync.models import EventRef, StripeEvent
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.queue.enqueue import batch_size
from webapp.tunables import setting

log = logging.getLogger(__name__)


def drain(queue, worker_name: str, shard: int = 0) -> str:
    """The drain job's loop: take a batch of the shard, process it, repeat until nothing is pending or
    time is up; then release the shard and, if anything is left (or came after the last look),
    queue the next drain for it. The next batch is taken and its customers asked of Stripe before
    the current one is written, so Stripe's answer time overlaps the database's work."""
    from webapp.metrics import EVENTS_PROCESSED, PROCESSING_SECONDS

    size = batch_size()
    hold = float(setting("EVENT_JOB_TIMEOUT"))
    until = time.monotonic() + float(setting("EVENT_DRAIN_SECONDS"))
    resolver = Resolver()
    done = 0

    def take() -> Batch | None:
        """The next batch, started; its events go back to pending if starting it fails."""
        ids = pending.take(queue, shard, size, worker_name, hold)
        try:
            return _start(ids, resolver)
        except BaseException:
            pending.give_back(queue, shard, ids)
            raise

    try:
        batch = take()
        while batch is not None:
            ahead = None
            try:
                if time.monotonic() < until:
                    ahead = take()
                result = batch.finish()
            except BaseException:
                pending.give_back(queue, shard, batch.ids + (ahead.ids if ahead else []))
                raise
            pending.finish(queue, batch.ids)
            done += len(batch.ids)
            for outcome, count in result.outcomes.items():
                EVENTS_PROCESSED.labels(outcome=outcome.replace(" ", "_")).inc(count)
            for _ in batch.ids:
                PROCESSING_SECONDS.observe(result.seconds)
            batch = ahead
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
    batch = _start(row_ids, Resolver())
    return batch.finish() if batch is not None else _all_done(len(row_ids))


class Batch:
    """Taken events whose customers are being resolved; `finish()` writes them."""

    def __init__(self, ids: list[int], items: list[Item], entries: list[int], preparation: Preparation):
        self.ids, self.items, self.entries, self.preparation = ids, items, entries, preparation

    def finish(self) -> BatchResult:
        """Wait for the customers, then apply the batch in one transaction."""
        for index, prepared in zip(self.entries, self.preparation.finish()):
            if isinstance(prepared, BaseException):
                self.items[index].error = prepared
            else:
                self.items[index].prepared = prepared
        result = BatchResult()
        if self.items:
            try:
                result = apply(Source(self.items, self.preparation.learned))
            except Exception as exc:
                record_failures(self.items, exc)
                raise
        if len(self.items) < len(self.ids):
            result.outcomes[ALREADY_DONE] += len(self.ids) - len(self.items)
        return result


def _all_done(n: int) -> BatchResult:
    """The result of a batch whose events were all done before it started."""
    result = BatchResult()
    result.outcomes[ALREADY_DONE] += n
    return result


def _start(row_ids: list[int], resolver: Resolver) -> Batch | None:
    """Count the attempts, parse the payloads and start resolving customers; None when there is nothing."""
    if not row_ids:
        return None
    items, payloads = _load(row_ids)
    entries, positions = [], []
    for index, (item, payload) in enumerate(zip(items, payloads)):
        item.started = time.monotonic()
        try:
            obj = json.loads(payload)["data"]["object"]
            if not isinstance(obj, dict):
                raise ValueError("the event's data.object is not an object")
        except Exception as exc:  # noqa: BLE001 - this event fails alone and is retried alone
            item.error = exc
            continue
        entries.append(Entry(item.ref.account_id, item.ref.resource_id, item.ref.type, obj, item.ref.created))
        positions.append(index)
    return Batch(list(row_ids), items, positions, resolver.start(entries))


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
