"""Historical sync: import a resource's existing Stripe records in the background, visibly and safely.

A Backfill row is the import: its state (queued, running, paused by rate limit, finished, failed,
cancelled) and its counts. Its history is cut into windows of `created` (windows.py), each with its
own cursor, and read by lanes: RQ jobs `webapp.jobs.run_backfill(id, lane)`, each reading up to
BACKFILL_WINDOWS_PER_LANE windows at once (one request in flight per window, from a thread) and
writing each page in one transaction that also moves its window (writer.py). Decisions:
- A lane's row names the one RQ job allowed to write its windows' pages; whoever queues a job for
  a lane (start, resume, a slice's continuation, the sweep, a lane woken by a cut) writes the new
  id first, so a replaced job can never save a page.
- Lanes: an import starts with lane 0 and one window. When a window is cut, idle lanes are woken
  for the new windows, up to BACKFILL_LANES and never more than the live workers less one, so a
  worker is always left for webhook events. A lane with nothing left to read goes idle; the last
  one to find every window read finishes the import.
- Time slices: a lane runs for BACKFILL_SLICE_SECONDS, then queues its continuation at the back of
  the queue and returns (its windows and cursors stay its own), so webhook jobs keep flowing even
  on a single worker. The state stays "running" between slices.
- Resumable: a worker killed mid-page loses only that page's uncommitted transaction. The worker
  sweep (queue/sweep.py) notices the lane's dead job and queues a new one, which continues its
  windows from their saved cursors. After BACKFILL_MAX_LOST requeues of a lane without a saved page
  in between, the import is marked failed instead of killing workers forever; "Resume" continues it.
- Cancel sets a flag; each lane stops before its next page (or during a backoff wait). A cancel
  while still queued ends the import at once. Removing the resource stops its import the same way.
  Resume hands every unfinished window, cursor and all, to fresh lanes.
- A failure that is not about one record (Stripe refusing the key, a 429 storm outlasting the
  retries, a bug) marks the import failed with the reason; "Resume" continues from the cursors.
- Every list request waits for the import's budgets (budget.import_pacer): its list endpoint's,
  every import of the account's, and the account's, which webhook processing shares.
- Historical records fire automation triggers only when the resource was connected with "Also
  trigger automations for historical records" (apply/triggers.py enforces it for every event).
"""
from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta

import stripe
from flask import current_app
from sqlalchemy import func, select, update

from webapp.extensions import db
from webapp.redis_queue import get_queue, get_redis
from webapp.stripe_sync.history import windows, writer
from webapp.stripe_sync.history.reader import (
    BackfillStop, HistoryReader, Page, RateLimitedTooLong, ReaderSettings, Waiter,
)
from webapp.stripe_sync.history.windows import Window
from webapp.tunables import setting
from webapp.stripe_sync.client import StripeProblem, client_for_account, describe
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN
from webapp.stripe_sync.events import historical_event_type, resource as resource_spec
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, BACKFILL_CANCELLED, BACKFILL_FAILED, BACKFILL_FINISHED, BACKFILL_PAUSED, BACKFILL_QUEUED,
    BACKFILL_RUNNING, RESOURCE_DISCONNECTED, SYNC_HISTORICAL, Backfill, BackfillLane, StripeAccount,
    StripeResource,
)
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.apply.prepare import Entry, Resolver
from webapp.stripe_sync.budget import import_pacer
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

JOB_FUNC = "webapp.jobs.run_backfill"
WAIT_STEP = 0.5  # seconds between cancel checks while backing off
POLL = 0.5  # seconds a lane waits for a page before it checks for a cancel again


def new_job_id(backfill_id: int, lane: int = 0) -> str:
    """A fresh id per job, so the sweep can tell a slice's job from its continuation."""
    return f"stripe-backfill-{backfill_id}-{lane}-{uuid.uuid4().hex[:10]}"


def latest_for(resource_id: int) -> Backfill | None:
    """The resource's most recent import, for the progress display."""
    return db.session.scalar(select(Backfill).where(Backfill.resource_id == resource_id)
                             .order_by(Backfill.id.desc()).limit(1))


def enqueue(backfill_id: int, job_id: str, queue=None, lane: int = 0) -> bool:
    """Queue one slice of a lane; False (logged) when Redis is down, and the sweep queues it later."""
    try:
        (queue or get_queue()).enqueue(
            JOB_FUNC, backfill_id, lane, job_id=job_id, job_timeout=int(setting("BACKFILL_JOB_TIMEOUT")),
            result_ttl=300, description=f"import Stripe history (backfill {backfill_id}, lane {lane})")
        return True
    except REDIS_DOWN as exc:
        log.warning("Backfill %s lane %s not queued, Redis unavailable (%s); the sweep will queue it", backfill_id,
                    lane, type(exc).__name__)
        return False


def start_backfill(resource: StripeResource, queue=None) -> Backfill:
    """Queue the import of a resource's existing records; connect.finish calls it after its commit."""
    backfill = Backfill(resource_id=resource.id, state=BACKFILL_QUEUED, updated_at=utcnow())
    db.session.add(backfill)
    db.session.flush()
    windows.first_window(backfill.id)
    lanes = max(1, int(setting("BACKFILL_LANES")))
    backfill.job_id = new_job_id(backfill.id, 0)
    db.session.add_all(BackfillLane(backfill_id=backfill.id, number=n, job_id=backfill.job_id if n == 0 else None,
                                    lost=0, updated_at=utcnow()) for n in range(lanes))
    db.session.commit()
    enqueue(backfill.id, backfill.job_id, queue, 0)
    log.info("Backfill %s queued for %s resource %s", backfill.id, resource.kind, resource.id)
    return backfill


def start_if_historical(resource: StripeResource) -> Backfill | None:
    """Start the import when the resource was connected with "Sync historical records"; never raises."""
    if resource.sync_type != SYNC_HISTORICAL:
        return None
    try:
        return start_backfill(resource)
    except Exception:  # noqa: BLE001 - the connection is made; the user can see and resume the import
        db.session.rollback()
        log.exception("Could not start the historical import of resource %s", resource.id)
        return None


def request_cancel(backfill_id: int) -> bool:
    """The "Cancel" button: a queued import ends now, a running one before each lane's next page."""
    now = utcnow()
    changed = db.session.execute(
        update(Backfill).where(Backfill.id == backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
        .values(cancel_requested=True, updated_at=now)).rowcount
    db.session.execute(
        update(Backfill).where(Backfill.id == backfill_id, Backfill.state == BACKFILL_QUEUED)
        .values(state=BACKFILL_CANCELLED, finished_at=now, paused_until=None))
    db.session.commit()
    if changed:
        log.info("Backfill %s: cancel requested", backfill_id)
    return bool(changed)


def resume(backfill_id: int) -> bool:
    """The "Resume" button of a failed or cancelled import: every unfinished window continues from its cursor."""
    backfill = db.session.get(Backfill, backfill_id)
    if backfill is None or backfill.state not in (BACKFILL_FAILED, BACKFILL_CANCELLED) \
            or backfill.resource.status == RESOURCE_DISCONNECTED:
        db.session.rollback()
        return False
    changed = db.session.execute(
        update(Backfill).where(Backfill.id == backfill_id, Backfill.state.in_((BACKFILL_FAILED, BACKFILL_CANCELLED)))
        .values(state=BACKFILL_QUEUED, cancel_requested=False, error=None, lost=0, rate=None, rate_mark_at=None,
                finished_at=None, paused_until=None, updated_at=utcnow())).rowcount
    if not changed:
        db.session.rollback()
        return False
    windows.release_all(backfill_id)
    db.session.execute(update(BackfillLane).where(BackfillLane.backfill_id == backfill_id)
                       .values(job_id=None, lost=0, updated_at=utcnow()))
    if not db.session.scalar(select(func.count()).select_from(BackfillLane)
                             .where(BackfillLane.backfill_id == backfill_id)):
        db.session.add(BackfillLane(backfill_id=backfill_id, number=0, lost=0, updated_at=utcnow()))
    db.session.commit()
    woken = wake_lanes(backfill_id, max(1, windows.open_count(backfill_id)), at_least_one=True)
    db.session.commit()
    log.info("Backfill %s resumed: %s lanes for its %s unfinished windows", backfill_id, woken,
             windows.open_count(backfill_id))
    return True


STALE_SECONDS = 30  # a running import that saved nothing for this long shows no current rate


def current_rate(backfill: Backfill) -> float | None:
    """Records per second lately while the import runs (None when nothing was saved for a while);
    the overall rate once it ended."""
    if not backfill.is_active:
        return backfill.rate
    if backfill.rate is None or (utcnow() - backfill.updated_at).total_seconds() > STALE_SECONDS:
        return None
    return backfill.rate


def stalled(backfill: Backfill) -> bool:
    """Running, yet nothing saved for a while: its worker is gone and the sweep has not requeued it yet."""
    return backfill.state == BACKFILL_RUNNING and (utcnow() - backfill.updated_at).total_seconds() > STALE_SECONDS


def allowed_lanes() -> int:
    """Lanes that may run at once: BACKFILL_LANES, but one worker is always left for webhook events."""
    from rq import Worker

    lanes = max(1, int(setting("BACKFILL_LANES")))
    try:
        workers = Worker.count(connection=get_redis())
    except Exception:  # noqa: BLE001 - Redis away: the sweep wakes lanes later
        return 1
    return max(1, min(lanes, workers - 1))


def wake_lanes(backfill_id: int, windows_waiting: int, at_least_one: bool = False, queue=None) -> int:
    """Give idle lanes a job for windows nobody reads yet; how many were woken."""
    per_lane = max(1, int(setting("BACKFILL_WINDOWS_PER_LANE")))
    lanes = db.session.execute(select(BackfillLane.id, BackfillLane.number, BackfillLane.job_id)
                               .where(BackfillLane.backfill_id == backfill_id).order_by(BackfillLane.number)).all()
    running = sum(1 for lane in lanes if lane.job_id)
    wanted = min(allowed_lanes() - running, -(-windows_waiting // per_lane))
    if at_least_one and running == 0:
        wanted = max(wanted, 1)
    woken = 0
    for lane in lanes:
        if woken >= wanted:
            break
        if lane.job_id:
            continue
        job_id = new_job_id(backfill_id, lane.number)
        took = db.session.execute(update(BackfillLane).where(BackfillLane.id == lane.id, BackfillLane.job_id.is_(None))
                                  .values(job_id=job_id, lost=0, updated_at=utcnow())).rowcount
        db.session.commit()
        if took:
            enqueue(backfill_id, job_id, queue, lane.number)
            woken += 1
    return woken


# --- the job -------------------------------------------------------------------------------------

def _current_job_id() -> str | None:
    """The RQ job running us, if any."""
    from rq import get_current_job

    job = get_current_job()
    return job.id if job is not None else None


def run_backfill(backfill_id: int, lane: int = 0) -> str:
    """One slice of one lane: reads its windows until done, cancelled, out of time (then continued) or failed."""
    token = _current_job_id()
    run = _claim(backfill_id, lane, token)
    if run is None:
        return "nothing to do"
    try:
        return LaneJob(run).work()
    except BackfillStop as stop:
        db.session.rollback()
        return str(stop)
    except writer.Superseded:
        db.session.rollback()
        log.info("Backfill %s lane %s: job %s was replaced or the import ended; stopping", backfill_id, lane,
                 run.token)
        return "superseded"
    except (stripe.StripeError, StripeProblem, RateLimitedTooLong) as exc:
        db.session.rollback()
        if isinstance(exc, stripe.StripeError):
            message = describe(exc).message
        else:
            message = exc.message if isinstance(exc, StripeProblem) else f"{exc}."
        saved = db.session.scalar(select(Backfill.pages).where(Backfill.id == backfill_id)) or 0
        db.session.rollback()
        _end(run, BACKFILL_FAILED, error=f"{message} Resume keeps the {saved:,} page{'' if saved == 1 else 's'} "
                                         "saved and continues from there.")
        log.warning("Backfill %s failed: %s", backfill_id, message)
        return "failed"
    except Exception as exc:
        db.session.rollback()
        _end(run, BACKFILL_FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
        log.exception("Backfill %s failed", backfill_id)
        raise


def _claim(backfill_id: int, lane: int, token: str | None) -> writer.Run | None:
    """Mark the import running under this lane's job; None when it is over or another job owns the lane."""
    now = utcnow()
    query = update(BackfillLane).where(BackfillLane.backfill_id == backfill_id, BackfillLane.number == lane)
    if token is None:
        token = new_job_id(backfill_id, lane)  # run by hand (tests, a shell): take the lane over
    else:
        query = query.where(BackfillLane.job_id == token)
    claimed = db.session.execute(query.values(job_id=token, updated_at=now)).rowcount
    if claimed:
        db.session.execute(update(Backfill).where(Backfill.id == backfill_id, Backfill.state == BACKFILL_QUEUED)
                           .values(rate_mark_at=now, rate_mark_count=Backfill.imported + Backfill.skipped
                                   + Backfill.failed + Backfill.passed_over, rate=None))
        claimed = db.session.execute(
            update(Backfill).where(Backfill.id == backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
            .values(state=BACKFILL_RUNNING, paused_until=None, updated_at=now)).rowcount
    if not claimed:
        db.session.rollback()
        log.info("Backfill %s lane %s: nothing for job %s to do", backfill_id, lane, token)
        return None
    backfill = db.session.get(Backfill, backfill_id, populate_existing=True)
    if backfill.started_at is None:
        backfill.started_at = now
    resource = db.session.get(StripeResource, backfill.resource_id)
    account = db.session.get(StripeAccount, resource.account_id)
    lane_id = db.session.scalar(select(BackfillLane.id).where(BackfillLane.backfill_id == backfill_id,
                                                              BackfillLane.number == lane))
    run = writer.Run(backfill_id=backfill.id, lane=lane, lane_id=lane_id, token=token, resource_id=resource.id,
                     account_id=account.id, livemode=account.livemode, kind=resource.kind,
                     started=time.monotonic())
    db.session.commit()
    return run


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
        _end(run, BACKFILL_CANCELLED)
        log.info("Backfill %s cancelled", run.backfill_id)
        raise BackfillStop("cancelled")
    if row.status == RESOURCE_DISCONNECTED:
        _end(run, BACKFILL_CANCELLED, error="The resource was removed, so its import stopped.")
        raise BackfillStop("cancelled")


class LaneJob:
    """One slice of one lane: several windows read at once, each page written here as it arrives."""

    def __init__(self, run: writer.Run):
        self.run = run
        account = db.session.get(StripeAccount, run.account_id)
        self.settings = ReaderSettings(
            backoff_base=float(setting("BACKFILL_BACKOFF_BASE")), backoff_max=float(setting("BACKFILL_BACKOFF_MAX")),
            rate_limit_retries=int(setting("BACKFILL_RATE_LIMIT_RETRIES")),
            error_retries=int(setting("BACKFILL_ERROR_RETRIES")))
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
        _end(run, BACKFILL_FINISHED, owner_checked=False)
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


def _end(run: writer.Run, state: str, error: str | None = None, owner_checked: bool = True) -> None:
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
