"""Remembered Stripe customers: newer replaces older (never the reverse), freshness, and when an
event's own details make a retrieve unnecessary."""
import time

import pytest

from tests.helpers import load_event
from webapp.extensions import db as _db
from webapp.stripe_sync.apply import customer_store
from webapp.stripe_sync.apply.customer import object_serves
from webapp.stripe_sync.apply.customer_store import Learned
from webapp.stripe_sync.models import StripeAccount


@pytest.fixture
def account(app, db):
    acct = StripeAccount(stripe_account_id="acct_store", livemode=False)
    db.session.add(acct)
    db.session.commit()
    return acct.id


def remember(*records):
    customer_store.remember(records)
    _db.session.commit()


def test_a_newer_record_replaces_an_older_one_and_never_the_reverse(account):
    now = int(time.time())
    remember(Learned(account, "cus_1", {"id": "cus_1", "email": "new@example.com"}, now - 10))
    remember(Learned(account, "cus_1", {"id": "cus_1", "email": "old@example.com"}, now - 20))  # late delivery
    assert customer_store.stored(account, ["cus_1"])["cus_1"].data["email"] == "new@example.com"
    remember(Learned(account, "cus_1", {"id": "cus_1", "email": "same-second@example.com"}, now - 10))
    assert customer_store.stored(account, ["cus_1"])["cus_1"].data["email"] == "new@example.com"
    remember(Learned(account, "cus_1", {"id": "cus_1", "email": "newest@example.com"}, now))
    assert customer_store.stored(account, ["cus_1"])["cus_1"].data["email"] == "newest@example.com"


def test_within_one_batch_the_newest_record_wins_whatever_the_order(account):
    now = int(time.time())
    remember(Learned(account, "cus_2", {"email": "b@example.com"}, now - 5),
             Learned(account, "cus_2", {"email": "a@example.com"}, now - 50))
    assert customer_store.stored(account, ["cus_2"])["cus_2"].data["email"] == "b@example.com"


def test_a_deleted_customer_is_remembered_as_gone_and_only_the_mapped_fields_are_kept(account):
    now = int(time.time())
    ada = load_event("customer.updated")["data"]["object"]
    remember(Learned(account, ada["id"], ada, now - 30), Learned(account, "cus_gone", None, now))
    found = customer_store.stored(account, [ada["id"], "cus_gone"])
    assert found["cus_gone"].data is None
    assert set(found[ada["id"]].data) == {"id", "email", "name", "phone", "address", "description", "metadata"}


def test_only_recent_records_are_used_instead_of_a_retrieve(account):
    now = int(time.time())
    remember(Learned(account, "cus_new", {"email": "n@example.com"}, now - 60),
             Learned(account, "cus_old", {"email": "o@example.com"}, now - 3600))
    assert set(customer_store.load(account, ["cus_new", "cus_old", "cus_none"], 300)) == {"cus_new"}


def test_disconnecting_forgets_the_accounts_customers(account):
    remember(Learned(account, "cus_3", {"email": "c@example.com"}, int(time.time())))
    customer_store.forget_account(account)
    _db.session.commit()
    assert customer_store.stored(account, ["cus_3"]) == {}


@pytest.mark.parametrize("name,mapped,serves", [
    ("invoice.payment_succeeded", ["email", "name"], True),          # customer_email / customer_name
    ("invoice.payment_succeeded", ["email", "address.city", "phone", "id"], True),
    ("charge.succeeded", ["email", "name"], True),                   # billing_details
    ("checkout.session.completed", ["email", "name"], True),         # customer_details
    ("invoice.payment_succeeded", ["email", "metadata.plan"], False),  # metadata: only on the Customer
    ("charge.succeeded", ["email", "description"], False),
    ("customer.subscription.created", ["email"], False),             # a subscription has no details
])
def test_when_the_event_alone_serves_the_mapping(name, mapped, serves):
    event = load_event(name)
    assert object_serves(event["type"], event["data"]["object"], mapped) is serves


def test_an_invoice_without_an_email_needs_its_customer():
    event = load_event("invoice.payment_succeeded")
    event["data"]["object"]["customer_email"] = None
    assert object_serves(event["type"], event["data"]["object"], ["email"]) is False
