"""The contact page's commerce read model, and what the Stripe side adds to it through CRM hooks."""
from dataclasses import dataclass
from datetime import datetime

from webapp.crm import hooks
from webapp.crm.contact_commerce import badge_class, commerce_for_contact, status_transitions
from webapp.crm.models import Contact, EcommerceCustomer
from webapp.stripe_app.contact_sections import outcome_badge
from webapp.stripe_sync.models import StripeAccount, StripeEvent, SyncLog


@dataclass
class Row:
    status: str
    stripe_status: str
    event_created: int
    event_row_id: int
    event_type: str = "customer.subscription.updated"


def test_status_history_folds_repeats_in_stripe_order():
    rows = [Row("CANCELLED", "canceled", 60, 1), Row("ACTIVE", "trialing", 10, 2),
            Row("ACTIVE", "trialing", 20, 3), Row("PAUSED", "paused", 30, 4), Row("ACTIVE", "active", 40, 5),
            Row("PAYMENT_FAILED", "past_due", 50, 6)]
    steps = status_transitions(rows)
    assert [(s.status, s.stripe_status, s.since) for s in steps] == [
        ("ACTIVE", "trialing", 10), ("PAUSED", "paused", 30), ("ACTIVE", "active", 40),
        ("PAYMENT_FAILED", "past_due", 50), ("CANCELLED", "canceled", 60)]
    assert steps[0].since_at.year == 1970


def test_badges_colour_commerce_statuses_and_sync_outcomes_apart():
    assert [badge_class(s) for s in ("paid", "PAUSED", "REFUNDED", "SOMETHING_NEW", None)] == [
        "badge-ok", "badge-warn", "badge-danger", "", ""]
    assert [outcome_badge(o) for o in ("created", "updated", "skipped", "failed", "ignored", None)] == [
        "badge-ok", "badge-ok", "badge-warn", "badge-danger", "", ""]


def test_buyer_records_carry_the_account_names_stripe_gives(db):
    contact = Contact(email="ada@example.com")
    contact.refresh_keys()
    named = StripeAccount(stripe_account_id="acct_1", display_name="Engine Room")
    bare = StripeAccount(stripe_account_id="acct_2")
    db.session.add_all([contact, named, bare])
    db.session.flush()
    db.session.add_all([EcommerceCustomer(account_id=a.id, contact_id=contact.id) for a in (named, bare)])
    db.session.commit()
    commerce = commerce_for_contact(contact.id)
    assert [name for _ec, name in commerce.customers] == ["Engine Room", "acct_2"]
    assert commerce_for_contact(contact.id + 1).customers == []


def test_stripe_activity_section_is_rendered_escaped_newest_first(app, db):
    """In Stripe's order, not ours: the charge happened last in Stripe though it was processed first; an
    imported record (no log row of its own) is in the timeline at its own creation time."""
    contact = Contact(email="ada@example.com")
    contact.refresh_keys()
    account = StripeAccount(stripe_account_id="acct_timeline")
    db.session.add_all([contact, account])
    db.session.flush()

    def event(stripe_id, type_, created, **extra):
        row = StripeEvent(account_id=account.id, stripe_event_id=stripe_id, type=type_, created=created,
                          payload="{}", status="processed", contact_id=contact.id, **extra)
        db.session.add(row)
        db.session.flush()
        return row
    charge = event("evt_charge", "charge.<b>", 1_704_103_500)  # 2024-01-01 10:05 in Stripe
    created = event("evt_created", "customer.created", 1_704_103_200)  # 10:00
    event("hist_customer_cus_1", "customer.created", 1_600_000_000, historical=True)  # 2020
    db.session.add_all([SyncLog(contact_id=contact.id, event_row_id=charge.id, event_type="charge.<b>",
                                outcome="failed", reason="<script>x</script>", created_at=datetime(2024, 2, 1)),
                        SyncLog(contact_id=contact.id, event_row_id=created.id, event_type="customer.created",
                                outcome="created", created_at=datetime(2024, 3, 1))])
    db.session.commit()
    with app.test_request_context():
        (section,) = hooks.extra_contact_sections(contact)
    html = str(section)
    assert 'id="stripe-activity"' in html and "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "charge.&lt;b&gt;" in html
    assert html.index("charge.&lt;b&gt;") < html.index("customer.created") < html.index("(imported record)")
    assert "2024-01-01 10:05 UTC" in html and "2020-09-13 12:26 UTC" in html
    assert '<span class="badge badge-ok">Imported</span>' in html
    assert '<span class="badge badge-danger">Failed</span>' in html
