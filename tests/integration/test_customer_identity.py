"""One contact per Stripe customer: an email change in Stripe moves the contact's email, never makes a second one."""
from sqlalchemy import func, select

from tests.helpers import event_bytes
from webapp.crm.models import Contact, ContactEmailChange, ContactStripeCustomer
from webapp.crm.service import find_contact_by_email, save_contact
from webapp.stripe_sync.models import SyncLog

CREATED = 1787155400  # later than nothing; the fixture's customer.created is older than customer.updated


def contacts(db):
    db.session.expire_all()
    return list(db.session.scalars(select(Contact).order_by(Contact.id)))


def updated(email, created, event_id, customer="cus_Visible1", **extra):
    """A customer.updated for the fixture's customer (Ada), with another email."""
    return event_bytes("customer.updated", id=event_id, created=created, object__id=customer,
                       object__email=email, **{f"object__{k}": v for k, v in extra.items()})


def test_email_change_keeps_one_contact_and_the_old_email_in_history(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    assert post_event(resource, "customer.created").status_code == 200
    run_worker()
    [ada] = contacts(db)
    assert ada.email == "ada@example.com"
    post_event(resource, updated("ada.king@example.org", CREATED + 10_000, "evt_moved"))
    run_worker()
    [moved] = contacts(db)
    assert (moved.id, moved.email) == (ada.id, "ada.king@example.org")
    [change] = db.session.scalars(select(ContactEmailChange))
    assert (change.contact_id, change.old_email, change.new_email, change.stripe_customer_id) == (
        ada.id, "ada@example.com", "ada.king@example.org", "cus_Visible1")
    assert change.changed_at.strftime("%Y-%m-%d %H:%M:%S") == "2026-08-19 18:50:00"  # Stripe's time, not ours
    reason = db.session.scalar(select(SyncLog.reason).order_by(SyncLog.id.desc()).limit(1))
    assert "email changed from ada@example.com to ada.king@example.org" in reason.lower()
    assert find_contact_by_email("ada@example.com") is None


def test_an_older_update_never_moves_the_email_back(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    post_event(resource, updated("new@example.org", CREATED + 10_000, "evt_new"))
    run_worker()
    post_event(resource, updated("old@example.org", CREATED + 5_000, "evt_old_late"))
    post_event(resource, "customer.created")  # older still: ada@example.com
    run_worker()
    [only] = contacts(db)
    assert only.email == "new@example.org"
    assert db.session.scalar(select(func.count()).select_from(ContactEmailChange)) == 0
    reasons = list(db.session.scalars(select(SyncLog.reason).order_by(SyncLog.id)))
    assert any("kept newer email new@example.org" in r for r in reasons)


def test_new_email_of_another_contact_links_without_merging(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    grace = save_contact(None, {"email": "grace@example.com", "first_name": "Grace"})
    post_event(resource, "customer.created")
    run_worker()
    post_event(resource, updated("grace@example.com", CREATED + 10_000, "evt_to_grace"))
    run_worker()
    people = contacts(db)
    assert [c.email for c in people] == ["grace@example.com", "ada@example.com"]  # nothing merged
    link = db.session.get(ContactStripeCustomer, (resource.account_id, "cus_Visible1"))
    assert link.contact_id == grace.id
    reason = db.session.scalar(select(SyncLog.reason).order_by(SyncLog.id.desc()).limit(1))
    assert "belongs to another contact: linked to that contact, not merged" in reason


def test_a_payment_billing_email_does_not_rename_the_customer_contact(connect_resource, post_event, run_worker, db):
    """Only the Customer's own email moves the contact; a card form's email is the payer's, not the customer's."""
    customers = connect_resource("customer")
    charges = connect_resource("charge")
    post_event(customers, "customer.created")
    run_worker()
    charge = event_bytes("charge.succeeded", id="evt_card_email", object__customer="cus_Visible1",
                         object__billing_details={"email": "accounts@lovelace.example", "name": "Ada Lovelace",
                                                  "phone": None, "address": None})
    post_event(charges, charge)
    run_worker()
    people = contacts(db)
    assert [c.email for c in people] == ["ada@example.com"]
    assert db.session.scalar(select(SyncLog.contact_id).order_by(SyncLog.id.desc()).limit(1)) == people[0].id


def test_two_customers_sharing_a_contact_are_parted_when_one_changes_email(connect_resource, post_event,
                                                                          run_worker, db):
    resource = connect_resource("customer")
    post_event(resource, "customer.created")
    post_event(resource, updated("ada@example.com", CREATED + 100, "evt_twin", customer="cus_Twin"))
    run_worker()
    [shared] = contacts(db)
    post_event(resource, updated("twin@example.org", CREATED + 10_000, "evt_twin_moves", customer="cus_Twin"))
    run_worker()
    people = contacts(db)
    assert [c.email for c in people] == ["ada@example.com", "twin@example.org"]
    assert people[0].id == shared.id
    assert db.session.get(ContactStripeCustomer, (resource.account_id, "cus_Twin")).contact_id == people[1].id
    assert db.session.get(ContactStripeCustomer, (resource.account_id, "cus_Visible1")).contact_id == shared.id


def test_a_value_changed_by_hand_outranks_older_stripe_events(connect_resource, post_event, run_worker, db):
    """Forward-only: events from before a hand edit (a late delivery, a re-sync) leave it alone; newer ones win."""
    resource = connect_resource("customer")
    post_event(resource, "customer.created")
    run_worker()
    [ada] = contacts(db)
    save_contact(ada, {"email": "countess@example.org", "first_name": "Augusta", "last_name": "Lovelace"})
    post_event(resource, "customer.updated")  # from August 2026: before the edit
    run_worker()
    [kept] = contacts(db)
    assert (kept.email, kept.first_name) == ("countess@example.org", "Augusta")
    [change] = db.session.scalars(select(ContactEmailChange))
    assert (change.old_email, change.new_email, change.stripe_customer_id) == (
        "ada@example.com", "countess@example.org", None)
    post_event(resource, updated("ada@lovelace.example", 2_100_000_000, "evt_future", name="Ada King"))
    run_worker()
    [newer] = contacts(db)
    assert (newer.email, newer.first_name, newer.last_name) == ("ada@lovelace.example", "Ada", "King")
