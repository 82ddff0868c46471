"""Reading the sync log: filtered pages by id, so a poll with nothing new is one indexed query."""
from dataclasses import dataclass

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.stripe_sync.models import (
    OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_SKIPPED, OUTCOME_UPDATED, OUTCOMES, StripeEvent, SyncLog,
)

PAGE_SIZE = 50
NEWER_LIMIT = 200


def _positive_int(raw) -> int | None:
    """A positive integer from a query string, or None."""
    raw = str(raw or "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


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
        return cls(account_id=_positive_int(args.get("account")), resource_id=_positive_int(args.get("resource")),
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


__all__ = ["LogFilters", "latest", "newer", "older", "max_id", "for_contact", "SYNCED", "OUTCOME_SKIPPED",
           "OUTCOME_FAILED", "event_for", "can_retry"]
