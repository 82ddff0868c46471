"""Running stored events through the one write path: the bodies of the drain job and of an event's
own job (a retry, the sweep's requeue, the Retry button).

A drain takes batches of row ids from its shard's pending set (pending.py) until none are left or
EVENT_DRAIN_SECONDS have passed; an event's own job is the same thing for one id. For each batch:
1. Count the attempt of every event in one small commit, so a worker killed mid-batch still
   leaves a trace and the sweep can stop requeuing an event that kills workers (sweep.py).
2. Parse the payloads and start resolving customers (apply/prepare.py: remembered ones, the rest
   retrieved from Stripe in parallel) with no transaction open.
3. Write the events that are ready (their customer known, or not needed) in one transaction
   (apply/batch.py), where a failing event is recorded failed alone and retried by a job of its own.
   Events still waiting for Stripe stay held (up to HELD_BATCHES batches' worth) while the drain
   takes more, so a slow or rate-limited Stripe delays only the events that need it.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent import futures
from dataclasses import dataclass

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

HELD_BATCHES = 4  # a drain holds at most this many batches' worth of events waiting for Stripe
READY_WAIT_SECONDS = 0.05  # with nothing ready and nothing new, wait this long for Stripe, then look again


def drain(queue, worker_name: str, shard: int = 0) -> str:
    """The drain job's loop: take events of the shard and start their customers; write the ones that
    are ready (customer known, or not needed) in batches; repeat until nothing is pending or held, or
    time is up; then release the shard and, if anything is left (or came after the last look),
    queue the next drain for it. An event waiting for Stripe never holds up one that is not."""
    from webapp.metrics import EVENTS_PROCESSED, PROCESSING_SECONDS

    size = batch_size()
    hold = float(setting("EVENT_JOB_TIMEOUT"))
    until = time.monotonic() + float(setting("EVENT_DRAIN_SECONDS"))
    resolver = Resolver()
    held = Held()
    done = 0
    try:
        while True:
            first = done == 0 and not held  # a drain takes one batch however short its time
            if (first or time.monotonic() < until) and len(held) < size * HELD_BATCHES:
                ids = pending.take(queue, shard, size, worker_name, hold)
                try:
                    gone = held.add(_start(ids, resolver))
                except BaseException:
                    pending.give_back(queue, shard, ids + held.ids)
                    raise
                if gone:  # done before we took them (a retry job, the Retry button)
                    pending.finish(queue, gone)
                    done += len(gone)
                    EVENTS_PROCESSED.labels(outcome=ALREADY_DONE.replace(" ", "_")).inc(len(gone))
                took = bool(ids)
            else:
                took = False
            if not held:
                break
            ready = held.pop_ready(size, wait_seconds=0 if took else READY_WAIT_SECONDS,
                                   wait_all=time.monotonic() >= until)
            if not ready:
                continue
            try:
                result = _write(ready)
            except BaseException:
                pending.give_back(queue, shard, [slot.item.ref.id for slot in ready] + held.ids)
                raise
            pending.finish(queue, [slot.item.ref.id for slot in ready])
            done += len(ready)
            for outcome, count in result.outcomes.items():
                EVENTS_PROCESSED.labels(outcome=outcome.replace(" ", "_")).inc(count)
            for _ in ready:
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
    held = Held()
    gone = held.add(_start(row_ids, Resolver()))
    result = _write(held.pop_ready(len(held), wait_seconds=0, wait_all=True)) if held else BatchResult()
    if gone:
        result.outcomes[ALREADY_DONE] += len(gone)
    return result


@dataclass
class Slot:
    """One taken event: its item, and where its customer is being resolved (None: its payload was bad)."""

    item: Item
    preparation: Preparation | None
    index: int = -1

    @property
    def ready(self) -> bool:
        """Its customer is answered, or it needs none."""
        return self.preparation is None or self.preparation.is_ready(self.index)


class Held:
    """Taken events not written yet, oldest first."""

    def __init__(self):
        self.slots: list[Slot] = []

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def ids(self) -> list[int]:
        """Their row ids (to give back if the drain fails)."""
        return [slot.item.ref.id for slot in self.slots]

    def add(self, started: tuple[list[Slot], list[int]]) -> list[int]:
        """Hold the started events; returns the ids that were done already."""
        slots, gone = started
        self.slots.extend(slots)
        return gone

    def pop_ready(self, limit: int, wait_seconds: float, wait_all: bool = False) -> list[Slot]:
        """Up to `limit` ready events, oldest first. With none ready, wait up to `wait_seconds` for a
        customer to be answered (for all of them, with `wait_all`)."""
        if not any(slot.ready for slot in self.slots):
            waiting = {f for p in {id(s.preparation): s.preparation for s in self.slots if s.preparation}.values()
                       for f in p.waiting()}
            if waiting and (wait_all or wait_seconds > 0):
                futures.wait(waiting, timeout=None if wait_all else wait_seconds,
                             return_when=futures.ALL_COMPLETED if wait_all else futures.FIRST_COMPLETED)
        ready, rest = [], []
        for slot in self.slots:
            (ready if slot.ready and len(ready) < limit else rest).append(slot)
        self.slots = rest
        return ready


def _write(slots: list[Slot]) -> BatchResult:
    """Resolve the ready events' customers and apply them in one transaction."""
    learned = []
    by_preparation: dict[int, list[Slot]] = {}
    for slot in slots:
        if slot.preparation is not None:
            by_preparation.setdefault(id(slot.preparation), []).append(slot)
    for group in by_preparation.values():
        results, found = group[0].preparation.resolve([slot.index for slot in group])
        learned.extend(found)
        for slot, prepared in zip(group, results):
            if isinstance(prepared, BaseException):
                slot.item.error = prepared
            else:
                slot.item.prepared = prepared
    items = [slot.item for slot in slots]
    try:
        return apply(Source(items, learned))
    except Exception as exc:
        record_failures(items, exc)
        raise


def _start(row_ids: list[int], resolver: Resolver) -> tuple[list[Slot], list[int]]:
    """Count the attempts, parse the payloads and start resolving customers; returns the taken events
    and the ids that were done already."""
    if not row_ids:
        return [], []
    items, payloads = _load(row_ids)
    slots, entries = [], []
    for item, payload in zip(items, payloads):
        item.started = time.monotonic()
        try:
            obj = json.loads(payload)["data"]["object"]
            if not isinstance(obj, dict):
                raise ValueError("the event's data.object is not an object")
        except Exception as exc:  # noqa: BLE001 - this event fails alone and is retried alone
            item.error = exc
            slots.append(Slot(item, None))
            continue
        slots.append(Slot(item, None, len(entries)))
        entries.append(Entry(item.ref.account_id, item.ref.resource_id, item.ref.type, obj, item.ref.created))
    preparation = resolver.start(entries)
    for slot in slots:
        if slot.index >= 0:
            slot.preparation = preparation
    loaded = {item.ref.id for item in items}
    return slots, [i for i in row_ids if i not in loaded]


def _load(row_ids: list[int]) -> tuple[list[Item], list[str]]:
    """Count the attempt and read what preparing needs, in one statement; events already done are left out."""
    table = StripeEvent.__table__
    rows = db.session.execute(
        update(table).where(table.c.id.in_(row_ids), table.c.status.not_in(DONE_STATUSES))
        .values(attempts=table.c.attempts + 1)
        .returning(table.c.id, table.c.account_id, table.c.resource_id, table.c.stripe_event_id, table.c.type,
                   table.c.created, table.c.historical, table.c.recovered, table.c.attempts,
                   table.c.payload)).all()
    db.session.commit()
    if len(rows) < len(row_ids):
        log.info("%s of %s Stripe event row(s) already done or gone", len(row_ids) - len(rows), len(row_ids))
    rows = sorted(rows, key=lambda r: r.id)
    items = [Item(ref=EventRef(id=row.id, account_id=row.account_id, resource_id=row.resource_id,
                               stripe_event_id=row.stripe_event_id, type=row.type, created=row.created,
                               historical=row.historical, recovered=row.recovered), attempt=row.attempts)
             for row in rows]
    return items, [row.payload for row in rows]
