"""The sync log: one row per sync attempt (one per historical import, updated as its pages are saved),
written with the resource's counters in the same transaction, and read in filtered pages by id, so a poll
with nothing new is one indexed query. Also the navigation badge's count and the CSV export; what a row
says to a marketer is logtext.py."""
import csv
import io
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased

from webapp.crm.models import Contact
from webapp.extensions import db
from webapp.numbers import whole_number
from webapp.stripe_sync.events import RESOURCE_KINDS, resource
from webapp.stripe_sync.models import (
    COUNTER_SHARDS, EVENT_FAILED, OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_IGNORED, OUTCOME_SKIPPED,
    OUTCOME_UPDATED, OUTCOMES, EventRef, ResourceCounter, StripeEvent, StripeResource, SyncLog,
)
from webapp.timeutil import utcnow
from webapp.upsert import dialect_insert

log = logging.getLogger(__name__)

PAGE_SIZE = 50
NEWER_LIMIT = 200
EXPORT_CHUNK = 500
SEARCH_MAX = 200
BADGE_CAP = 999  # the navigation counts failed events up to here ("999+"), so the query stays short
IMPORT_EVENT_TYPE = "historical import"  # the event type of an import's one summary row
CUSTOMER_ID_MARK = "cus_"  # a search holding this also looks for the customer id inside the events


@dataclass(frozen=True)
class LogFilters:
    """The filters a user picked; they travel in the URL so the poll and a reload keep them. The
    Resource filter is a kind (Customer, Charge…), so a resource removed and connected again is one choice."""

    account_id: int | None = None
    resource_kind: str | None = None
    outcome: str | None = None
    event_type: str | None = None
    search: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_args(cls, args) -> "LogFilters":
        """Parse and sanitise query arguments."""
        outcome = args.get("outcome") or None
        kind = args.get("resource") or None
        event_type = (args.get("event_type") or "").strip()[:100] or None
        search = " ".join((args.get("q") or "").split())[:SEARCH_MAX] or None
        return cls(account_id=whole_number(args.get("account")),
                   resource_kind=kind if kind in RESOURCE_KINDS else None,
                   outcome=outcome if outcome in OUTCOMES else None, event_type=event_type, search=search,
                   date_from=_day(args.get("from")), date_to=_day(args.get("to")))

    def as_args(self) -> dict:
        """The query arguments that reproduce these filters."""
        pairs = {"account": self.account_id, "resource": self.resource_kind, "outcome": self.outcome,
                 "event_type": self.event_type, "q": self.search,
                 "from": self.date_from.isoformat() if self.date_from else None,
                 "to": self.date_to.isoformat() if self.date_to else None}
        return {k: v for k, v in pairs.items() if v}

    def conditions(self) -> list:
        """SQL conditions; the id-ordered scan they filter starts at an index on their column and id."""
        conds = []
        if self.account_id:
            conds.append(SyncLog.account_id == self.account_id)
        if self.resource_kind:
            conds.append(SyncLog.resource_id.in_(select(StripeResource.id)
                                                 .where(StripeResource.kind == self.resource_kind)))
        if self.outcome:
            conds.append(SyncLog.outcome == self.outcome)
        if self.event_type:
            conds.append(SyncLog.event_type == self.event_type)
        if self.date_from:
            conds.append(SyncLog.created_at >= datetime.combine(self.date_from, datetime.min.time()))
        if self.date_to:
            conds.append(SyncLog.created_at < datetime.combine(self.date_to + timedelta(days=1), datetime.min.time()))
        if self.search:
            conds.append(_matching(self.search))
        return conds


def _day(raw) -> date | None:
    """A date input's YYYY-MM-DD (a UTC day, as the log shows times), or None."""
    try:
        return date.fromisoformat(str(raw or "").strip()[:10])
    except ValueError:
        return None


def _matching(text: str):
    """Rows whose Stripe event id or contact email holds the text (any case); with "cus_" in it, also rows
    whose event names such a customer. Correlated EXISTS, so a poll tests only its few new rows."""
    needle = text.lower()
    found = [func.lower(SyncLog.stripe_event_id).contains(needle, autoescape=True),
             exists().where(Contact.id == SyncLog.contact_id, Contact.email_lower.contains(needle, autoescape=True))]
    if CUSTOMER_ID_MARK in needle:
        found.append(exists().where(StripeEvent.id == SyncLog.event_row_id,
                                    func.lower(StripeEvent.payload).contains(needle, autoescape=True)))
    return or_(*found)


def latest(filters: LogFilters, limit: int = PAGE_SIZE) -> list[SyncLog]:
    """The newest rows, newest first."""
    return list(db.session.scalars(select(SyncLog).where(*filters.conditions()).order_by(SyncLog.id.desc())
                                   .limit(limit)))


def newer(filters: LogFilters, after_id: int) -> list[SyncLog]:
    """Rows added since the last one shown, newest first."""
    return list(db.session.scalars(select(SyncLog).where(SyncLog.id > after_id, *filters.conditions())
                                   .order_by(SyncLog.id.desc()).limit(NEWER_LIMIT)))


def older(filters: LogFilters, before_id: int, limit: int = PAGE_SIZE) -> list[SyncLog]:
    """The page of rows just before the oldest one shown."""
    return list(db.session.scalars(select(SyncLog).where(SyncLog.id < before_id, *filters.conditions())
                                   .order_by(SyncLog.id.desc()).limit(limit)))


def max_id() -> int:
    """The newest log id (0 when empty), where polling starts if nothing matches yet."""
    return db.session.scalar(select(func.max(SyncLog.id))) or 0


def for_contact(contact_id: int, limit: int = 50) -> list[SyncLog]:
    """A contact's Stripe activity, newest first."""
    return list(db.session.scalars(select(SyncLog).where(SyncLog.contact_id == contact_id)
                                   .order_by(SyncLog.id.desc()).limit(limit)))


SYNCED = (OUTCOME_CREATED, OUTCOME_UPDATED)


def event_for(log_row: SyncLog) -> StripeEvent | None:
    """The recorded Stripe event behind a log row."""
    return db.session.get(StripeEvent, log_row.event_row_id) if log_row.event_row_id else None


def can_retry(log_row: SyncLog) -> bool:
    """Only a failed attempt whose event is still failed is offered a Retry."""
    if log_row.outcome != OUTCOME_FAILED or not log_row.event_row_id:
        return False
    event = event_for(log_row)
    return event is not None and event.status == EVENT_FAILED


def resource_counts(accounts) -> dict[int, dict[str, int]]:
    """Per resource of these accounts: sync attempts synced, skipped and failed."""
    return counts_for([r.id for a in accounts for r in a.resources])


def counts_for(ids: list[int]) -> dict[int, dict[str, int]]:
    """Per resource id: sync attempts synced, skipped and failed, and deliveries rejected, summed from the
    counter shards."""
    counts = {rid: {"synced": 0, "skipped": 0, "failed": 0, "rejected": 0} for rid in ids}
    if not ids:
        return counts
    rows = db.session.execute(
        select(ResourceCounter.resource_id, ResourceCounter.outcome, func.sum(ResourceCounter.count))
        .where(ResourceCounter.resource_id.in_(ids))
        .group_by(ResourceCounter.resource_id, ResourceCounter.outcome))
    for resource_id, outcome, total in rows:
        key = {"created": "synced", "updated": "synced"}.get(outcome, outcome)
        if key in counts[resource_id]:
            counts[resource_id][key] += int(total)
    return counts


def failed_events() -> int:
    """Failed Stripe events not yet retried, for the navigation's badge on every page: one query on the
    (status, received_at) index, counting at most BADGE_CAP + 1."""
    capped = select(StripeEvent.status).where(StripeEvent.status == EVENT_FAILED).limit(BADGE_CAP + 1).subquery()
    return db.session.scalar(select(func.count()).select_from(capped)) or 0


def badge_count() -> int:
    """failed_events for a page's navigation; 0 when the database cannot answer, so an error page still renders."""
    try:
        return failed_events()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("The failed Stripe syncs could not be counted for the navigation: %s", type(exc).__name__)
        return 0


def later_attempts(event_row_ids, after_id: int) -> dict[int, list[tuple[int, str]]]:
    """Per event: (row id, outcome) of its log rows after `after_id`, oldest first (the retries that followed)."""
    found: dict[int, list[tuple[int, str]]] = {}
    if event_row_ids:
        for row_id, event_id, outcome in db.session.execute(
                select(SyncLog.id, SyncLog.event_row_id, SyncLog.outcome)
                .where(SyncLog.event_row_id.in_(set(event_row_ids)), SyncLog.id > after_id).order_by(SyncLog.id)):
            found.setdefault(event_id, []).append((row_id, outcome))
    return found


__all__ = ["LogFilters", "latest", "newer", "older", "max_id", "for_contact", "SYNCED", "OUTCOME_SKIPPED",
           "OUTCOME_FAILED", "event_for", "can_retry", "resource_counts", "counts_for", "failed_events", "badge_count",
           "later_attempts", "IMPORT_EVENT_TYPE", "import_key", "import_summary", "save_import_row", "export_csv"]


# --- writing: every sync-log row goes through `record`, so the counters always match the log ------

def row(event: EventRef, outcome: str, reason: str, attempt: int, started: float | None = None,
        contact_id: int | None = None, detail: str | None = None) -> dict:
    """One row about an event's attempt (every row has the same keys, as a bulk insert needs)."""
    return dict(created_at=utcnow(), account_id=event.account_id, resource_id=event.resource_id,
                event_row_id=event.id, stripe_event_id=event.stripe_event_id, event_type=event.type,
                contact_id=contact_id, outcome=outcome, reason=reason, detail=detail, attempt=attempt,
                duration_ms=int((time.monotonic() - started) * 1000) if started is not None else 0,
                historical=event.historical, recovered=event.recovered)


def record(rows: list[dict], counted: bool = True) -> None:
    """Insert the rows in the caller's transaction and, unless the caller counts otherwise, add their
    outcomes to their resources' counters."""
    if not rows:
        return
    db.session.execute(insert(SyncLog.__table__), rows)
    if counted:
        per_resource: dict[int, Counter] = {}
        for entry in rows:
            if entry["resource_id"]:
                per_resource.setdefault(entry["resource_id"], Counter())[entry["outcome"]] += 1
        for resource_id, counts in per_resource.items():
            count(resource_id, counts)


def count(resource_id: int, counts: Mapping[str, int]) -> None:
    """Add to this process's shard of the resource's counters, so concurrent workers never wait on one row."""
    table = ResourceCounter.__table__
    shard = os.getpid() % COUNTER_SHARDS
    for outcome, n in counts.items():
        if n <= 0:
            continue
        stmt = dialect_insert(table).values(resource_id=resource_id, outcome=outcome, shard=shard, count=n)
        db.session.execute(stmt.on_conflict_do_update(index_elements=["resource_id", "outcome", "shard"],
                                                      set_={"count": table.c["count"] + n}))


# --- a historical import's one row: found by its key on the event-type index, written by the page that
# also moves the import's counts (after that UPDATE, which serialises the import's lanes on its row) ----

def import_key(backfill_id: int) -> str:
    """What the import's row keeps in `detail`, so each saved page finds that row again."""
    return f"backfill:{backfill_id}"


def backfill_id_of(log_row: SyncLog) -> int | None:
    """The import an import row sums up."""
    if log_row.event_type != IMPORT_EVENT_TYPE or not (log_row.detail or "").startswith("backfill:"):
        return None
    return whole_number(log_row.detail.split(":", 1)[1])


def import_summary(imported: int, skipped: int, failed: int, passed_over: int = 0) -> str:
    """"Historical import: 1,234 imported, 5 skipped, 0 failed"."""
    text = f"Historical import: {imported:,} imported, {skipped:,} skipped, {failed:,} failed"
    return text + (f", {passed_over:,} passed over" if passed_over else "")


def save_import_row(backfill_id: int, account_id: int, resource_id: int, figures: tuple[int, int, int, int],
                    seconds: float) -> None:
    """Create or update the import's row with its totals so far (not counted: the counters count records)."""
    imported, skipped, failed, passed_over = figures
    outcome = (OUTCOME_CREATED if imported else OUTCOME_SKIPPED if skipped else OUTCOME_FAILED if failed
               else OUTCOME_IGNORED)
    values = dict(outcome=outcome, reason=import_summary(*figures), duration_ms=int(seconds * 1000))
    table = SyncLog.__table__
    changed = db.session.execute(update(table).where(
        table.c.event_type == IMPORT_EVENT_TYPE, table.c.detail == import_key(backfill_id)).values(**values)).rowcount
    if not changed:
        record([dict(created_at=utcnow(), account_id=account_id, resource_id=resource_id, event_row_id=None,
                     stripe_event_id=None, event_type=IMPORT_EVENT_TYPE, contact_id=None,
                     detail=import_key(backfill_id), attempt=1, historical=True, recovered=False, **values)],
               counted=False)


# --- export: every matching row, read in chunks by id and streamed, never the payload ------------------

EXPORT_COLUMNS = ("id", "created_at", "event_type", "stripe_event_id", "outcome", "reason", "detail", "attempt",
                  "event_row_id")
CSV_HEADER = ("Time (UTC)", "Resource", "Event type", "Stripe event id", "Contact email", "Outcome", "Reason")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A value a spreadsheet shows and never runs: a leading = + - @ (or tab, CR) gets a ' before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_csv(filters: LogFilters, explain) -> Iterator[str]:
    """The filtered rows as CSV text, newest first, a chunk at a time; `explain(rows)` gives each row's
    reason in plain words, as the page shows it. Rows are read as plain tuples (named like SyncLog's
    columns, which is all `explain` reads), so a long export holds no ORM object."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    yield "\ufeff" + out.getvalue()  # the BOM: spreadsheets then read the names as UTF-8
    res, person = aliased(StripeResource), aliased(Contact)  # aliases: the filters' subqueries name the tables
    query = (select(*(getattr(SyncLog, c) for c in EXPORT_COLUMNS), res.kind.label("kind"),
                    person.email.label("email"))
             .outerjoin(res, res.id == SyncLog.resource_id).outerjoin(person, person.id == SyncLog.contact_id)
             .where(*filters.conditions()).order_by(SyncLog.id.desc()).limit(EXPORT_CHUNK))
    before = None
    while True:
        rows = db.session.execute(query.where(SyncLog.id < before) if before else query).all()
        if not rows:
            return
        shown = explain(rows)
        out.seek(0)
        out.truncate()
        for entry in rows:
            writer.writerow([csv_cell(v) for v in (
                entry.created_at.strftime("%Y-%m-%d %H:%M:%S"), resource(entry.kind).name if entry.kind else "",
                entry.event_type, entry.stripe_event_id, entry.email, entry.outcome, shown[entry.id].full)])
        yield out.getvalue()
        before = rows[-1].id
