"""What Stripe adds to a contact's page: its sync activity and the names of the accounts a buyer is in."""
from flask import render_template
from markupsafe import Markup
from sqlalchemy import select

from webapp.crm import hooks
from webapp.crm.models import Contact
from webapp.extensions import db
from webapp.stripe_sync.models import (
    OUTCOME_CREATED, OUTCOME_FAILED, OUTCOME_SKIPPED, OUTCOME_UPDATED, StripeAccount, SyncLog,
)

ACTIVITY_LIMIT = 50
OUTCOME_BADGES = {
    OUTCOME_CREATED: "badge-ok", OUTCOME_UPDATED: "badge-ok", OUTCOME_SKIPPED: "badge-warn",
    OUTCOME_FAILED: "badge-danger",
}


def outcome_badge(outcome: str | None) -> str:
    """Failures must stand out in a contact's history; ignored events stay neutral."""
    return OUTCOME_BADGES.get((outcome or "").lower(), "")


def recent_activity(contact_id: int, limit: int = ACTIVITY_LIMIT) -> list[SyncLog]:
    """The newest rows answer "what did Stripe just do to this contact"; the live log has the rest."""
    return list(db.session.scalars(
        select(SyncLog).where(SyncLog.contact_id == contact_id).order_by(SyncLog.id.desc()).limit(limit)))


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
