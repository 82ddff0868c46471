"""The sync log: one row per sync attempt, written with the resource's counters in the same
transaction, and read in filtered pages by id, so a poll with nothing new is one indexed query."""
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, insert, select

from webapp.extensions import db
from webapp.numbers import whole_number
from webapp.stripe_sync.models import (
    COUNTER_SHARDS, OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_SKIPPED, OUTCOME_UPDATED, OUTCOMES, EventRef,
    ResourceCounter, StripeEvent, SyncLog,
)
from webapp.timeutil import utcnow
from webapp.upsert import dialect_insert

PAGE_SIZE = 50
NEWER_LIMIT = 200


@dataclass(frozen=True)
class LogFilters:
    """The filters a user picked; they travel in the URL so a refresh keeps them."""

    account_id: int | None = None
    resource_id: int | None = None
    outcome: str | None = None
    event_type: str | None = None

    @classmethod
    def from_args(cls, args) -> "LogFilters":
        """Parse and sanitise query arguments."""
        outcome = args.get("outcome") or None
        event_type = (args.get("event_type") or "").strip()[:100] or None
        return cls(account_id=whole_number(args.get("account")), resource_id=whole_number(args.get("resource")),
                   outcome=outcome if outcome in OUTCOMES else None, event_type=event_type)

    def as_args(self) -> dict:
        """The query arguments that reproduce these filters."""
        pairs = {"account": self.account_id, "resource": self.resource_id, "outcome": self.outcome,
                 "event_type": self.event_type}
        return {k: v for k, v in pairs.items() if v}

    def conditions(self) -> list:
        """SQL conditions; each has an index that starts with its column and ends with id."""
        conds = []
        if self.account_id:
            conds.append(SyncLog.account_id == self.account_id)
        if self.resource_id:
            conds.append(SyncLog.resource_id == self.resource_id)
        if self.outcome:
            conds.append(SyncLog.outcome == self.outcome)
        if self.event_type:
            conds.append(SyncLog.event_type == self.event_type)
        return conds


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
    return event is not None and event.status == "failed"


def resource_counts(accounts) -> dict[int, dict[str, int]]:
    """Per resource of these accounts: sync attempts synced, skipped and failed."""
    return counts_for([r.id for a in accounts for r in a.resources])


def counts_for(ids: list[int]) -> dict[int, dict[str, int]]:
    """Per resource id: sync attempts synced, skipped and failed, summed from the counter shards."""
    counts = {rid: {"synced": 0, "skipped": 0, "failed": 0} for rid in ids}
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


__all__ = ["LogFilters", "latest", "newer", "older", "max_id", "for_contact", "SYNCED", "OUTCOME_SKIPPED",
           "OUTCOME_FAILED", "event_for", "can_retry", "resource_counts", "counts_for"]


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
