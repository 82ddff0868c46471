"""Stripe does not keep order: data written by a newer event is never overwritten by an older one."""
import random

from sqlalchemy import select

from tests.helpers import event_bytes, kind_for, story_files
from webapp.crm.models import Contact, ContactFieldStamp, Order, RecurringPayment
from webapp.crm.service import find_contact_by_email
from webapp.stripe_sync.models import StripeEvent
from webapp.crm.contact_commerce import status_transitions

UPDATED = 1787155498  # customer.updated's `created`


def ada(db):
    db.session.expire_all()
    return find_contact_by_email("ada@example.com")


def test_older_customer_update_arriving_late_keeps_the_newer_name(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    newer = event_bytes("customer.updated", id="evt_newer_name", created=UPDATED + 60, object__name="Ada King")
    assert post_event(resource, newer).status_code == 200
    run_worker()
    assert (ada(db).first_name, ada(db).last_name) == ("Ada", "King")
    assert post_event(resource, "customer.created").status_code == 200  # older: "Ada Lovelace"
    assert post_event(resource, "customer.updated").status_code == 200  # older too
    run_worker()
    contact = ada(db)
    assert (contact.first_name, contact.last_name) == ("Ada", "King")
    stamp = db.session.get(ContactFieldStamp, (contact.id, "last_name"))
    assert stamp.event_created == UPDATED + 60
    assert set(db.session.scalars(select(StripeEvent.status))) == {"processed"}


def test_equal_created_goes_to_the_later_arrival(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    post_event(resource, event_bytes("customer.updated", id="evt_tie_1", object__name="First Arrival"))
    post_event(resource, event_bytes("customer.updated", id="evt_tie_2", object__name="Second Arrival"))
    run_worker()
    assert ada(db).full_name == "Second Arrival"


def test_late_older_subscription_update_does_not_uncancel(connect_resource, post_event, run_worker, db):
    resource = connect_resource("subscription")
    post_event(resource, "customer.subscription.created")
    post_event(resource, "customer.subscription.deleted")
    run_worker()
    post_event(resource, "customer.subscription.updated")  # past_due, older than the deletion
    post_event(resource, "customer.subscription.paused")
    run_worker()
    payment = db.session.scalar(select(RecurringPayment))
    assert (payment.status, payment.stripe_status) == ("CANCELLED", "canceled")
    # The history still tells the truth, in Stripe's order.
    assert [t.status for t in status_transitions(payment.history)] == [
        "ACTIVE", "PAUSED", "PAYMENT_FAILED", "CANCELLED"]


def test_update_in_the_same_second_as_the_deletion_does_not_uncancel(connect_resource, post_event, run_worker, db):
    resource = connect_resource("subscription")
    deleted = event_bytes("customer.subscription.deleted")
    same_second = event_bytes("customer.subscription.updated", id="evt_same_second", created=1790335805,
                              object__status="active")
    post_event(resource, deleted)
    post_event(resource, same_second)
    run_worker()
    assert db.session.scalar(select(RecurringPayment.status)) == "CANCELLED"


def test_resume_after_pause_wins(connect_resource, post_event, run_worker, db):
    resource = connect_resource("subscription")
    post_event(resource, "customer.subscription.resumed")
    post_event(resource, "customer.subscription.paused")  # older, arrives later
    run_worker()
    assert db.session.scalar(select(RecurringPayment.status)) == "ACTIVE"


def test_shuffled_story_ends_where_the_ordered_one_does(connect_all, post_event, run_worker, db):
    resources = connect_all()
    names = story_files()
    random.Random(20260803).shuffle(names)
    for name in names:
        assert post_event(resources[kind_for(name)], name).status_code == 200
    run_worker()
    assert db.session.query(Contact).count() == 1
    contact = ada(db)
    assert contact.full_name == "Ada Lovelace"
    payment = db.session.scalar(select(RecurringPayment))
    assert payment.status == "CANCELLED"
    assert [t.status for t in status_transitions(payment.history)] == [
        "ACTIVE", "PAUSED", "ACTIVE", "PAYMENT_FAILED", "CANCELLED"]
    assert [(o.amount_total, o.status) for o in db.session.scalars(select(Order))] == [(45000, "paid")]
