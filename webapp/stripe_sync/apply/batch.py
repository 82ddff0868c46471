"""Processing one recorded Stripe event into CRM data: the body of the `process_event` job.

Steps, each for a reason:
1. Count the attempt in its own small commit, so a worker killed mid-job still leaves a trace and
   the sweep can stop requeuing an event that kills workers (sweep.py).
2. Resolve the customer (maybe a Stripe API call) outside any database transaction, so no lock
   is held while the network is slow.
3. One write transaction that starts by claiming the row (`UPDATE ... WHERE status is not done`).
   The claim opens the transaction before any savepoint (pysqlite would otherwise commit at the
   first RELEASE), takes the row lock on PostgreSQL, and makes the work exactly-once: a second
   run of the same event, concurrent or later, claims nothing and changes nothing.
   Inside it: contact, mapping, tags, e-commerce effects, triggers, the SyncLog row and the
   event's final status all commit together. Unique-key races that savepoints cannot absorb, and
   SQLite "database is locked", roll back and replay the transaction a few times.
4. Any exception: roll back, record a failed SyncLog row and the error on the event in a fresh
   transaction, and re-raise so RQ retries with backoff. A later success sets "processed".

Historical imports (backfill_batch.py) reuse steps 2 and 3 through `prepare_object` and
`apply_to_crm`, a page of records per transaction, so an imported record and its webhook go
through the same rules.
"""
from __future__ import annotations

import json
import logging
import random
import re
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

import stripe
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from webapp.crm.models import Contact
from webapp.crm.service import ValidationError, normalise_email
from webapp.extensions import db
from webapp.stripe_sync.apply import commerce as handlers, contacts as contact_sync
from webapp.stripe_sync.client import describe
from webapp.stripe_sync.apply.customer import NO_EMAIL_REASON, CustomerData, resolve_customer_data
from webapp.stripe_sync.apply.customer_fetch import customer_fetcher
from webapp.stripe_sync.events import Effect, effect_for_event, tags_for_event
from webapp.stripe_sync.models import (
    EVENT_FAILED, EVENT_IGNORED, EVENT_PROCESSED, EVENT_SKIPPED, OUTCOME_CREATED, OUTCOME_FAILED,
    OUTCOME_SKIPPED, OUTCOME_UPDATED, StripeAccount, StripeEvent, StripeResource, SyncLog,
)
from webapp.stripe_sync.sync_settings import max_attempts
from webapp.stripe_sync.apply.triggers import STRIPE_EVENT_RECEIVED, fire_trigger
from webapp.timeutil import utcnow

if TYPE_CHECKING:
    from webapp.stripe_sync.apply.contact_cache import PageCache

log = logging.getLogger(__name__)

DONE_STATUSES = (EVENT_PROCESSED, EVENT_SKIPPED, EVENT_IGNORED)
TRANSACTION_TRIES = 6
EFFECT_HANDLERS = {
    Effect.RECURRING_PAYMENT: handlers.apply_subscription,
    Effect.ORDER: handlers.apply_checkout_session,
    Effect.REFUND: handlers.apply_refund,
}


@dataclass
class Prepared:
    """Everything read before the write transaction: the event's object and its customer."""

    event_type: str
    obj: dict
    customer: CustomerData | None
    email: str | None
    skip_reason: str | None = None


def process_event(event_row_id: int) -> str:
    """Turn one recorded event into CRM data exactly once; raises (after recording why) to get a retry."""
    started = time.monotonic()
    attempt = _start_attempt(event_row_id)
    if attempt is None:
        return "already done"
    try:
        prepared = _prepare(event_row_id)
        return _write(event_row_id, attempt, prepared, started)
    except Exception as exc:
        _record_failure(event_row_id, attempt, exc, started)
        raise


def _start_attempt(event_row_id: int) -> int | None:
    """Count this attempt and return its number; None when the event needs no work."""
    bumped = db.session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_row_id, StripeEvent.status.not_in(DONE_STATUSES))
        .values(attempts=StripeEvent.attempts + 1)
    ).rowcount
    if not bumped:
        db.session.rollback()
        status = db.session.scalar(select(StripeEvent.status).where(StripeEvent.id == event_row_id))
        if status is None:
            log.warning("Stripe event row %s does not exist; nothing to process", event_row_id)
        else:
            log.info("Stripe event row %s is already %s; nothing to do", event_row_id, status)
        db.session.rollback()
        return None
    db.session.commit()
    attempt = db.session.scalar(select(StripeEvent.attempts).where(StripeEvent.id == event_row_id))
    db.session.rollback()
    return attempt


def _prepare(event_row_id: int) -> Prepared:
    """Parse the payload and resolve the customer, fetching it from Stripe when only its id is known."""
    event = db.session.get(StripeEvent, event_row_id)
    account = db.session.get(StripeAccount, event.account_id)
    payload = json.loads(event.payload)
    obj = payload["data"]["object"]
    event_type = event.type
    fetch = customer_fetcher(account) if effect_for_event(event_type) is not None else None
    db.session.rollback()  # no transaction (nor SQLite snapshot) stays open during the API call
    return prepare_object(event_type, obj, fetch)


def prepare_object(event_type: str, obj: dict, fetch) -> Prepared:
    """The read half of an event, shared with historical imports so both resolve customers alike."""
    if effect_for_event(event_type) is None:
        return Prepared(event_type, obj, None, None, f"{event_type} is not an event this integration handles")
    customer = resolve_customer_data(event_type, obj, fetch)
    if not customer.has_email:
        return Prepared(event_type, obj, customer, None, NO_EMAIL_REASON)
    try:
        email = normalise_email(customer.email)
    except ValidationError:
        return Prepared(event_type, obj, customer, None, "invalid email")
    return Prepared(event_type, obj, customer, email)


def _write(event_row_id: int, attempt: int, prepared: Prepared, started: float) -> str:
    """Run the write transaction, replaying it when a concurrent writer got in the way."""
    return commit_with_replays(lambda: _apply(event_row_id, attempt, prepared, started),
                               f"Stripe event row {event_row_id}")


def commit_with_replays(body, what: str):
    """`body()` then commit; lock waits, deadlocks and unique-key races roll back and replay it a few
    times (the replay sees what the other writer committed). Shared by single events and batches."""
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


def _apply(event_row_id: int, attempt: int, prepared: Prepared, started: float) -> str:
    """Everything one event changes, inside one transaction the caller commits."""
    claimed = db.session.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_row_id, StripeEvent.status.not_in(DONE_STATUSES))
        .values(processed_at=utcnow())
    ).rowcount
    if not claimed:
        log.info("Stripe event row %s was finished by another run; nothing to do", event_row_id)
        return "already done"
    event = db.session.get(StripeEvent, event_row_id, populate_existing=True)
    resource = db.session.get(StripeResource, event.resource_id) if event.resource_id else None

    if prepared.skip_reason:
        event.status, event.error, event.contact_id = EVENT_SKIPPED, None, None
        db.session.add(_log(event, attempt, started, OUTCOME_SKIPPED, prepared.skip_reason))
        log.info("Stripe event %s (%s) skipped: %s", event.stripe_event_id, event.type, prepared.skip_reason)
        return OUTCOME_SKIPPED

    outcome, contact, reason = apply_to_crm(event, resource, prepared)
    event.status, event.error, event.contact_id = EVENT_PROCESSED, None, contact.id
    db.session.add(_log(event, attempt, started, outcome, reason, contact.id))
    log.debug("Stripe event %s (%s) processed: %s", event.stripe_event_id, event.type, reason)
    return outcome


def apply_to_crm(event, resource: StripeResource | None, prepared: Prepared,
                 cache: PageCache | None = None) -> tuple[str, Contact, str]:
    """Contact, mapping, tags, effects and triggers of one event: the one write path webhooks and imports share.

    `event` is a StripeEvent or anything with its columns (historical imports pass a light stand-in);
    `cache` holds a page's prefetched rows so an import does not query per record."""
    if cache is None:
        contact, created = contact_sync.get_or_create_contact(prepared.email)
        contact = contact_sync.lock_contact(contact)
        mapping = [(m.stripe_field, m.field.key) for m in resource.mappings] if resource else []
    else:
        contact, created = cache.contact_for(prepared.email)
        mapping = cache.mapping_for(event.resource_id)
    stamp = (event.created, event.id)
    writes = contact_sync.plan_field_writes(mapping, prepared.customer)
    report = contact_sync.apply_field_writes(contact, writes, stamp, cache)
    contact_sync.add_tags(contact, tags_for_event(event.type), cache)

    notes = [f"contact {'created' if created else 'updated'}"]
    if report.kept_newer:
        notes.append("kept newer " + ", ".join(k.replace("_", " ") for k in report.kept_newer))
    if report.rejected:
        notes.append("left out (value not allowed): " + ", ".join(report.rejected))
    handler = EFFECT_HANDLERS.get(effect_for_event(event.type))
    if handler is not None:
        ctx = handlers.Context(event=event, account_id=event.account_id, obj=prepared.obj, contact=contact,
                               stripe_customer_id=prepared.customer.id, cache=cache)
        notes.append(handler(ctx))
    fire_trigger(STRIPE_EVENT_RECEIVED, contact, event,
                 {"stripe_event_id": event.stripe_event_id, "type": event.type}, cache)
    reason = "; ".join(notes)
    return (OUTCOME_CREATED if created else OUTCOME_UPDATED), contact, reason[:1].upper() + reason[1:]


def _log(event: StripeEvent, attempt: int, started: float, outcome: str, reason: str,
         contact_id: int | None = None, detail: str | None = None) -> SyncLog:
    """One SyncLog row for this attempt."""
    return SyncLog(
        account_id=event.account_id, resource_id=event.resource_id, event_row_id=event.id,
        stripe_event_id=event.stripe_event_id, event_type=event.type, contact_id=contact_id,
        outcome=outcome, reason=reason, detail=detail, attempt=attempt,
        duration_ms=int((time.monotonic() - started) * 1000), historical=event.historical,
    )


# --- failures ------------------------------------------------------------------------------------

SECRET_RE = re.compile(r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9*]+|\bwhsec_[A-Za-z0-9]+")


def scrub(text: str) -> str:
    """Mask anything shaped like a Stripe key or signing secret."""
    return SECRET_RE.sub(lambda m: m.group(0).split("_")[0] + "_…", text)


def short_message(exc: BaseException) -> str:
    """One line for the sync log and the event: what failed, without SQL parameters or secrets."""
    if isinstance(exc, stripe.StripeError):
        status = getattr(exc, "http_status", None)
        text = f"Stripe API error{f' {status}' if status else ''}: {describe(exc).message}"
    elif isinstance(exc, StatementError) and exc.orig is not None:
        text = f"Database error: {type(exc.orig).__name__}: {exc.orig}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return scrub(" ".join(text.split()))[:300]


def traceback_summary(exc: BaseException, frames: int = 12) -> str:
    """Where it failed: our own frames plus the innermost two, without locals or argument values."""
    stack = traceback.extract_tb(exc.__traceback__)
    keep = [f for n, f in enumerate(stack) if "/webapp/" in f.filename or n >= len(stack) - 2][-frames:]
    lines = [f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
             for f in keep]
    lines.append(short_message(exc))
    return scrub("\n".join(lines))[:4000]


def _will_retry(attempt: int) -> bool:
    """Whether RQ will run this job again; outside RQ, judged by the configured attempts."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        return bool(job.retries_left)
    return attempt < max_attempts()


def _record_failure(event_row_id: int, attempt: int, exc: BaseException, started: float,
                    retry: bool | None = None) -> None:
    """Leave the error on the event and a failed SyncLog row, in a transaction of their own; `retry`
    says whether another attempt is coming when the caller, not the current RQ job, decides that."""
    try:
        db.session.rollback()
        event = db.session.get(StripeEvent, event_row_id, populate_existing=True)
        if event is None or event.status in DONE_STATUSES:
            db.session.rollback()
            return
        message = short_message(exc)
        if retry is None:
            retry = _will_retry(attempt)
        event.status, event.error = EVENT_FAILED, message
        db.session.add(_log(event, attempt, started, OUTCOME_FAILED,
                            f"{message} ({'will retry' if retry else f'gave up after attempt {attempt}'})",
                            detail=traceback_summary(exc)))
        db.session.commit()
        log.warning("Stripe event %s (%s) failed on attempt %s: %s", event.stripe_event_id, event.type,
                    attempt, message)
    except Exception:
        db.session.rollback()
        log.exception("Could not record the failure of Stripe event row %s", event_row_id)
