"""A contact's identity over time: the emails it had before and the Stripe customers it is."""
from sqlalchemy import select

from webapp.crm.models import ContactEmailChange, ContactStripeCustomer
from webapp.extensions import db


def email_changes(contact_id: int) -> list[ContactEmailChange]:
    """Newest first, so the contact page answers "what was this person's email before"."""
    return list(db.session.scalars(select(ContactEmailChange).where(ContactEmailChange.contact_id == contact_id)
                                   .order_by(ContactEmailChange.changed_at.desc(), ContactEmailChange.id.desc())))


def stripe_customer_ids(contact_id: int) -> list[str]:
    """The Stripe customers linked to the contact, in every connected account."""
    return sorted(set(db.session.scalars(select(ContactStripeCustomer.customer_id)
                                         .where(ContactStripeCustomer.contact_id == contact_id))))
