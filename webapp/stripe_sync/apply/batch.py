"""The one write path from Stripe to the CRM: a batch of events applied in one transaction.

Every source hands its events over as a batch: a drain of webhook deliveries, one event run on
its own (a retry, the sweep, the Retry button: a batch of one), a page of imported records. Steps:
1. Before: the caller parses each event and resolves its customer with no transaction open
   (apply/prepare.py), so no lock is held while Stripe is slow. An event whose customer could not
   be retrieved carries that error into the transaction and fails there, alone.
2. One transaction: the source's first step (an import writes its event rows and checks that it
   still owns the import), remembering the customers Stripe told us about while preparing
   (customer_store), then claim the rows (`UPDATE … WHERE status is not done RETURNING id`:
   a second run of the same event, concurrent or later, claims nothing and changes nothing), load
   and lock the batch's contacts (contacts.ContactCache), apply each event (contact, mapping, tags,
   commerce rows, triggers), write the sync-log rows, counters and statuses in bulk, and the
   source's last step (an import's progress).
3. Lock waits, deadlocks and unique-key races roll the transaction back and replay it; the replay
   sees what the other writer committed. Any other error rolls it back, and the batch is written
   again with each event in a savepoint and a cache of its own, so the event that fails is
   recorded failed and the others commit.
4. After the commit, every failed event with attempts left is retried (queue/enqueue.py).
"""
from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError, OperationalError

from webapp.crm.summary import refresh_after_events
from webapp.extensions import db
from webapp.stripe_sync import synclog
from webapp.stripe_sync.apply import commerce, customer_store
from webapp.stripe_sync.apply.contacts import ContactCache, apply_field_writes, plan_field_writes
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.apply.prepare import Prepared
from webapp.stripe_sync.apply.failures import short_message, traceback_summary
from webapp.stripe_sync.apply.triggers import STRIPE_EVENT_RECEIVED, fire_trigger
from webapp.stripe_sync.events import Effect, effect_for_event, tags_for_event
from webapp.stripe_sync.models import (
    EVENT_FAILED, EVENT_IGNORED, EVENT_PROCESSED, EVENT_SKIPPED, OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_SKIPPED,
    OUTCOME_UPDATED, EventRef, StripeEvent, StripeResource,
)
from webapp.stripe_sync.queue.enqueue import schedule_retries, will_retry
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

DONE_STATUSES = (EVENT_PROCESSED, EVENT_SKIPPED, EVENT_IGNORED)
ALREADY_DONE = "already done"
TRANSACTION_TRIES = 6
EFFECT_HANDLERS = {
    Effect.RECURRING_PAYMENT: commerce.apply_subscription,
    Effect.ORDER: commerce.apply_checkout_session,
    Effect.REFUND: commerce.apply_refund,
}
STATUS_FOR = {OUTCOME_CREATED: EVENT_PROCESSED, OUTCOME_UPDATED: EVENT_PROCESSED, OUTCOME_SKIPPED: EVENT_SKIPPED,
              OUTCOME_FAILED: EVENT_FAILED}


@dataclass
class Item:
    """One event of a batch on its way to the CRM."""

    ref: EventRef
    attempt: int
    prepared: Prepared | None = None
    error: BaseException | None = None  # preparing failed; the event fails in the transaction
    started: float = field(default_factory=time.monotonic)


@dataclass
class Applied:
    """What one claimed event did, with its sync-log row."""

    item: Item
    outcome: str
    contact_id: int | None
    row: dict
    error: str | None = None


@dataclass
class BatchResult:
    """What a batch did, for its caller's metrics, progress and log line."""

    outcomes: Counter = field(default_factory=Counter)
    applied: list[Applied] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Applied]:
        """The events recorded failed."""
        return [a for a in self.applied if a.outcome == OUTCOME_FAILED]

    def add(self, applied: Applied) -> None:
        """Count one claimed event's outcome."""
        self.applied.append(applied)
        self.outcomes[applied.outcome] += 1


class Abandon(Exception):
    """A source's own check failed inside the transaction (an import replaced by another job): stop."""


class Source:
    """Where a batch comes from. Subclasses add their own steps to the transaction."""

    label = "Batch of Stripe events"

    def __init__(self, items: list[Item], learned: list[Learned] | None = None):
        self.items = items
        self.learned = learned or []  # customers Stripe told us about while preparing, to remember

    def begin(self) -> list[Item]:
        """First step inside the transaction: the items to apply."""
        return self.items

    def write_log(self, result: BatchResult) -> None:
        """One sync-log row per event, counted on the resources' counters."""
        synclog.record([a.row for a in result.applied])

    def end(self, result: BatchResult) -> None:
        """Last step inside the transaction."""


def apply(source: Source) -> BatchResult:
    """Apply the source's events exactly once each and commit; failures are recorded per event and
    retried, never raised (only a transaction that cannot be written at all raises)."""
    started = time.monotonic()
    try:
        try:
            result = commit_with_replays(lambda: _transaction(source, isolated=False), source.label)
        except Abandon:
            raise
        except Exception as exc:  # noqa: BLE001 - written again below, each event in its own savepoint
            db.session.rollback()
            level = logging.INFO if isinstance(exc, IntegrityError) else logging.WARNING
            log.log(level, "%s failed as a whole (%s); writing it again event by event", source.label,
                    short_message(exc))
            result = commit_with_replays(lambda: _transaction(source, isolated=True), source.label)
    except BaseException:
        db.session.rollback()
        raise
    result.seconds = time.monotonic() - started
    schedule_retries([(a.item.ref.id, a.item.attempt) for a in result.failed])
    return result


def commit_with_replays(body, what: str):
    """`body()` then commit; lock waits, deadlocks and unique-key races roll back and replay it a few
    times (the replay sees what the other writer committed)."""
    for tries in range(1, TRANSACTION_TRIES + 1):
        try:
            result = body()
            db.session.commit()
            return result
        except (IntegrityError, OperationalError) as exc:
            db.session.rollback()
            if tries == TRANSACTION_TRIES or (isinstance(exc, OperationalError) and not _transient(exc)):
                raise
            delay = random.uniform(0.01, 0.05) * tries
            log.info("%s: transaction conflict (%s); replaying in %.2f s",
                     what, type(exc.orig).__name__ if exc.orig else type(exc).__name__, delay)
            time.sleep(delay)
    raise RuntimeError("unreachable")  # pragma: no cover


def _transient(exc: OperationalError) -> bool:
    """Lock waits, deadlocks and serialization failures succeed when replayed; other errors do not."""
    text = str(exc.orig or exc).lower()
    return any(s in text for s in ("database is locked", "deadlock", "could not serialize", "lock timeout",
                                   "busy"))


def _transaction(source: Source, isolated: bool) -> BatchResult:
    """Everything the batch changes, inside one transaction the caller commits."""
    items = source.begin()
    customer_store.remember(source.learned)
    result = BatchResult()
    table = StripeEvent.__table__
    claimed = set(db.session.scalars(
        update(table).where(table.c.id.in_([i.ref.id for i in items]), table.c.status.not_in(DONE_STATUSES))
        .values(processed_at=utcnow()).returning(table.c.id))) if items else set()
    if len(claimed) < len(items):
        result.outcomes[ALREADY_DONE] += len(items) - len(claimed)
    items = [i for i in items if i.ref.id in claimed]
    resources = _resources({i.ref.resource_id for i in items})
    live = [i for i in items if i.error is None and not i.prepared.skip_reason]
    cache = None if isolated else ContactCache.load(
        [_who(i) for i in live], resources, sorted({t for i in live for t in tags_for_event(i.ref.type)}))
    for item in items:
        if item.error is not None:
            result.add(_failed(item, item.error))
        elif item.prepared.skip_reason:
            result.add(_skipped(item))
        elif not isolated:
            result.add(_apply_one(item, cache))
        else:
            result.add(_apply_alone(item, resources))
    if not isolated:
        cache.flush()
    source.write_log(result)
    _write_statuses(result)
    refresh_after_events((a.contact_id, a.item.ref.type) for a in result.applied)
    source.end(result)
    return result


def _resources(resource_ids: set[int | None]) -> dict[int | None, StripeResource | None]:
    """The batch's resources (their mappings as they are now); an event without one maps nothing."""
    return {None: None, **{rid: db.session.get(StripeResource, rid) for rid in resource_ids - {None}}}


def _apply_alone(item: Item, resources) -> Applied:
    """One event in a savepoint with a cache of its own, so its failure takes nothing else with it;
    unique-key races and lock waits still replay the whole transaction."""
    try:
        with db.session.begin_nested():
            cache = ContactCache.load([_who(item)], resources, tags_for_event(item.ref.type))
            applied = _apply_one(item, cache)
            cache.flush()
        return applied
    except (IntegrityError, OperationalError):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded failed and retried on its own
        return _failed(item, exc)


def _who(item: Item) -> tuple[str, tuple[int, str] | None]:
    """The event's email and Stripe customer, by which its contact is found (apply/identity.py)."""
    customer_id = item.prepared.customer.id if item.prepared.customer is not None else None
    return item.prepared.email, (item.ref.account_id, customer_id) if customer_id else None


def _apply_one(item: Item, cache: ContactCache) -> Applied:
    """Contact, mapping, tags, commerce effects and triggers of one event."""
    ref, prepared = item.ref, item.prepared
    email, customer = _who(item)
    contact, created, identity_note = cache.contact_for(email, customer, (ref.created, ref.id),
                                                        prepared.customer.email_from_customer)
    writes = plan_field_writes(cache.mapping_for(ref.resource_id), prepared.customer)
    report = apply_field_writes(contact, writes, (ref.created, ref.id), cache)
    cache.add_tags(contact, tags_for_event(ref.type))
    notes = [f"contact {'created' if created else 'updated'}"]
    if identity_note:
        notes.append(identity_note)
    if report.kept_newer:
        notes.append("kept newer " + ", ".join(k.replace("_", " ") for k in report.kept_newer))
    if report.rejected:
        notes.append("left out (value not allowed): " + ", ".join(report.rejected))
    handler = EFFECT_HANDLERS.get(effect_for_event(ref.type))
    if handler is not None:
        notes.append(handler(commerce.Context(event=ref, account_id=ref.account_id, obj=prepared.obj,
                                              contact=contact, stripe_customer_id=prepared.customer.id,
                                              cache=cache)))
    fire_trigger(cache, STRIPE_EVENT_RECEIVED, contact, ref,
                 {"stripe_event_id": ref.stripe_event_id, "type": ref.type})
    reason = "; ".join(notes)
    outcome = OUTCOME_CREATED if created else OUTCOME_UPDATED
    log.debug("Stripe event %s (%s) processed: %s", ref.stripe_event_id, ref.type, reason)
    return Applied(item, outcome, contact.id, synclog.row(ref, outcome, reason[:1].upper() + reason[1:],
                                                          item.attempt, item.started, contact.id))


def _skipped(item: Item) -> Applied:
    """An event with nothing to write (no email, not handled): logged with the reason."""
    reason = item.prepared.skip_reason
    log.info("Stripe event %s (%s) skipped: %s", item.ref.stripe_event_id, item.ref.type, reason)
    return Applied(item, OUTCOME_SKIPPED, None, synclog.row(item.ref, OUTCOME_SKIPPED, reason, item.attempt,
                                                            item.started))


def _failed(item: Item, exc: BaseException) -> Applied:
    """The one way a failure is recorded: the error on the event, a failed row with where it failed."""
    message = short_message(exc)
    retry = will_retry(item.ref.id, item.attempt)
    reason = f"{message} ({'will retry' if retry else f'gave up after attempt {item.attempt}'})"
    item.error = exc
    log.warning("Stripe event %s (%s) failed on attempt %s: %s", item.ref.stripe_event_id, item.ref.type,
                item.attempt, message)
    return Applied(item, OUTCOME_FAILED, None, synclog.row(item.ref, OUTCOME_FAILED, reason, item.attempt,
                                                           item.started, detail=traceback_summary(exc)),
                   error=message)


def _write_statuses(result: BatchResult) -> None:
    """Every claimed event's final status in one statement; failed ones count as queued again now,
    so the sweep gives their retry its grace period."""
    if not result.applied:
        return
    table = StripeEvent.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("row_id"))
        .values(status=bindparam("new_status"), contact_id=bindparam("new_contact"), error=bindparam("new_error")),
        [{"row_id": a.item.ref.id, "new_status": STATUS_FOR[a.outcome], "new_contact": a.contact_id,
          "new_error": a.error} for a in result.applied])
    failed = [a.item.ref.id for a in result.failed]
    if failed:
        db.session.execute(update(table).where(table.c.id.in_(failed)).values(enqueued_at=utcnow()))


def record_failures(items: list[Item], exc: BaseException) -> None:
    """When a batch could not be written at all: leave the error on its unfinished events, in a
    transaction of its own (best effort: the database may be what failed)."""
    try:
        db.session.rollback()
        table = StripeEvent.__table__
        open_ids = set(db.session.scalars(
            update(table).where(table.c.id.in_([i.ref.id for i in items]), table.c.status.not_in(DONE_STATUSES))
            .values(status=EVENT_FAILED, error=short_message(exc)).returning(table.c.id)))
        synclog.record([_failed(i, exc).row for i in items if i.ref.id in open_ids])
        db.session.commit()
    except Exception:  # noqa: BLE001 - the caller re-raises the original error
        db.session.rollback()
        log.exception("Could not record the failure of %s Stripe event(s)", len(items))
