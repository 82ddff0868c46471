"""What Stripe adds to a contact's page: its Stripe timeline and the names of the accounts a buyer is in."""
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import render_template
from markupsafe import Markup
from sqlalchemy import select

from webapp.crm import hooks
from webapp.crm.models import Contact
from webapp.extensions import db
from webapp.stripe_sync.models import (
    OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_SKIPPED, OUTCOME_UPDATED, StripeAccount, StripeEvent, SyncLog,
)

ACTIVITY_LIMIT = 50
OUTCOME_BADGES = {
    OUTCOME_CREATED: "badge-ok", OUTCOME_UPDATED: "badge-ok", OUTCOME_SKIPPED: "badge-warn",
    OUTCOME_FAILED: "badge-danger", "imported": "badge-ok", "processed": "badge-ok",
}


def outcome_badge(outcome: str | None) -> str:
    """Failures must stand out in a contact's history; ignored events stay neutral."""
    return OUTCOME_BADGES.get((outcome or "").lower(), "")


@dataclass
class Activity:
    """One Stripe event about the contact, at the time it happened in Stripe."""

    event_type: str
    at: datetime  # Stripe's `created` (an imported record's own creation time)
    outcome: str  # what the sync did: Created, Updated, Skipped, Failed, or Imported
    historical: bool
    reason: str | None


def recent_activity(contact_id: int, limit: int = ACTIVITY_LIMIT) -> list[Activity]:
    """The newest events in Stripe's order (not the order we processed them), imported records included,
    each with what its latest sync attempt said."""
    events = db.session.execute(
        select(StripeEvent.id, StripeEvent.type, StripeEvent.created, StripeEvent.status, StripeEvent.historical)
        .where(StripeEvent.contact_id == contact_id)
        .order_by(StripeEvent.created.desc(), StripeEvent.id.desc()).limit(limit)).all()
    latest: dict[int, SyncLog] = {}
    if events:
        for row in db.session.scalars(select(SyncLog).where(SyncLog.event_row_id.in_([e.id for e in events]))
                                      .order_by(SyncLog.id)):
            latest[row.event_row_id] = row
    activity = []
    for event in events:
        attempt = latest.get(event.id)
        outcome = attempt.outcome if attempt is not None else ("imported" if event.historical else event.status)
        activity.append(Activity(event.type, datetime.fromtimestamp(event.created, timezone.utc).replace(tzinfo=None),
                                 outcome, event.historical, attempt.reason if attempt is not None else None))
    return activity


def activity_section(contact: Contact) -> Markup:
    """Rendered by an autoescaping template, so the contact page can include it as it is."""
    return Markup(render_template("apps/_contact_activity.html", activity=recent_activity(contact.id),
                                  outcome_badge=outcome_badge))


def account_names(account_ids: set[int]) -> dict[int, str]:
    """An account without a display name is still told apart, by its email or Stripe id."""
    rows = db.session.scalars(select(StripeAccount).where(StripeAccount.id.in_(account_ids)))
    return {a.id: a.display_name or a.email or a.stripe_account_id for a in rows}


def register() -> None:
    """create_app calls this; the CRM cannot import Stripe to ask."""
    hooks.account_namers.register(account_names)
    hooks.contact_sections.register(activity_section)
