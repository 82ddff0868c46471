"""What a sync-log row says to a marketer: a failure in plain words and what became of it (retrying at,
waiting for a worker, retried and how), a skipped row's Stripe customer and why, an import's live totals.

Read for a whole page of rows at once: the failed rows' event statuses and later attempts, the skipped
rows' payloads (and remembered customers, for a name), the imports, and one Redis round trip for the
retries RQ has scheduled. The stored reason stays as written (the technical words, folded away in Details).
"""
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from webapp.extensions import db
from webapp.redis_queue import get_queue
from webapp.stripe_sync import synclog
from webapp.stripe_sync.apply.customer import NO_EMAIL_REASON
from webapp.stripe_sync.apply.failures import plain_failure, will_retry
from webapp.stripe_sync.models import (
    EVENT_FAILED, EVENT_QUEUED, EVENT_RECEIVED, OUTCOME_FAILED, OUTCOME_SKIPPED, Backfill, StripeCustomer,
    StripeEvent, SyncLog,
)
from webapp.stripe_sync.queue.enqueue import REDIS_DOWN, job_id_for
from webapp.timeutil import from_epoch_naive, utcnow
from webapp.tunables import intervals

log = logging.getLogger(__name__)

# Shown.retry: where a failed row's event stands
SCHEDULED = "scheduled"  # a retry of its own is due later; Retry runs it now
GAVE_UP = "gave_up"  # no retry left; Retry runs it again
WAITING = "waiting"  # queued again (Retry was pressed), no attempt yet
RETRIED = "retried"  # a later attempt finished it (`later` is that row)
FAILED_AGAIN = "failed_again"  # a later attempt failed too (`later` is the newest)
INVALID_EMAIL_REASON = "invalid email"


@dataclass
class Shown:
    """A row in words: the Reason column and, for a failure, what became of it."""

    text: str
    note: str = ""
    retry: str | None = None
    later: tuple[int, str] | None = None  # (row id, outcome) of the attempt a retried row links to
    customer: str | None = None  # a skipped row's "Stripe customer cus_123 (Grace Hopper)"
    who: str | None = None  # …and in short for the Contact column: the name, else the id
    backfill: Backfill | None = None
    is_import: bool = False  # an import's summary row
    poll: str | None = None  # "2s", "10s": the row refreshes itself while its state can still change

    @property
    def offers_retry(self) -> bool:
        """Retry is offered while the event is failed and nothing is queued for it."""
        return self.retry in (SCHEDULED, GAVE_UP)

    @property
    def later_label(self) -> str:
        """"Retried: succeeded", "Retried: skipped", "Retried: failed again"."""
        if self.later is None:
            return ""
        outcome = self.later[1]
        said = "succeeded" if outcome in synclog.SYNCED else "failed again" if outcome == OUTCOME_FAILED else outcome
        return f"Retried: {said}"

    @property
    def full(self) -> str:
        """One line for the CSV export: the sentence, then what became of it."""
        return "; ".join(part for part in (self.text, self.note, self.later_label) if part)


def explain(rows: list[SyncLog], live: bool = True) -> dict[int, Shown]:
    """Each row's words by id; `live` also asks Redis when each pending retry is due (the page, not the export)."""
    failed = {r.id for r in rows if r.outcome == OUTCOME_FAILED and r.event_row_id}
    skipped = [r for r in rows if r.outcome == OUTCOME_SKIPPED and r.event_row_id]
    imports = {r.id: synclog.backfill_id_of(r) for r in rows}
    events = {r.event_row_id for r in rows if r.id in failed}
    statuses = dict(db.session.execute(select(StripeEvent.id, StripeEvent.status)
                                       .where(StripeEvent.id.in_(events))).all()) if events else {}
    later = synclog.later_attempts(events, min(failed, default=0))
    pending = [e for e in events if statuses.get(e) == EVENT_FAILED and will_retry(_latest_reason(rows, e))]
    due = scheduled_retries(pending) if live else {}
    customers = _customers(skipped)
    wanted = {b for b in imports.values() if b}
    backfills = {b.id: b for b in db.session.scalars(select(Backfill).where(Backfill.id.in_(wanted)))} if wanted else {}
    shown = {}
    for r in rows:
        if imports[r.id]:
            shown[r.id] = _import(r, backfills.get(imports[r.id]))
        elif r.id in failed:
            after = [a for a in later.get(r.event_row_id, []) if a[0] > r.id]
            shown[r.id] = _failure(r, statuses.get(r.event_row_id), after, due.get(r.event_row_id))
        elif r.outcome == OUTCOME_SKIPPED:
            shown[r.id] = _skip(r, *customers.get(r.event_row_id, (None, None)))
        else:
            shown[r.id] = Shown(r.reason or "")
    return shown


def _latest_reason(rows: list[SyncLog], event_row_id: int) -> str | None:
    """The reason of the newest row shown for the event (rows are newest first)."""
    return next((r.reason for r in rows if r.event_row_id == event_row_id), None)


def _failure(row: SyncLog, status: str | None, after: list[tuple[int, str]], due: datetime | None) -> Shown:
    """What happened, then: retried (and how), waiting, retrying at, or given up."""
    text = plain_failure(row.reason)
    finished = next((a for a in after if a[1] != OUTCOME_FAILED), None)
    if finished:
        return Shown(text, retry=RETRIED, later=finished)
    if after:
        return Shown(text, retry=FAILED_AGAIN, later=after[-1])
    if status == EVENT_FAILED and will_retry(row.reason):
        at = due or _expected_retry(row)
        note = f"Retrying at {_clock(at)}" if at > utcnow() else "Retrying shortly"
        return Shown(text, note=note, retry=SCHEDULED, poll="10s")
    if status == EVENT_FAILED:
        return Shown(text, note=f"Gave up after attempt {row.attempt}; Retry runs it again", retry=GAVE_UP)
    if status in (EVENT_QUEUED, EVENT_RECEIVED):
        return Shown(text, note="Retry queued: waiting for a worker…", retry=WAITING, poll="2s")
    return Shown(text)  # the event is gone, or was finished without a row of its own


def _expected_retry(row: SyncLog) -> datetime:
    """When the configured interval after this attempt ends (when Redis cannot say)."""
    seconds = intervals("EVENT_RETRY_INTERVALS")
    delay = seconds[min(max(row.attempt, 1), len(seconds)) - 1] if seconds else 0
    return row.created_at + timedelta(seconds=delay)


def _clock(at: datetime) -> str:
    """"14:05 UTC" today, "2025-03-02 14:05 UTC" another day."""
    return at.strftime("%H:%M UTC" if at.date() == utcnow().date() else "%Y-%m-%d %H:%M UTC")


def scheduled_retries(event_row_ids) -> dict[int, datetime]:
    """When RQ will run each event's own job (its scheduled registry), for those it has scheduled."""
    ids = sorted(set(event_row_ids))
    if not ids:
        return {}
    try:
        queue = get_queue()
        key = ScheduledJobRegistry(queue=queue).key
        pipe = queue.connection.pipeline(transaction=False)
        for event_id in ids:
            pipe.zscore(key, job_id_for(event_id))
        scores = pipe.execute()
    except REDIS_DOWN as exc:
        log.info("Scheduled retries not read (%s); the log shows the configured intervals", type(exc).__name__)
        return {}
    return {event_id: from_epoch_naive(score) for event_id, score in zip(ids, scores) if score is not None}


def _skip(row: SyncLog, label: str | None, who: str | None) -> Shown:
    """Why nothing was written, naming the Stripe customer (or object) the event is about."""
    reason, subject = row.reason or "", label or "the Stripe record"
    if reason == NO_EMAIL_REASON:
        return Shown(f"No email on {subject}", customer=label, who=who)
    if reason == INVALID_EMAIL_REASON:
        return Shown(f"The email on {subject} is not a valid address", customer=label, who=who)
    return Shown(reason[:1].upper() + reason[1:], customer=label, who=who)


def _import(row: SyncLog, bf: Backfill | None) -> Shown:
    """The import's totals as they are now; the row refreshes itself while the import runs."""
    if bf is None:
        return Shown(row.reason or "", is_import=True)
    return Shown(synclog.import_summary(bf.imported, bf.skipped, bf.failed, bf.passed_over), backfill=bf,
                 is_import=True, poll="2s" if bf.is_active else None)


def _customers(rows: list[SyncLog]) -> dict[int, tuple[str, str | None]]:
    """Per event of these rows: ("Stripe customer cus_123 (Grace Hopper)", "Grace Hopper"), or the object
    when no customer is named; a name the event lacks comes from the remembered customer."""
    ids = {r.event_row_id for r in rows}
    if not ids:
        return {}
    found = {event_id: (account_id, *_subject(payload)) for event_id, account_id, payload in db.session.execute(
        select(StripeEvent.id, StripeEvent.account_id, StripeEvent.payload).where(StripeEvent.id.in_(ids)))}
    nameless = {oid for _, noun, oid, name in found.values() if noun == "customer" and oid and not name}
    names = {}
    if nameless:
        for account_id, customer_id, data in db.session.execute(
                select(StripeCustomer.account_id, StripeCustomer.customer_id, StripeCustomer.data)
                .where(StripeCustomer.customer_id.in_(nameless))):
            names[(account_id, customer_id)] = _text(_dict(_json(data)).get("name"))
    labels = {}
    for event_id, (account_id, noun, oid, name) in found.items():
        name = name or (names.get((account_id, oid)) if noun == "customer" else None)
        label = f"Stripe {noun} {oid}" if oid else f"the Stripe {noun}"
        labels[event_id] = (label + (f" ({name})" if name else ""), name or oid)
    return labels


def _subject(payload: str | None) -> tuple[str, str | None, str | None]:
    """(noun, id, name) of who an event is about: its customer when it names one, else its object."""
    obj = _dict(_dict(_json(payload)).get("data")).get("object")
    obj = _dict(obj)
    kind = _text(obj.get("object")) or "record"
    if kind == "customer":
        return "customer", _text(obj.get("id")), _text(obj.get("name"))
    ref = obj.get("customer")
    customer = _dict(ref) if isinstance(ref, dict) else {"id": ref}
    name = (_text(customer.get("name")) or _text(_dict(obj.get("billing_details")).get("name"))
            or _text(obj.get("customer_name")) or _text(_dict(obj.get("customer_details")).get("name")))
    if _text(customer.get("id")):
        return "customer", _text(customer.get("id")), name
    return kind.replace("_", " ").replace(".", " "), _text(obj.get("id")), name


def _json(text: str | None):
    """Parsed JSON, or None when there is none."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _dict(value) -> dict:
    """The value when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _text(value) -> str | None:
    """A non-empty string, trimmed, or None."""
    return value.strip() or None if isinstance(value, str) else None
