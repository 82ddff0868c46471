"""Writing one page of historical records into CRM data: a batch of the one write path
(apply/batch.py) whose transaction also records the page's events and moves the import's cursor.

Each record becomes a StripeEvent row (historical, id `hist_<kind>_<object id>`, `created` = the
object's `created`) and is applied exactly as a webhook is: same tags, orders, recurring payments,
stamps, triggers and failure handling. Because an imported record is stamped with the object's
`created`, any webhook about it (newer by Stripe's clock) is never overwritten by the import, and a
tie goes to the later arrival as always.

The page and its progress commit together or not at all: a worker killed mid-page leaves nothing,
and the resumed job reads the page again. The transaction starts by checking that this job still
runs its lane of the import (its job id is on the lane's row), so a job the sweep replaced can never
write a page twice; it ends by moving the window's cursor (and cutting it, when windows.plan_split
said so) and adding the page to the import's counts, only while the import is still active.

Logging: one SyncLog row per import (synclog.save_import_row), created by its first saved page and
updated by each page after it with the import's totals, plus a row per skipped or failed record. The
resource counters count records, not pages or imports.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, or_, select, update

from webapp.extensions import db
from webapp.stripe_sync import synclog
from webapp.stripe_sync.apply.batch import (
    ALREADY_DONE, DONE_STATUSES, Abandon, BatchResult, Item, Source, apply,
)
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.apply.prepare import Prepared
from webapp.stripe_sync.client import STRIPE_API_VERSION
from webapp.stripe_sync.history.windows import Split, Window
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, EVENT_QUEUED, OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_SKIPPED, OUTCOME_UPDATED,
    WINDOW_DONE, WINDOW_OPEN, Backfill, BackfillLane, BackfillWindow, EventRef, StripeEvent,
)
from webapp.stripe_sync.nul import json_text_without_nul
from webapp.timeutil import utcnow
from webapp.upsert import dialect_insert


class Superseded(Abandon):
    """Another job owns this import now (the sweep replaced a job it thought dead); stop writing."""


@dataclass
class Record:
    """One listed Stripe object on its way to the CRM."""

    obj: dict
    event_id: str  # hist_<kind>_<object id>
    event_type: str | None  # None: Stripe never sent a subscribed event for it (e.g. a failed charge)
    prepared: Prepared | None = None
    error: BaseException | None = None  # preparing failed (the linked customer could not be fetched)


RATE_MIN_SECONDS = 2.0  # the current rate is measured over at least this long…
RATE_SPAN_SECONDS = 15.0  # …and at most about this long before its starting mark moves on


@dataclass
class Run:
    """What the job running one lane of an import knows of it."""

    backfill_id: int
    lane: int
    lane_id: int
    token: str  # the RQ job id the lane's row must still name
    resource_id: int
    account_id: int
    livemode: bool
    kind: str
    started: float  # monotonic start of this job
    since: datetime | None = None  # when the import began: records applied before it are applied again
    pages: int = 0  # pages this job saved
    records: int = 0  # records this job handled


@dataclass
class PageResult:
    """What a page did, for the progress row and the log."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    passed_over: int = 0

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
    """A real-shaped Event around the object, so the log's detail view and a retry read it like a webhook;
    without NUL characters (JSON spells them \\u0000), as intake stores a delivered event."""
    event = {
        "id": record.event_id, "object": "event", "api_version": STRIPE_API_VERSION,
        "created": int(record.obj.get("created") or 0), "data": {"object": record.obj},
        "livemode": livemode, "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None},
        "type": record.event_type, "historical": True,
    }
    return json_text_without_nul(json.dumps(event, separators=(",", ":"), ensure_ascii=False))


def write_page(run: Run, window: Window, records: list[Record], has_more: bool,
               learned: list[Learned] | None = None, split: Split | None = None) -> PageResult:
    """Write the page, move the window and count it on the import in one transaction; raises Superseded."""
    source = PageSource(run, window, records, has_more, learned, split)
    return source.page_result(apply(source))


class PageSource(Source):
    """A page of listed records as a batch: its transaction checks the lane and records the events
    first, and moves the window and the import on last."""

    def __init__(self, run: Run, window: Window, records: list[Record], has_more: bool,
                 learned: list[Learned] | None = None, split: Split | None = None):
        super().__init__([], learned)
        self.run, self.window, self.records, self.has_more, self.split = run, window, records, has_more, split
        self.label = f"Backfill {run.backfill_id} window {window.id} page {window.pages + 1}"
        self.started = time.monotonic()
        self.passed_over = 0

    def begin(self) -> list[Item]:
        """Check that this job still runs the lane, then insert (or take over) each record's event row."""
        run = self.run
        fenced = db.session.execute(
            update(BackfillLane).where(BackfillLane.id == run.lane_id, BackfillLane.job_id == run.token)
            .values(updated_at=utcnow(), lost=0)).rowcount
        if not fenced:
            raise Superseded(f"backfill {run.backfill_id} lane {run.lane} is no longer run by job {run.token}")
        live = [r for r in self.records if r.event_type]
        self.passed_over = len(self.records) - len(live)
        return self._record_events(live) if live else []

    def _record_events(self, records: list[Record]) -> list[Item]:
        """Insert each record's event row. A record imported before (by an earlier import, or one that
        failed) is taken over with today's data and applied again with the current mapping: that is what
        "Re-sync existing records" and reconnecting with "historical" mean. Stamps keep it forward-only:
        a value a newer event or a hand edit wrote is kept. Records this import already applied (read
        twice after a lost cursor) are passed over."""
        run = self.run
        table = StripeEvent.__table__
        again = table.c.status.not_in(DONE_STATUSES)
        if run.since is not None:
            again = or_(again, table.c.processed_at.is_(None), table.c.processed_at < run.since)
        existing = {row.stripe_event_id: row for row in db.session.execute(
            select(table.c.id, table.c.stripe_event_id, table.c.status, table.c.attempts, table.c.processed_at)
            .where(table.c.account_id == run.account_id, table.c.stripe_event_id.in_([r.event_id for r in records])))}
        now = utcnow()
        fresh = [r for r in records if r.event_id not in existing]
        claimed: dict[str, tuple[int, int]] = {}
        if fresh:
            db.session.execute(
                dialect_insert(table).on_conflict_do_nothing(index_elements=["account_id", "stripe_event_id"]), [{
                    "account_id": run.account_id, "resource_id": run.resource_id, "stripe_event_id": r.event_id,
                    "type": r.event_type, "created": int(r.obj.get("created") or 0), "livemode": run.livemode,
                    "payload": envelope(r, run.livemode), "status": EVENT_QUEUED, "historical": True, "attempts": 1,
                    "received_at": now} for r in fresh])
            claimed.update((row.stripe_event_id, (row.id, 1)) for row in db.session.execute(
                select(table.c.id, table.c.stripe_event_id)
                .where(table.c.account_id == run.account_id,
                       table.c.stripe_event_id.in_([r.event_id for r in fresh]))))
        by_id = {r.event_id: r for r in records}
        for row in existing.values():
            done = row.status in DONE_STATUSES
            if done and (run.since is None or (row.processed_at is not None and row.processed_at >= run.since)):
                continue
            record = by_id[row.stripe_event_id]
            attempt = 1 if done else row.attempts + 1
            got = db.session.execute(
                update(table).where(table.c.id == row.id, again)
                .values(type=record.event_type, payload=envelope(record, run.livemode), status=EVENT_QUEUED,
                        resource_id=run.resource_id, error=None, attempts=attempt)).rowcount
            if got:
                claimed[row.stripe_event_id] = (row.id, attempt)
        items = []
        for record in records:
            if record.event_id not in claimed:
                self.passed_over += 1  # already imported (or processed by its retry meanwhile)
                continue
            row_id, attempt = claimed[record.event_id]
            ref = EventRef(id=row_id, account_id=run.account_id, resource_id=run.resource_id,
                           stripe_event_id=record.event_id, type=record.event_type,
                           created=int(record.obj.get("created") or 0), historical=True)
            items.append(Item(ref=ref, attempt=attempt, prepared=record.prepared, error=record.error,
                              started=self.started))
        return items

    def write_log(self, result: BatchResult) -> None:
        """Rows for skipped and failed records; the import's own row is written last (end), with its totals."""
        synclog.record([a.row for a in result.applied if a.outcome in (OUTCOME_SKIPPED, OUTCOME_FAILED)],
                       counted=False)
        synclog.count(self.run.resource_id, Counter(a.outcome for a in result.applied))

    def end(self, result: BatchResult) -> None:
        """Move the window (cursor, done, cut) and add the page to the import's counts and current rate."""
        run, window, page = self.run, self.window, self.page_result(result)
        last = self.records[-1].obj if self.records else None
        values = dict(pages=BackfillWindow.pages + 1, records=BackfillWindow.records + page.total)
        if last is not None:
            values.update(cursor=last["id"], cursor_created=int(last.get("created") or 0))
        if not self.has_more or not self.records:
            values["state"] = WINDOW_DONE
        elif self.split is not None:
            values["lo"] = self.split.new_lo
        moved = db.session.execute(
            update(BackfillWindow).where(BackfillWindow.id == window.id, BackfillWindow.lane == run.lane,
                                         BackfillWindow.state == WINDOW_OPEN).values(**values)).rowcount
        if not moved:
            raise Superseded(f"backfill {run.backfill_id} window {window.id} is no longer read by lane {run.lane}")
        if self.split is not None and values.get("state") != WINDOW_DONE:
            db.session.execute(BackfillWindow.__table__.insert(), [
                dict(backfill_id=run.backfill_id, lo=lo, hi=hi, state=WINDOW_OPEN, lane=None, pages=0, records=0)
                for lo, hi in self.split.pieces])
        now = utcnow()
        counted = db.session.execute(
            update(Backfill).where(Backfill.id == run.backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
            .values(pages=Backfill.pages + 1 if page.total else case((Backfill.pages == 0, 1), else_=Backfill.pages),
                    imported=Backfill.imported + page.synced,
                    skipped=Backfill.skipped + page.skipped, failed=Backfill.failed + page.failed,
                    passed_over=Backfill.passed_over + page.passed_over, updated_at=now)).rowcount
        if not counted:
            raise Superseded(f"backfill {run.backfill_id} is no longer active")
        row = db.session.execute(select(
            Backfill.imported, Backfill.skipped, Backfill.failed, Backfill.passed_over, Backfill.created_at,
            Backfill.started_at, Backfill.rate_mark_at, Backfill.rate_mark_count)
            .where(Backfill.id == run.backfill_id)).one()
        figures, (created_at, started_at, mark_at, mark_count) = tuple(row[:4]), row[4:]
        processed = sum(figures)
        synclog.save_import_row(run.backfill_id, run.account_id, run.resource_id, figures,
                                (now - (started_at or created_at)).total_seconds())
        elapsed = (now - mark_at).total_seconds() if mark_at is not None else None
        if elapsed is None:
            db.session.execute(update(Backfill).where(Backfill.id == run.backfill_id)
                               .values(rate_mark_at=now, rate_mark_count=processed - page.total))
        elif elapsed >= RATE_MIN_SECONDS:
            rate = (processed - mark_count) / elapsed
            moved_mark = dict(rate_mark_at=now, rate_mark_count=processed) if elapsed >= RATE_SPAN_SECONDS else {}
            db.session.execute(update(Backfill).where(Backfill.id == run.backfill_id).values(rate=rate, **moved_mark))

    def page_result(self, result: BatchResult) -> PageResult:
        """The batch's outcomes counted as the import counts records."""
        counts = result.outcomes
        return PageResult(created=counts[OUTCOME_CREATED], updated=counts[OUTCOME_UPDATED],
                          skipped=counts[OUTCOME_SKIPPED], failed=counts[OUTCOME_FAILED],
                          passed_over=self.passed_over + counts[ALREADY_DONE])
