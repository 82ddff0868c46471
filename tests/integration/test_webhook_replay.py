"""Every shared event file, signed and posted like Stripe, processed by a real RQ worker on a real
Redis, gives exactly the rows the event table (webapp/stripe_sync/events.py) says."""
import json

import pytest
from sqlalchemy import func, select

from tests.helpers import STORY, count, event_path, kind_for
from webapp.crm.models import (
    Contact, EcommerceCustomer, Order, RecurringPayment, RecurringPaymentStatus, TriggerFired,
)
from webapp.crm.service import find_contact_by_email
from webapp.stripe_sync.events import BASE_TAG, SUBSCRIPTION_EVENTS_TAG
from webapp.stripe_sync.models import StripeEvent, SyncLog
from webapp.crm.contact_commerce import status_transitions

EDGE = ["edge/charge.succeeded", "edge/customer.created", "edge/customer.updated"]
ONEOFF_SESSION = "cs_test_a16OXKRtRGUEa0NcK8MgraGrFTC8jcF3vkV4g6NKxswLVSYWKqlSSkNvaG"


def tag_names(contact):
    return {t.name for t in contact.tags}


def expected_tags(*types):
    tags = {BASE_TAG} | {f"{BASE_TAG}-{t}" for t in types}
    if any(t.startswith("customer.subscription.") for t in types):
        tags.add(SUBSCRIPTION_EVENTS_TAG)
    return tags


def event_type(name):
    return json.loads(event_path(name).read_bytes())["type"]


@pytest.mark.parametrize("name", STORY)
def test_each_story_file_alone(name, connect_resource, post_event, run_worker, db):
    resource = connect_resource(kind_for(name))
    resp = post_event(resource, name)
    assert resp.status_code == 200 and resp.get_json() == {"received": True}
    run_worker()

    etype = event_type(name)
    ada = find_contact_by_email("ADA@example.com")
    assert ada is not None and count(db, Contact) == 1
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert tag_names(ada) == expected_tags(etype)
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.attempts, row.contact_id, row.error) == ("processed", 1, ada.id, None)
    log = db.session.scalar(select(SyncLog))
    assert (log.outcome, log.contact_id, log.event_type, log.attempt) == ("created", ada.id, etype, 1)
    assert log.duration_ms is not None and log.stripe_event_id == row.stripe_event_id

    is_sub = etype.startswith("customer.subscription.")
    paid_session = name == "checkout.session.async_payment_succeeded"
    assert count(db, RecurringPayment) == (1 if is_sub else 0)
    assert count(db, RecurringPaymentStatus) == (1 if is_sub else 0)
    assert count(db, Order) == (1 if paid_session else 0)
    assert count(db, EcommerceCustomer) == (1 if is_sub or paid_session else 0)
    triggers = {t.trigger for t in db.session.scalars(select(TriggerFired))}
    expected = {"stripe_event_received"}
    if is_sub:
        expected.add("recurring_payment_created")
    if paid_session:
        expected.add("makes_purchase")
    assert triggers == expected
    if paid_session:
        order = db.session.scalar(select(Order))
        assert (order.external_id, order.amount_total, order.currency, order.status) == (
            ONEOFF_SESSION, 45000, "usd", "paid")
        ec = db.session.scalar(select(EcommerceCustomer))
        assert (ec.total_orders, ec.total_revenue, ec.currency, ec.stripe_customer_id) == (1, 45000, "usd",
                                                                                           "cus_Visible1")


def test_ada_whole_story_in_order(connect_all, post_event, run_worker, db, get_page):
    resources = connect_all()
    for name in STORY:
        resp = post_event(resources[kind_for(name)], name)
        assert resp.status_code == 200, (name, resp.get_json())
    run_worker()

    assert count(db, Contact) == 1
    ada = find_contact_by_email("ada@example.com")
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert tag_names(ada) == expected_tags(*[event_type(n) for n in STORY])
    assert set(db.session.scalars(select(StripeEvent.status))) == {"processed"}

    payment = db.session.scalar(select(RecurringPayment))
    assert (payment.external_id, payment.status, payment.stripe_status) == (
        "sub_1U0I40Lm3xVt9QeKBuuQpyCp", "CANCELLED", "canceled")
    assert (payment.name, payment.amount, payment.currency, payment.interval) == (
        "Notebook Pro monthly", 2900, "usd", "month")
    assert [(t.status, t.stripe_status) for t in status_transitions(payment.history)] == [
        ("ACTIVE", "trialing"), ("PAUSED", "paused"), ("ACTIVE", "active"),
        ("PAYMENT_FAILED", "past_due"), ("CANCELLED", "canceled")]
    assert len(payment.history) == 6  # one row per subscription event

    orders = list(db.session.scalars(select(Order)))
    assert [(o.amount_total, o.currency, o.status) for o in orders] == [(45000, "usd", "paid")]
    ec = db.session.scalar(select(EcommerceCustomer))
    assert (ec.total_orders, ec.total_revenue) == (1, 45000) and count(db, EcommerceCustomer) == 1

    fired = db.session.execute(select(TriggerFired.trigger, func.count()).group_by(TriggerFired.trigger)).all()
    assert dict(fired) == {"stripe_event_received": len(STORY), "makes_purchase": 1,
                           "recurring_payment_created": 1, "recurring_payment_updated": 5}
    outcomes = list(db.session.scalars(select(SyncLog.outcome).order_by(SyncLog.id)))
    assert outcomes == ["created"] + ["updated"] * (len(STORY) - 1)

    page = get_page(f"/contacts/{ada.id}")
    assert "$450.00" in page and "CANCELLED" in page and "PAYMENT_FAILED" in page
    assert "stripe-integration-Billing_Subscription_Events" in page


def test_guest_charge_creates_the_guest(connect_resource, post_event, run_worker, db):
    resource = connect_resource("charge")
    assert post_event(resource, "edge/charge.succeeded").status_code == 200
    run_worker()
    guest = find_contact_by_email("guest.buyer@example.com")
    assert guest is not None and count(db, Contact) == 1
    assert (guest.first_name, guest.last_name) == ("", "")
    assert tag_names(guest) == expected_tags("charge.succeeded")
    assert count(db, Order) == 0 and count(db, EcommerceCustomer) == 0


def test_customer_without_email_is_skipped(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    assert post_event(resource, "edge/customer.created").status_code == 200
    run_worker()
    assert count(db, Contact) == 0
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "skipped"
    log = db.session.scalar(select(SyncLog))
    assert (log.outcome, log.reason, log.contact_id) == ("skipped", "no email", None)
    assert count(db, TriggerFired) == 0


def test_html_in_a_name_is_stored_as_text_and_shown_escaped(connect_resource, post_event, run_worker, db,
                                                           get_page):
    resource = connect_resource("customer", mapping=[("email", "email"), ("name", "last_name"),
                                                     ("address.city", "phone")])
    assert post_event(resource, "edge/customer.updated").status_code == 200
    run_worker()
    jose = find_contact_by_email("jose.nunez@example.com")
    assert jose.first_name == "José"
    assert jose.last_name == "Núñez-García <script>alert(1)</script> O'Brien"
    html = get_page(f"/contacts/{jose.id}")
    assert "<script>alert(1)</script>" not in html
    assert "Núñez-García &lt;script&gt;alert(1)&lt;/script&gt; O&#39;Brien" in html


def test_all_edge_files_together(connect_all, post_event, run_worker, db):
    resources = connect_all()
    for name in EDGE:
        assert post_event(resources[kind_for(name)], name).status_code == 200
    run_worker()
    emails = set(db.session.scalars(select(Contact.email_lower)))
    assert emails == {"guest.buyer@example.com", "jose.nunez@example.com"}
    assert sorted(db.session.scalars(select(StripeEvent.status))) == ["processed", "processed", "skipped"]
