"""Time windows of an import: where its history is cut into slices of `created` that lanes read at once.

Stripe's lists are newest first and only page forward, so one cursor reads one page per round trip.
Cutting the history into windows [lo, hi) of `created`, each with its own cursor, lets several
requests be in flight. Nobody knows where an account's records lie before reading them, so:
- An import starts as one window from the epoch to a few minutes from now.
- A window that is still full after BACKFILL_SPLIT_AFTER_PAGES pages is cut (`plan_split`): it keeps
  BACKFILL_WINDOW_PAGES pages' worth of seconds below its cursor, at the density of its last page,
  and the rest becomes new windows of doubling length (the older the history, the sparser it tends
  to be), the last one reaching down to the window's own lower bound. Any new window that is still
  full after its own pages is cut again, so records bunched in one month still spread; records
  bunched in one second stay in one window and are paged through with its cursor.
- At most BACKFILL_MAX_WINDOWS windows are open at once.
- A window belongs to at most one lane (importer.py); an unclaimed open window waits for one,
  newest first. Windows never overlap, so a record is read once; one read twice (a cursor Stripe
  lost) is passed over as a duplicate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select, update

from webapp.extensions import db
from webapp.stripe_sync.models import WINDOW_DONE, WINDOW_OPEN, Backfill, BackfillWindow

FUTURE_MARGIN = 300  # seconds past "now" the first window reaches, for clocks that disagree a little


@dataclass
class Window:
    """What a lane knows of one window it reads."""

    id: int
    lo: int
    hi: int
    cursor: str | None
    cursor_created: int | None
    pages: int
    records: int

    @classmethod
    def of(cls, row: BackfillWindow) -> "Window":
        """From its row."""
        return cls(row.id, row.lo, row.hi, row.cursor, row.cursor_created, row.pages, row.records)


@dataclass
class Split:
    """A window cut after a page: it keeps [new_lo, hi); `pieces` become new open windows."""

    new_lo: int
    pieces: list[tuple[int, int]]


def first_window(backfill_id: int) -> BackfillWindow:
    """The whole history, as one window."""
    row = BackfillWindow(backfill_id=backfill_id, lo=0, hi=int(time.time()) + FUTURE_MARGIN, state=WINDOW_OPEN,
                         pages=0, records=0)
    db.session.add(row)
    return row


def plan_split(window: Window, page: list[dict], has_more: bool, open_windows: int, *, after_pages: int,
               window_pages: int, max_windows: int, max_pieces: int = 8) -> Split | None:
    """How to cut a window that is still full after this page, or None to keep reading it alone."""
    if not has_more or not page or window.pages + 1 < after_pages or open_windows >= max_windows:
        return None
    newest, oldest = int(page[0].get("created") or 0), int(page[-1].get("created") or 0)
    if oldest <= window.lo:
        return None
    seconds_per_page = max(1, newest - oldest + 1)
    step = max(1, seconds_per_page * max(1, window_pages))
    new_lo = max(window.lo, oldest - step + 1)
    pieces, top = [], new_lo
    room = min(max_pieces, max_windows - open_windows)
    while top > window.lo and len(pieces) < room:
        lo = window.lo if len(pieces) == room - 1 else max(window.lo, top - step)
        pieces.append((lo, top))
        top, step = lo, step * 2
    return Split(new_lo, pieces) if pieces else None


def open_count(backfill_id: int) -> int:
    """Windows not read to the end yet."""
    return db.session.scalar(select(func.count()).select_from(BackfillWindow)
                             .where(BackfillWindow.backfill_id == backfill_id, BackfillWindow.state == WINDOW_OPEN))


def owned(backfill_id: int, lane: int) -> list[Window]:
    """The lane's windows (a continuation or a replacement job picks up where the last one stopped)."""
    rows = db.session.scalars(select(BackfillWindow).where(
        BackfillWindow.backfill_id == backfill_id, BackfillWindow.state == WINDOW_OPEN,
        BackfillWindow.lane == lane).order_by(BackfillWindow.hi.desc())).all()
    return [Window.of(r) for r in rows]


def claim(backfill_id: int, lane: int, limit: int) -> list[Window]:
    """Up to `limit` waiting windows for this lane, newest first; a window another lane took is skipped."""
    if limit <= 0:
        return []
    ids = db.session.scalars(select(BackfillWindow.id).where(
        BackfillWindow.backfill_id == backfill_id, BackfillWindow.state == WINDOW_OPEN,
        BackfillWindow.lane.is_(None)).order_by(BackfillWindow.hi.desc()).limit(limit * 2)).all()
    got = []
    for window_id in ids:
        if len(got) >= limit:
            break
        taken = db.session.execute(update(BackfillWindow).where(
            BackfillWindow.id == window_id, BackfillWindow.lane.is_(None), BackfillWindow.state == WINDOW_OPEN)
            .values(lane=lane)).rowcount
        db.session.commit()
        if taken:
            got.append(Window.of(db.session.get(BackfillWindow, window_id, populate_existing=True)))
    db.session.commit()
    return got


def release_all(backfill_id: int) -> None:
    """Every open window waits for a lane again (resume): their cursors stay."""
    db.session.execute(update(BackfillWindow).where(
        BackfillWindow.backfill_id == backfill_id, BackfillWindow.state == WINDOW_OPEN).values(lane=None))


@dataclass
class Progress:
    """What the progress display says about the windows and the time left."""

    windows_done: int
    windows_total: int
    seconds_left: float | None  # None: not enough known to estimate


def progress(backfill: Backfill, rate: float | None) -> Progress:
    """Windows done of total, and the time left from the records' density in what was read so far.

    Remaining records are estimated window by window: the seconds of `created` still to read times the
    records per second of `created` seen so far; the oldest window's unread seconds count at most as
    many as were read (history rarely reaches back further than it has shown)."""
    rows = db.session.execute(select(BackfillWindow.lo, BackfillWindow.hi, BackfillWindow.state,
                                     BackfillWindow.cursor_created, BackfillWindow.records)
                              .where(BackfillWindow.backfill_id == backfill.id)).all()
    return estimate(rows, rate, int(time.time()))


def estimate(rows, rate: float | None, now: int) -> Progress:
    """progress() on rows of (lo, hi, state, cursor_created, records)."""
    if not rows:
        return Progress(0, 0, None)
    done = read_seconds = records = 0
    left = []
    for lo, hi, state, cursor_created, count in rows:
        top = min(hi, now)
        if state == WINDOW_DONE:
            done += 1
            read_seconds += max(0, top - lo)
        else:
            position = cursor_created if cursor_created is not None else top
            read_seconds += max(0, top - position)
            left.append((lo, position))
        records += count
    if not left:
        return Progress(done, len(rows), 0.0)
    if not rate or not records or not read_seconds:
        return Progress(done, len(rows), None)
    lowest = min(lo for lo, _ in left)
    unread = 0
    for lo, position in left:
        span = max(0, position - lo)
        if lo == lowest:
            span = min(span, read_seconds)
        unread += span
    return Progress(done, len(rows), unread * (records / read_seconds) / rate)
