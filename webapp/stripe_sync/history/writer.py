"""Writing one page of historical records into CRM data: one transaction, exactly once per page.

Each record becomes a StripeEvent row (historical, id `hist_<kind>_<object id>`, `created` = the
object's `created`) and goes through `processing.apply_to_crm`, the write path of webhooks: same
tags, orders, recurring payments, stamps and triggers. Because an imported record is stamped with
the object's `created`, any webhook about it (newer by Stripe's clock) is never overwritten by the
import, and a tie goes to the later arrival as always.

The page's transaction also moves the import's cursor, so the page and its progress commit together
or not at all: a worker killed mid-page leaves nothing, and the resumed job reads the page again.
It starts by checking that this job still owns the import (its job id is on the row), so a job the
sweep replaced can never write a page twice.

Fast and careful modes: a page is first written with the page cache (backfill_cache.py) and no
savepoints. If anything fails that is not a lock wait, the page is rolled back and written again
record by record, each in a savepoint, with the webhook path's own race handling; a record that
still fails is left failed with its error (one SyncLog row) and queued for `process_event`
retries after the commit, like a webhook that failed. Lock waits (SQLite "database is locked",
PostgreSQL deadlocks) replay the page as they replay a webhook.

Logging: one SyncLog row per page (historical, outcome created/updated, or ignored when nothing
synced), plus a row per skipped or failed record. The resource counters count records, not pages.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from webapp.extensions import db
from webapp.stripe_sync.apply.contact_cache import prefetch
from webapp.stripe_sync.client import STRIPE_API_VERSION
from webapp.stripe_sync.events import tags_for_event
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, EVENT_FAILED, EVENT_PROCESSED, EVENT_QUEUED, EVENT_SKIPPED, OUTCOME_CREATED,
    OUTCOME_FAILED, OUTCOME_IGNORED, OUTCOME_SKIPPED, OUTCOME_UPDATED, Backfill, ResourceCounter, StripeEvent,
    StripeResource, SyncLog, COUNTER_SHARDS,
)
from webapp.stripe_sync.apply.batch import (
    DONE_STATUSES, TRANSACTION_TRIES, Prepared, _log, _transient, apply_to_crm, short_message, traceback_summary,
)
from webapp.stripe_sync.sync_settings import max_attempts
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)


class Superseded(Exception):
    """Another job owns this import now (the sweep replaced a job it thought dead); stop writing."""


@dataclass
class Record:
    """One listed Stripe object on its way to the CRM."""

    obj: dict
    event_id: str  # hist_<kind>_<object id>
    event_type: str | None  # None: Stripe never sent a subscribed event for it (e.g. a failed charge)
    prepared: Prepared | None = None
    error: BaseException | None = None  # preparing failed (the linked customer could not be fetched)


@dataclass
class EventRef:
    """The StripeEvent columns the write path reads, without loading the payload back."""

    id: int
    account_id: int
    resource_id: int
    stripe_event_id: str
    type: str
    created: int
    historical: bool = True


@dataclass
class PageJob:
    """Who writes the page and where it sits: the importer's state that the transaction moves on."""

    backfill_id: int
    token: str
    resource_id: int
    account_id: int
    livemode: bool
    kind: str
    page_number: int
    run_started: float  # monotonic start of this job, for the rate
    run_records: int  # records this job handled before this page


@dataclass
class PageResult:
    """What a page did, for the progress row and the log."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    passed_over: int = 0
    retry_ids: list[int] = field(default_factory=list)
    careful: bool = False

    @property
    def synced(self) -> int:
        """Records that created or updated a contact."""
        return self.created + self.updated

    @property
    def total(self) -> int:
        """Every record of the page."""
        return self.synced + self.skipped + self.failed + self.passed_over


def historical_event_id(kind: str, object_id: str) -> str:
    """Unique per account, so a record seen twice maps to the same event row."""
    return f"hist_{kind}_{object_id}"


def envelope(record: Record, livemode: bool) -> str:
    """A real-shaped Event around the object, so the log's detail view and a retry read it like a webhook."""
    return json.dumps({
        "id": record.event_id, "object": "event", "api_version": STRIPE_API_VERSION,
        "created": int(record.obj.get("created") or 0), "data": {"object": record.obj},
        "livemode": livemode, "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None},
        "type": record.event_type, "historical": True,
    }, separators=(",", ":"), ensure_ascii=False)


def write_page(job: PageJob, records: list[Record], cursor: str | None, cursor_created: int | None) -> PageResult:
    """Write the page and move the cursor in one transaction, replaying it on lock waits; raises Superseded."""
    started = time.monotonic()
    careful = False
    for tries in range(1, TRANSACTION_TRIES + 1):
        try:
            result = _write(job, records, cursor, cursor_created, careful, started)
            db.session.commit()
            return result
        except Superseded:
            db.session.rollback()
            raise
        except OperationalError as exc:
            db.session.rollback()
            if tries == TRANSACTION_TRIES or not _transient(exc):
                raise
            delay = random.uniform(0.01, 0.05) * tries
            log.info("Backfill %s page %s: transaction conflict; replaying in %.2f s", job.backfill_id,
                     job.page_number, delay)
            time.sleep(delay)
        except Exception as exc:  # noqa: BLE001 - replayed record by record, where failures are isolated
            db.session.rollback()
            if careful or tries == TRANSACTION_TRIES:
                raise
            level = logging.INFO if isinstance(exc, IntegrityError) else logging.WARNING
            log.log(level, "Backfill %s page %s: %s; writing it again record by record", job.backfill_id,
                    job.page_number, short_message(exc))
            careful = True
    raise RuntimeError("unreachable")  # pragma: no cover


def _insert_ignoring_duplicates():
    """INSERT … ON CONFLICT DO NOTHING on the event table, in the session's dialect."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(StripeEvent.__table__).on_conflict_do_nothing(index_elements=["account_id", "stripe_event_id"])


def _record_events(job: PageJob, records: list[Record], result: PageResult) -> list[tuple[Record, EventRef]]:
    """Insert (or claim) each record's event row; records already done are passed over."""
    by_id = {r.event_id: r for r in records}
    table = StripeEvent.__table__
    existing = {row.stripe_event_id: row for row in db.session.execute(
        select(table.c.id, table.c.stripe_event_id, table.c.status)
        .where(table.c.account_id == job.account_id, table.c.stripe_event_id.in_(list(by_id))))}
    now = utcnow()
    fresh = [r for r in records if r.event_id not in existing]
    if fresh:
        db.session.execute(_insert_ignoring_duplicates(), [{
            "account_id": job.account_id, "resource_id": job.resource_id, "stripe_event_id": r.event_id,
            "type": r.event_type, "created": int(r.obj.get("created") or 0), "livemode": job.livemode,
            "payload": envelope(r, job.livemode), "status": EVENT_QUEUED, "historical": True, "attempts": 1,
            "received_at": now} for r in fresh])
    claimed: dict[str, int] = {}
    if fresh:
        claimed.update((row.stripe_event_id, row.id) for row in db.session.execute(
            select(table.c.id, table.c.stripe_event_id)
            .where(table.c.account_id == job.account_id,
                   table.c.stripe_event_id.in_([r.event_id for r in fresh]))))
    retry = [row for row in existing.values() if row.status not in DONE_STATUSES]
    for row in retry:
        # Imported before but not finished (it failed): this page takes it over with today's data.
        record = by_id[row.stripe_event_id]
        got = db.session.execute(
            update(table).where(table.c.id == row.id, table.c.status.not_in(DONE_STATUSES))
            .values(type=record.event_type, payload=envelope(record, job.livemode), status=EVENT_QUEUED,
                    attempts=table.c.attempts + 1)).rowcount
        if got:
            claimed[row.stripe_event_id] = row.id
    refs = []
    for record in records:
        row_id = claimed.get(record.event_id)
        if row_id is None:
            result.passed_over += 1  # already imported (or processed by its retry meanwhile)
            continue
        refs.append((record, EventRef(id=row_id, account_id=job.account_id, resource_id=job.resource_id,
                                      stripe_event_id=record.event_id, type=record.event_type,
                                      created=int(record.obj.get("created") or 0))))
    return refs


def _write(job: PageJob, records: list[Record], cursor: str | None, cursor_created: int | None,
           careful: bool, started: float) -> PageResult:
    """The page's transaction body; the caller commits."""
    fenced = db.session.execute(
        update(Backfill).where(Backfill.id == job.backfill_id, Backfill.job_id == job.token,
                               Backfill.state.in_(BACKFILL_ACTIVE))
        .values(updated_at=utcnow())).rowcount
    if not fenced:
        raise Superseded(f"backfill {job.backfill_id} is no longer run by job {job.token}")
    result = PageResult(careful=careful)
    resource = db.session.get(StripeResource, job.resource_id)
    live = [r for r in records if r.event_type]
    result.passed_over = len(records) - len(live)
    refs = _record_events(job, live, result) if live else []

    cache = None
    if not careful:
        mapping = [(m.stripe_field, m.field.key) for m in resource.mappings]
        emails = [r.prepared.email for r, _ref in refs if r.error is None and not r.prepared.skip_reason]
        tags = {t for _r, ref in refs for t in tags_for_event(ref.type)}
        cache = prefetch(emails, mapping, sorted(tags))

    statuses: list[dict] = []
    now = utcnow()
    for record, ref in refs:
        error = record.error
        if error is None and record.prepared.skip_reason:
            reason = record.prepared.skip_reason
            db.session.add(_log(ref, 1, started, OUTCOME_SKIPPED, reason))
            statuses.append(_status(ref, EVENT_SKIPPED, now))
            result.skipped += 1
            continue
        if error is None:
            try:
                if careful:
                    with db.session.begin_nested():
                        outcome, contact, _reason = apply_to_crm(ref, resource, record.prepared)
                else:
                    outcome, contact, _reason = apply_to_crm(ref, resource, record.prepared, cache)
            except OperationalError as exc:
                if not careful or _transient(exc):
                    raise
                error = exc
            except Exception as exc:  # noqa: BLE001 - careful mode isolates the record; fast mode replays
                if not careful:
                    raise
                error = exc
        if error is not None:
            _fail(ref, error, started, statuses, result, now)
            continue
        statuses.append(_status(ref, EVENT_PROCESSED, now, contact_id=contact.id))
        if outcome == OUTCOME_CREATED:
            result.created += 1
        else:
            result.updated += 1
    if cache is not None:
        cache.flush()
    if statuses:
        table = StripeEvent.__table__
        db.session.execute(
            update(table).where(table.c.id == bindparam("row_id"))
            .values(status=bindparam("new_status"), contact_id=bindparam("new_contact"),
                    error=bindparam("new_error"), processed_at=bindparam("new_processed"),
                    enqueued_at=bindparam("new_enqueued")),
            statuses)
    _log_page(job, live, result, started)
    _advance(job, records, result, cursor, cursor_created)
    return result


def _status(ref: EventRef, status: str, now, contact_id: int | None = None, error: str | None = None,
            enqueued=None) -> dict:
    """One row of the bulk status update."""
    return {"row_id": ref.id, "new_status": status, "new_contact": contact_id, "new_error": error,
            "new_processed": now, "new_enqueued": enqueued}


def _fail(ref: EventRef, exc: BaseException, started: float, statuses: list, result: PageResult, now) -> None:
    """A record that could not be written: failed like a webhook would be, and queued for retries."""
    message = short_message(exc)
    retry = max_attempts() > 1
    db.session.add(_log(ref, 1, started, OUTCOME_FAILED,
                        f"{message} ({'will retry' if retry else 'gave up after attempt 1'})",
                        detail=traceback_summary(exc)))
    statuses.append(_status(ref, EVENT_FAILED, now, error=message, enqueued=now if retry else None))
    result.failed += 1
    if retry:
        result.retry_ids.append(ref.id)
    log.warning("Backfill: %s (%s) failed: %s", ref.stripe_event_id, ref.type, message)


def _log_page(job: PageJob, live: list[Record], result: PageResult, started: float) -> None:
    """The page's SyncLog row, and the counters moved to count records rather than rows."""
    parts = [f"{result.created} created", f"{result.updated} updated", f"{result.skipped} skipped"]
    if result.failed:
        parts.append(f"{result.failed} failed")
    if result.passed_over:
        parts.append(f"{result.passed_over} passed over")
    reason = f"Imported page {job.page_number}: {result.total} records ({', '.join(parts)})"
    outcome = OUTCOME_CREATED if result.created else OUTCOME_UPDATED if result.updated else OUTCOME_IGNORED
    types = Counter(r.event_type for r in live)
    event_type = types.most_common(1)[0][0] if types else f"{job.kind} (historical)"
    db.session.add(SyncLog(account_id=job.account_id, resource_id=job.resource_id, event_type=event_type,
                           outcome=outcome, reason=reason, attempt=1, historical=True,
                           duration_ms=int((time.monotonic() - started) * 1000)))
    extra = {OUTCOME_CREATED: result.created, OUTCOME_UPDATED: result.updated}
    if outcome in extra:
        extra[outcome] -= 1  # the page row itself is counted by the SyncLog hook
    _bump_counters(job.resource_id, extra)


def _bump_counters(resource_id: int, counts: dict[str, int]) -> None:
    """Add to this process's counter shards, the same upsert the SyncLog hook does for one row."""
    import os

    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = ResourceCounter.__table__
    for outcome, count in counts.items():
        if count <= 0:
            continue
        stmt = insert(table).values(resource_id=resource_id, outcome=outcome, shard=os.getpid() % COUNTER_SHARDS,
                                    count=count)
        db.session.execute(stmt.on_conflict_do_update(index_elements=["resource_id", "outcome", "shard"],
                                                      set_={"count": table.c["count"] + count}))


def _advance(job: PageJob, records: list[Record], result: PageResult, cursor: str | None,
             cursor_created: int | None) -> None:
    """Move the import's cursor and counts in the page's transaction."""
    last = records[-1].obj if records else None
    elapsed = max(time.monotonic() - job.run_started, 1e-6)
    rate = (job.run_records + result.total) / elapsed
    db.session.execute(
        update(Backfill).where(Backfill.id == job.backfill_id)
        .values(cursor=last["id"] if last else cursor,
                cursor_created=int(last.get("created") or 0) if last else cursor_created,
                pages=Backfill.pages + 1, imported=Backfill.imported + result.synced,
                skipped=Backfill.skipped + result.skipped, failed=Backfill.failed + result.failed,
                passed_over=Backfill.passed_over + result.passed_over, lost=0, rate=rate,
                updated_at=utcnow()))
