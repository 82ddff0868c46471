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

import stripe
from sqlalchemy import func, select, update

from webapp.extensions import db
from webapp.stripe_sync.client import StripeProblem, describe
from webapp.stripe_sync.history import windows, writer
from webapp.stripe_sync.history.lane import LaneJob, end_import
from webapp.stripe_sync.history.lanes import enqueue, new_job_id, wake_lanes
from webapp.stripe_sync.history.reader import BackfillStop, RateLimitedTooLong
from webapp.stripe_sync.models import (
    BACKFILL_ACTIVE, BACKFILL_CANCELLED, BACKFILL_FAILED, BACKFILL_QUEUED, BACKFILL_RUNNING, RESOURCE_DISCONNECTED,
    SYNC_HISTORICAL, Backfill, BackfillLane, StripeAccount, StripeResource,
)
from webapp.timeutil import utcnow
from webapp.tunables import setting

log = logging.getLogger(__name__)


def latest_for(resource_id: int) -> Backfill | None:
    """The resource's most recent import, for the progress display."""
    return db.session.scalar(select(Backfill).where(Backfill.resource_id == resource_id)
                             .order_by(Backfill.id.desc()).limit(1))


def start_backfill(resource: StripeResource, queue=None) -> Backfill:
    """Queue the import of a resource's existing records; connect.finish calls it after its commit."""
    backfill = Backfill(resource_id=resource.id, state=BACKFILL_QUEUED, updated_at=utcnow())
    db.session.add(backfill)
    db.session.flush()
    windows.first_window(backfill.id)
    lanes = max(1, int(setting("BACKFILL_LANES")))
    job_id = new_job_id(backfill.id, 0)
    db.session.add_all(BackfillLane(backfill_id=backfill.id, number=n, job_id=job_id if n == 0 else None,
                                    lost=0, updated_at=utcnow()) for n in range(lanes))
    db.session.commit()
    enqueue(backfill.id, job_id, queue, 0)
    log.info("Backfill %s queued for %s resource %s", backfill.id, resource.kind, resource.id)
    return backfill


def resync(resource: StripeResource) -> Backfill | None:
    """"Re-sync existing records": read the resource's history again with the current mapping (every
    record is applied again, writer.py); an import already under way is the answer. None when the
    resource is disconnected."""
    if resource.status == RESOURCE_DISCONNECTED:
        return None
    latest = latest_for(resource.id)
    if latest is not None and latest.state in BACKFILL_ACTIVE:
        return latest
    return start_backfill(resource)


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
        .values(state=BACKFILL_QUEUED, cancel_requested=False, error=None, rate=None, rate_mark_at=None,
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
    unread = windows.open_count(backfill_id)
    woken = wake_lanes(backfill_id, max(1, unread), at_least_one=True)
    db.session.commit()
    log.info("Backfill %s resumed: %s lanes for its %s unfinished windows", backfill_id, woken, unread)
    return True


STALE_SECONDS = 30  # a running import that saved nothing for this long shows no current rate


def current_rate(backfill: Backfill) -> float | None:
    """Records per second lately while the import runs (None when nothing was saved for a while);
    the overall rate once it ended."""
    if not backfill.is_active:
        return backfill.rate
    return None if _quiet(backfill) else backfill.rate


def stalled(backfill: Backfill) -> bool:
    """Running, yet nothing saved for a while: its worker is gone and the sweep has not requeued it yet."""
    return backfill.state == BACKFILL_RUNNING and _quiet(backfill)


def _quiet(backfill: Backfill) -> bool:
    """Nothing saved (nor any pause recorded) for STALE_SECONDS."""
    return (utcnow() - backfill.updated_at).total_seconds() > STALE_SECONDS


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
        end_import(run, BACKFILL_FAILED, error=f"{message} Resume keeps the {saved:,} page{'' if saved == 1 else 's'} "
                                         "saved and continues from there.")
        log.warning("Backfill %s failed: %s", backfill_id, message)
        return "failed"
    except Exception as exc:
        db.session.rollback()
        end_import(run, BACKFILL_FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
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
                     started=time.monotonic(), since=backfill.created_at)
    db.session.commit()
    return run


