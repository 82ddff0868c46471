"""One slice of one lane of an import: several windows read at once (one request in flight each, from
a thread), each page prepared and written here, in the job's own thread, as it arrives; windows
cut as they prove full, idle lanes woken for the new ones (history/importer.py explains the whole)."""
from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from webapp.extensions import db
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.apply.prepare import Entry, Resolver
from webapp.stripe_sync.budget import import_pacer
from webapp.stripe_sync.client import client_for_account
from webapp.stripe_sync.events import historical_event_type, resource as resource_spec
from webapp.stripe_sync.history import windows, writer
from webapp.stripe_sync.history.lanes import enqueue, new_job_id, wake_lanes
from webapp.stripe_sync.history.reader import BackfillStop, HistoryReader, Page, ReaderSettings, Waiter
from webapp.stripe_sync.history.windows import Window
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, BACKFILL_CANCELLED, BACKFILL_FINISHED, BACKFILL_PAUSED, BACKFILL_RUNNING,
    RESOURCE_DISCONNECTED, Backfill, BackfillLane, StripeAccount, StripeResource,
)
from webapp.timeutil import utcnow
from webapp.tunables import setting

log = logging.getLogger(__name__)

WAIT_STEP = 0.5  # seconds between cancel checks while backing off
POLL = 0.5  # seconds a lane waits for a page before it checks for a cancel again


class _ImportWaiter(Waiter):
    """Backoff waits (in a lane's fetch thread) that show "paused by rate limit" and stop promptly on a cancel."""

    def __init__(self, run: writer.Run, app=None):
        self.run = run
        self.app = app

    def rate_limited(self, delay: float) -> None:
        """Record the pause, wait, and show "running" again."""
        until = utcnow() + timedelta(seconds=delay)
        self._set(state=BACKFILL_PAUSED, paused_until=until, rate_limited=Backfill.rate_limited + 1)
        self.wait(delay)
        self._set(state=BACKFILL_RUNNING, paused_until=None)

    def wait(self, delay: float) -> None:
        """Sleep in short steps, checking for a cancel between them."""
        deadline = time.monotonic() + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(WAIT_STEP, left))
            self._in_app(check, self.run)

    def _set(self, **values) -> None:
        """A small update of the progress row, while this lane is still this job's."""
        self._in_app(self._update, values)

    def _update(self, values: dict) -> None:
        """See _set."""
        run = self.run
        owned = db.session.scalar(select(BackfillLane.job_id).where(BackfillLane.id == run.lane_id)) == run.token
        changed = owned and db.session.execute(
            update(Backfill).where(Backfill.id == run.backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
            .values(updated_at=utcnow(), **values)).rowcount
        db.session.commit()
        if not changed:
            check(run)

    def _in_app(self, func, *args):
        """Run with the database, in this thread's own app context when called from a fetch thread."""
        if self.app is None:
            return func(*args)
        with self.app.app_context():
            return func(*args)


def check(run: writer.Run) -> None:
    """Stop (BackfillStop) when the import was cancelled, the lane replaced or the resource removed."""
    row = db.session.execute(
        select(Backfill.cancel_requested, BackfillLane.job_id, Backfill.state, StripeResource.status)
        .join(StripeResource, StripeResource.id == Backfill.resource_id)
        .join(BackfillLane, BackfillLane.id == run.lane_id).where(Backfill.id == run.backfill_id)).one()
    db.session.rollback()
    if row.job_id != run.token or row.state not in BACKFILL_ACTIVE:
        raise BackfillStop("superseded")
    if row.cancel_requested:
        end_import(run, BACKFILL_CANCELLED)
        log.info("Backfill %s cancelled", run.backfill_id)
        raise BackfillStop("cancelled")
    if row.status == RESOURCE_DISCONNECTED:
        end_import(run, BACKFILL_CANCELLED, error="The resource was removed, so its import stopped.")
        raise BackfillStop("cancelled")


class LaneJob:
    """One slice of one lane: several windows read at once, each page written here as it arrives."""

    def __init__(self, run: writer.Run):
        self.run = run
        account = db.session.get(StripeAccount, run.account_id)
        self.settings = ReaderSettings.from_config()
        self.client = client_for_account(account)
        self.pacer = import_pacer(account, resource_spec(run.kind).history.api_path)
        self.waiter = _ImportWaiter(run, current_app._get_current_object())
        self.per_lane = max(1, int(setting("BACKFILL_WINDOWS_PER_LANE")))
        self.split_rule = dict(after_pages=int(setting("BACKFILL_SPLIT_AFTER_PAGES")),
                               window_pages=int(setting("BACKFILL_WINDOW_PAGES")),
                               max_windows=int(setting("BACKFILL_MAX_WINDOWS")))
        self.slice_end = run.started + float(setting("BACKFILL_SLICE_SECONDS"))
        self.resolver = Resolver()
        self.readers: dict[int, HistoryReader] = {}
        self.windows: dict[int, Window] = {w.id: w for w in windows.owned(run.backfill_id, run.lane)}
        db.session.rollback()  # nothing stays open while Stripe is asked

    def _fetch(self, window: Window) -> Page:
        """The window's next page (in a fetch thread)."""
        reader = self.readers.get(window.id)
        if reader is None:
            reader = self.readers[window.id] = HistoryReader(self.client, self.run.kind, self.pacer, self.waiter,
                                                             self.settings)
        return reader.fetch(window.cursor, window.cursor_created, window.lo, window.hi)

    def work(self) -> str:
        """Keep up to BACKFILL_WINDOWS_PER_LANE windows in flight; write pages as they come."""
        pool = ThreadPoolExecutor(max_workers=self.per_lane, thread_name_prefix=f"backfill-{self.run.lane}")
        inflight: dict[Future, Window] = {}
        try:
            while True:
                check(self.run)
                out_of_time = self.run.pages > 0 and time.monotonic() >= self.slice_end  # a slice saves a page
                if not out_of_time:
                    self._top_up()
                    busy = {w.id for w in inflight.values()}
                    for window in self.windows.values():
                        if window.id not in busy:
                            inflight[pool.submit(self._fetch, window)] = window
                if not inflight:
                    return self._continue_later() if out_of_time else self._go_idle()
                done, _ = wait(list(inflight), timeout=POLL, return_when=FIRST_COMPLETED)
                for future in done:
                    window = inflight.pop(future)
                    self._write(window, future.result())
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _top_up(self) -> None:
        """Claim waiting windows, newest first, up to this lane's share."""
        room = self.per_lane - len(self.windows)
        if room > 0:
            for window in windows.claim(self.run.backfill_id, self.run.lane, room):
                self.windows[window.id] = window

    def _write(self, window: Window, page: Page) -> None:
        """Prepare the page's records, write them with the window's move (and maybe its cut), then wake lanes."""
        run = self.run
        split = None
        if page.has_more and window.pages + 1 >= self.split_rule["after_pages"]:
            split = windows.plan_split(window, page.objects, page.has_more, windows.open_count(run.backfill_id),
                                       **self.split_rule)
            db.session.rollback()
        records, learned = prepare_records(run, page.objects, self.resolver)
        result = writer.write_page(run, window, records, page.has_more, learned, split)
        run.pages += 1
        run.records += result.total
        _after_page(result)
        window.pages += 1
        window.records += result.total
        if records:
            window.cursor, window.cursor_created = records[-1].obj["id"], int(records[-1].obj.get("created") or 0)
        if not page.has_more or not records:
            del self.windows[window.id]
            self.readers.pop(window.id, None)
        elif split is not None:
            window.lo = split.new_lo
            log.info("Backfill %s: window %s cut at %s into %s more windows", run.backfill_id, window.id,
                     split.new_lo, len(split.pieces))
            wake_lanes(run.backfill_id, len(split.pieces))
            db.session.commit()

    def _go_idle(self) -> str:
        """Nothing left for this lane: give the lane up; the last lane out finishes the import."""
        run = self.run
        db.session.execute(update(BackfillLane).where(BackfillLane.id == run.lane_id, BackfillLane.job_id == run.token)
                           .values(job_id=None, updated_at=utcnow()))
        db.session.commit()
        if windows.open_count(run.backfill_id):
            log.info("Backfill %s lane %s idle; other lanes read the rest", run.backfill_id, run.lane)
            return "idle"
        end_import(run, BACKFILL_FINISHED, owner_checked=False)
        log.info("Backfill %s finished", run.backfill_id)
        return "finished"

    def _continue_later(self) -> str:
        """End this slice: hand the lane, its windows and cursors to a new job at the back of the queue."""
        run = self.run
        job_id = new_job_id(run.backfill_id, run.lane)
        changed = db.session.execute(
            update(BackfillLane).where(BackfillLane.id == run.lane_id, BackfillLane.job_id == run.token)
            .values(job_id=job_id, updated_at=utcnow())).rowcount
        db.session.commit()
        if not changed:
            return "superseded"
        enqueue(run.backfill_id, job_id, lane=run.lane)
        log.info("Backfill %s lane %s: slice done after %s pages; continues in job %s", run.backfill_id, run.lane,
                 run.pages, job_id)
        return "continues"


def prepare_records(run: writer.Run, objects: list[dict], resolver: Resolver
                    ) -> tuple[list[writer.Record], list[Learned]]:
    """Each object as the event it replays, with its customer resolved (outside any transaction), and
    the customers the page told us about (a listed customer, an expanded one), as of now."""
    records, entries, positions = [], [], []
    read_at = int(time.time())
    for obj in objects:
        record = writer.Record(obj=obj, event_id=writer.historical_event_id(run.kind, obj["id"]),
                               event_type=historical_event_type(run.kind, obj))
        if record.event_type is not None:
            entries.append(Entry(run.account_id, run.resource_id, record.event_type, obj, read_at))
            positions.append(len(records))
        records.append(record)
    results, learned = resolver.start(entries).finish()
    for index, prepared in zip(positions, results):
        if isinstance(prepared, BaseException):
            records[index].error = prepared  # this record fails (and is retried); the page goes on
        else:
            records[index].prepared = prepared
    return records, learned


def _after_page(result: writer.PageResult) -> None:
    """After the commit: the import's metrics (failed records are retried like failed webhooks)."""
    from webapp.metrics import BACKFILL_RECORDS

    for outcome, count in (("created", result.created), ("updated", result.updated), ("skipped", result.skipped),
                           ("failed", result.failed), ("passed_over", result.passed_over)):
        if count:
            BACKFILL_RECORDS.labels(outcome=outcome).inc(count)


def end_import(run: writer.Run, state: str, error: str | None = None, owner_checked: bool = True) -> None:
    """Finish, fail or cancel the import while it is active (and, unless told otherwise, while this job
    still runs its lane); the rate becomes the overall one."""
    now = utcnow()
    if owner_checked and db.session.scalar(select(BackfillLane.job_id).where(BackfillLane.id == run.lane_id)) \
            != run.token:
        db.session.rollback()
        return
    row = db.session.execute(select(Backfill.started_at, Backfill.imported + Backfill.skipped + Backfill.failed
                                    + Backfill.passed_over).where(Backfill.id == run.backfill_id)).one_or_none()
    if row is None:
        db.session.rollback()
        return
    started_at, processed = row
    values = dict(state=state, finished_at=now, paused_until=None, updated_at=now)
    if error:
        values["error"] = error[:1000]
    if started_at and processed:
        values["rate"] = processed / max((now - started_at).total_seconds(), 1e-3)
    db.session.execute(update(Backfill).where(Backfill.id == run.backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
                       .values(**values))
    db.session.commit()
