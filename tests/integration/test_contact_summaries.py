"""The list's Stripe figures from data the real sync wrote: Ada's story through webhooks and a worker,
then crm/summary.py over her contact, checked against her buyer record, subscription and events."""
import re
from datetime import datetime, timezone

from sqlalchemy import func, select

from webapp.crm.models import Contact, EcommerceCustomer, RecurringPayment
from webapp.crm.summary import PAYMENT_EVENT_TYPES, refresh_summaries, shown_status
from webapp.money import format_amount
from webapp.stripe_sync.models import StripeEvent


def test_figures_from_a_synced_story_match_the_rows_they_come_from(story, db, get_page):
    story()
    ada = db.session.scalar(select(Contact).where(Contact.email_lower == "ada@example.com"))
    # The sync kept every contact's figures as it went: recomputing them all changes nothing.
    assert refresh_summaries(c for c in db.session.scalars(select(Contact.id))) == 0
    db.session.commit()
    db.session.expire_all()

    buyer = db.session.scalars(select(EcommerceCustomer).where(EcommerceCustomer.contact_id == ada.id)).one()
    payment = db.session.scalars(select(RecurringPayment).where(RecurringPayment.contact_id == ada.id)).one()
    paid = db.session.scalar(select(func.max(StripeEvent.created)).where(
        StripeEvent.contact_id == ada.id, StripeEvent.status == "processed", StripeEvent.type.in_(PAYMENT_EVENT_TYPES)))
    assert paid is not None and buyer.total_revenue > 0
    paid_at = datetime.fromtimestamp(paid, timezone.utc).replace(tzinfo=None)

    ada = db.session.get(Contact, ada.id)
    assert (ada.lifetime_value, ada.lifetime_currency) == (buyer.total_revenue, buyer.currency)
    assert ada.subscription_status == shown_status(payment.status, payment.stripe_status)
    assert ada.last_payment_at == max(d for d in (buyer.last_order_at, paid_at) if d)

    html = get_page("/contacts?sort=-lifetime_value")
    row = re.search(r"<tr>\s*<td><a[^>]*>ada@example.com</a>.*?</tr>", html, re.S).group(0)
    assert format_amount(buyer.total_revenue, buyer.currency) in row
    assert ada.subscription_status.replace("_", " ").capitalize() in row
    assert ada.last_payment_at.strftime("%Y-%m-%d") in row
