"""Historical sync: import a resource's existing Stripe records in the background, visibly and safely.

A Backfill row is the import: its state (queued, running, paused by rate limit, finished, failed,
cancelled), its cursor (the last record of the last saved page) and its counts. The RQ job
`webapp.jobs.run_backfill(id)` pages through Stripe's list API newest first (reader.py) and
writes each page in one transaction that also moves the cursor (writer.py). Decisions:
- One job at a time owns an import: the row names its RQ job id, and every page's transaction
  checks it first. Whoever queues a job (start, resume, a slice's continuation, the sweep) writes the
  new id before enqueueing, so a replaced job can never save a page.
- Time slices: a job runs for BACKFILL_SLICE_SECONDS, then queues its continuation at the back of
  the queue and returns, so webhook jobs keep flowing even on a single worker. The state stays
  "running" between slices.
- Resumable: a worker killed mid-page loses only that page's uncommitted transaction. The worker
  sweep (queue/sweep.py) notices the dead job and queues a new one, which continues from the saved cursor.
  After BACKFILL_MAX_LOST requeues without a saved page in between, the import is marked failed
  instead of killing workers forever; "Resume" continues it from the cursor.
- Cancel sets a flag; the job stops before its next page (or during a backoff wait). A cancel
  while still queued ends the import at once. Removing the resource stops its import the same way.
- A failure that is not about one record (Stripe refusing the key, a 429 storm outlasting the
  retries, a bug) marks the import failed with the reason; "Resume" continues from the cursor.
- Historical records fire automation triggers only when the resource was connected with "Also
  trigger automations for historical records" (apply/triggers.py enforces it for every event).
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import stripe
from sqlalchemy import select, update

from webapp.extensions import db
from webapp.redis_queue import get_queue
from webapp.stripe_sync.history import writer
from webapp.stripe_sync.history.reader import (
    BackfillStop, HistoryReader, RateLimitedTooLong, ReaderSettings, Waiter,
)
from webapp.tunables import setting
from webapp.stripe_sync.client import StripeProblem, client_for_account, describe
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN
from webapp.stripe_sync.events import historical_event_type
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, BACKFILL_CANCELLED, BACKFILL_FAILED, BACKFILL_FINISHED, BACKFILL_PAUSED, BACKFILL_QUEUED,
    BACKFILL_RUNNING, RESOURCE_DISCONNECTED, SYNC_HISTORICAL, Backfill, StripeAccount, StripeResource,
)
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.apply.prepare import Entry, Resolver
from webapp.stripe_sync.budget import budget_for
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

JOB_FUNC = "webapp.jobs.run_backfill"
WAIT_STEP = 0.5  # seconds between cancel checks while backing off


def new_job_id(backfill_id: int) -> str:
    """A fresh id per job, so the sweep can tell a slice's job from its continuation."""
    return f"stripe-backfill-{backfill_id}-{uuid.uuid4().hex[:10]}"


def latest_for(resource_id: int) -> Backfill | None:
    """The resource's most recent import, for the progress display."""
    return db.session.scalar(select(Backfill).where(Backfill.resource_id == resource_id)
                             .order_by(Backfill.id.desc()).limit(1))


def enqueue(backfill_id: int, job_id: str, queue=None) -> bool:
    """Queue one slice; False (logged) when Redis is down, and the sweep queues it later."""
    try:
        (queue or get_queue()).enqueue(
            JOB_FUNC, backfill_id, job_id=job_id, job_timeout=int(setting("BACKFILL_JOB_TIMEOUT")),
            result_ttl=300, description=f"import Stripe history (backfill {backfill_id})")
        return True
    except REDIS_DOWN as exc:
        log.warning("Backfill %s not queued, Redis unavailable (%s); the sweep will queue it", backfill_id,
                    type(exc).__name__)
        return False


def start_backfill(resource: StripeResource, queue=None) -> Backfill:
    """Queue the import of a resource's existing records; connect.finish calls it after its commit."""
    backfill = Backfill(resource_id=resource.id, state=BACKFILL_QUEUED, updated_at=utcnow())
    db.session.add(backfill)
    db.session.flush()
    backfill.job_id = new_job_id(backfill.id)
    db.session.commit()
    enqueue(backfill.id, backfill.job_id, queue)
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
    """The "Cancel" button: a queued import ends now, a running one before its next page."""
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
    """The "Resume" button of a failed or cancelled import: continue from its saved cursor."""
    backfill = db.session.get(Backfill, backfill_id)
    if backfill is None or backfill.state not in (BACKFILL_FAILED, BACKFILL_CANCELLED) \
            or backfill.resource.status == RESOURCE_DISCONNECTED:
        db.session.rollback()
        return False
    job_id = new_job_id(backfill_id)
    changed = db.session.execute(
        update(Backfill).where(Backfill.id == backfill_id, Backfill.state.in_((BACKFILL_FAILED, BACKFILL_CANCELLED)))
        .values(state=BACKFILL_QUEUED, job_id=job_id, cancel_requested=False, error=None, lost=0,
                finished_at=None, paused_until=None, updated_at=utcnow())).rowcount
    db.session.commit()
    if changed:
        enqueue(backfill_id, job_id)
        log.info("Backfill %s resumed from cursor %s", backfill_id, backfill.cursor)
    return bool(changed)


# --- the job -------------------------------------------------------------------------------------

def _current_job_id() -> str | None:
    """The RQ job running us, if any."""
    from rq import get_current_job

    job = get_current_job()
    return job.id if job is not None else None


def run_backfill(backfill_id: int) -> str:
    """One slice of an import: pages until done, cancelled, out of time (then continued) or failed."""
    token = _current_job_id()
    run = _claim(backfill_id, token)
    if run is None:
        return "nothing to do"
    try:
        return _import(run)
    except BackfillStop as stop:
        db.session.rollback()
        return str(stop)
    except writer.Superseded:
        log.info("Backfill %s: job %s was replaced; stopping", backfill_id, run.token)
        return "superseded"
    except (stripe.StripeError, StripeProblem, RateLimitedTooLong) as exc:
        db.session.rollback()
        if isinstance(exc, stripe.StripeError):
            message = describe(exc).message
        else:
            message = exc.message if isinstance(exc, StripeProblem) else f"{exc}."
        _end(run, BACKFILL_FAILED, error=f"{message} Resume continues from page {run.pages + 1}.")
        log.warning("Backfill %s failed: %s", backfill_id, message)
        return "failed"
    except Exception as exc:
        db.session.rollback()
        _end(run, BACKFILL_FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
        log.exception("Backfill %s failed", backfill_id)
        raise


def _claim(backfill_id: int, token: str | None) -> writer.Run | None:
    """Mark the import running under this job; None when it is over or another job owns it."""
    now = utcnow()
    query = update(Backfill).where(Backfill.id == backfill_id, Backfill.state.in_(BACKFILL_ACTIVE))
    if token is None:
        token = new_job_id(backfill_id)  # run by hand (tests, a shell): take the import over
    else:
        query = query.where(Backfill.job_id == token)
    claimed = db.session.execute(query.values(state=BACKFILL_RUNNING, job_id=token, paused_until=None,
                                              updated_at=now)).rowcount
    if not claimed:
        db.session.rollback()
        log.info("Backfill %s: nothing for job %s to do", backfill_id, token)
        return None
    backfill = db.session.get(Backfill, backfill_id, populate_existing=True)
    if backfill.started_at is None:
        backfill.started_at = now
    resource = db.session.get(StripeResource, backfill.resource_id)
    account = db.session.get(StripeAccount, resource.account_id)
    run = writer.Run(backfill_id=backfill.id, token=token, resource_id=resource.id, account_id=account.id,
              livemode=account.livemode, kind=resource.kind, cursor=backfill.cursor,
              cursor_created=backfill.cursor_created, pages=backfill.pages, started=time.monotonic())
    db.session.commit()
    return run


class _ImportWaiter(Waiter):
    """Backoff waits that show "paused by rate limit" and stop promptly on a cancel."""

    def __init__(self, run: writer.Run):
        self.run = run

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
            check(self.run)

    def _set(self, **values) -> None:
        """A small fenced update of the progress row."""
        changed = db.session.execute(
            update(Backfill).where(Backfill.id == self.run.backfill_id, Backfill.job_id == self.run.token,
                                   Backfill.state.in_(BACKFILL_ACTIVE))
            .values(updated_at=utcnow(), **values)).rowcount
        db.session.commit()
        if not changed:
            check(self.run)


def check(run: writer.Run) -> None:
    """Stop (BackfillStop) when the import was cancelled, replaced or its resource removed."""
    row = db.session.execute(
        select(Backfill.cancel_requested, Backfill.job_id, Backfill.state, StripeResource.status)
        .join(StripeResource, StripeResource.id == Backfill.resource_id).where(Backfill.id == run.backfill_id)).one()
    db.session.rollback()
    if row.job_id != run.token or row.state not in BACKFILL_ACTIVE:
        raise BackfillStop("superseded")
    if row.cancel_requested:
        _end(run, BACKFILL_CANCELLED)
        log.info("Backfill %s cancelled after %s pages", run.backfill_id, run.pages)
        raise BackfillStop("cancelled")
    if row.status == RESOURCE_DISCONNECTED:
        _end(run, BACKFILL_CANCELLED, error="The resource was removed, so its import stopped.")
        raise BackfillStop("cancelled")


def _import(run: writer.Run) -> str:
    """The page loop of one slice."""
    account = db.session.get(StripeAccount, run.account_id)
    settings = ReaderSettings(
        backoff_base=float(setting("BACKFILL_BACKOFF_BASE")), backoff_max=float(setting("BACKFILL_BACKOFF_MAX")),
        rate_limit_retries=int(setting("BACKFILL_RATE_LIMIT_RETRIES")),
        error_retries=int(setting("BACKFILL_ERROR_RETRIES")))
    reader = HistoryReader(client_for_account(account), run.kind, budget_for(account), _ImportWaiter(run), settings)
    resolver = Resolver()
    slice_end = run.started + float(setting("BACKFILL_SLICE_SECONDS"))
    db.session.rollback()  # nothing stays open while Stripe is asked
    while True:
        check(run)
        page = reader.fetch(run.cursor, run.cursor_created)
        records, learned = prepare_records(run, page.objects, resolver)
        result = writer.write_page(run, records, learned)
        run.pages += 1
        run.records += result.total
        if records:
            run.cursor, run.cursor_created = records[-1].obj["id"], int(records[-1].obj.get("created") or 0)
        _after_page(result)
        if not page.has_more or not page.objects:
            _end(run, BACKFILL_FINISHED)
            log.info("Backfill %s finished: %s pages", run.backfill_id, run.pages)
            return "finished"
        if time.monotonic() >= slice_end:
            return _continue_later(run)


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


def _continue_later(run: writer.Run) -> str:
    """End this slice: hand the import to a new job at the back of the queue."""
    job_id = new_job_id(run.backfill_id)
    changed = db.session.execute(
        update(Backfill).where(Backfill.id == run.backfill_id, Backfill.job_id == run.token,
                               Backfill.state.in_(BACKFILL_ACTIVE))
        .values(job_id=job_id, updated_at=utcnow())).rowcount
    db.session.commit()
    if not changed:
        return "superseded"
    enqueue(run.backfill_id, job_id)
    log.info("Backfill %s: slice done after %s pages; continues in job %s", run.backfill_id, run.pages, job_id)
    return "continues"


def _end(run: writer.Run, state: str, error: str | None = None) -> None:
    """Finish, fail or cancel the import, if this job still owns it; the rate becomes the overall one."""
    now = utcnow()
    backfill = db.session.get(Backfill, run.backfill_id, populate_existing=True)
    if backfill is None or backfill.job_id != run.token or backfill.state not in BACKFILL_ACTIVE:
        db.session.rollback()
        return
    backfill.state, backfill.finished_at, backfill.paused_until, backfill.updated_at = state, now, None, now
    if error:
        backfill.error = error[:1000]
    if backfill.started_at and backfill.processed:
        seconds = max((now - backfill.started_at).total_seconds(), 1e-3)
        backfill.rate = backfill.processed / seconds
    db.session.commit()
