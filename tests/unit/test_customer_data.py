"""Customer resolution against every shared fixture: who the contact is decides everything else."""

import json

import pytest

from tests.helpers import EVENTS_DIR, load_event
from webapp.stripe_sync.apply.customer import CustomerData, resolve_customer_data

ADA_ADDRESS = {
    "line1": "1815 Analytical Engine Row",
    "line2": "Apt 2",
    "city": "Boston",
    "state": "MA",
    "postal_code": "02110",
    "country": "US",
}


def ada_customer():
    """Ada as Stripe returns her after she added her card, address and phone."""
    return load_event("customer.updated.json")["data"]["object"]


class Fetcher:
    """Records calls so tests can assert the Stripe API is asked exactly when needed."""

    def __init__(self, result):
        self.result = result
        self.calls = []

    def __call__(self, customer_id):
        self.calls.append(customer_id)
        return self.result


def resolve(name, fetch=None):
    event = load_event(name)
    return resolve_customer_data(event["type"], event["data"]["object"], fetch)


NON_CUSTOMER_FIXTURES = sorted(
    p.name for p in EVENTS_DIR.glob("*.json") if not p.name.startswith("customer.") or "subscription" in p.name
)


@pytest.mark.parametrize("name", NON_CUSTOMER_FIXTURES)
def test_every_story_fixture_fetches_ada_once_and_resolves_her(name):
    fetch = Fetcher(ada_customer())
    data = resolve(name, fetch)
    assert fetch.calls == ["cus_Visible1"]
    assert data.id == "cus_Visible1"
    assert data.email == "ada@example.com"
    assert data.name == "Ada Lovelace"
    assert data.phone == "+16175550142"
    assert dict(data.address) == ADA_ADDRESS
    assert dict(data.metadata) == {"app_user_id": "user_1815"}
    assert data.source.startswith("customer")


@pytest.mark.parametrize("name", ["customer.created.json", "customer.updated.json"])
def test_customer_events_use_the_object_and_never_fetch(name):
    fetch = Fetcher(None)
    data = resolve(name, fetch)
    assert fetch.calls == []
    assert data.id == "cus_Visible1"
    assert data.email == "ada@example.com"
    assert data.name == "Ada Lovelace"
    assert data.metadata == {"app_user_id": "user_1815"}
    assert data.source == "customer"


def test_customer_created_has_no_phone_or_address_yet():
    data = resolve("customer.created.json")
    assert data.phone is None
    assert dict(data.address) == dict.fromkeys(ADA_ADDRESS)
    assert data.description is None


def test_charge_merges_fetched_customer_with_billing_details():
    sparse = dict(ada_customer(), phone=None, address=None, name="")
    fetch = Fetcher(sparse)
    data = resolve("charge.succeeded.json", fetch)
    assert fetch.calls == ["cus_Visible1"]
    assert data.email == "ada@example.com"
    assert data.name == "Ada Lovelace"  # empty on the customer, filled from billing_details
    assert data.phone == "+16175550142"
    assert dict(data.address) == ADA_ADDRESS
    assert data.metadata == {"app_user_id": "user_1815"}
    assert data.source == "customer+billing_details"


def test_customer_values_win_over_billing_details():
    fetch = Fetcher(dict(ada_customer(), email="  countess@example.com ", name="Augusta Ada King"))
    data = resolve("charge.succeeded.json", fetch)
    assert data.email == "countess@example.com"
    assert data.name == "Augusta Ada King"


def test_charge_falls_back_to_billing_details_when_fetch_finds_nothing():
    fetch = Fetcher(None)
    data = resolve("charge.succeeded.json", fetch)
    assert fetch.calls == ["cus_Visible1"]
    assert data.id == "cus_Visible1"
    assert data.email == "ada@example.com"
    assert data.name == "Ada Lovelace"
    assert data.phone == "+16175550142"
    assert dict(data.address) == ADA_ADDRESS
    assert data.metadata == {}
    assert data.description is None  # the charge's own description is not the customer's
    assert data.source == "billing_details"


def test_deleted_customer_counts_as_none():
    fetch = Fetcher({"id": "cus_Visible1", "object": "customer", "deleted": True})
    data = resolve("invoice.payment_failed.json", fetch)
    assert data.email == "ada@example.com"
    assert data.source == "invoice"


def test_without_fetcher_an_id_only_object_uses_its_own_data():
    data = resolve("checkout.session.async_payment_succeeded.json")
    assert data.id == "cus_Visible1"
    assert data.email == "ada@example.com"
    assert data.name == "Ada Lovelace"
    assert data.phone is None
    assert dict(data.address) == ADA_ADDRESS
    assert data.source == "customer_details"


def test_subscription_without_customer_data_has_no_email():
    data = resolve("customer.subscription.created.json", Fetcher(None))
    assert data.email is None
    assert data.id == "cus_Visible1"
    assert data.source == "none"


def test_expanded_customer_is_used_without_fetching():
    event = load_event("invoice.created.json")
    obj = dict(event["data"]["object"], customer=ada_customer(), customer_email=None)
    fetch = Fetcher(None)
    data = resolve_customer_data(event["type"], obj, fetch)
    assert fetch.calls == []
    assert data.email == "ada@example.com"
    assert data.metadata == {"app_user_id": "user_1815"}


def test_fetch_errors_propagate_for_retry():
    def boom(_customer_id):
        raise ConnectionError("Stripe unreachable")

    with pytest.raises(ConnectionError):
        resolve("charge.succeeded.json", boom)


def test_invoice_upcoming_has_no_id_but_resolves():
    event = load_event("invoice.upcoming.json")
    assert "id" not in event["data"]["object"]
    data = resolve("invoice.upcoming.json")
    assert data.email == "ada@example.com"
    assert data.name == "Ada Lovelace"
    assert data.phone == "+16175550142"
    assert data.source == "invoice"


def test_edge_guest_charge_uses_billing_email_only():
    fetch = Fetcher(ada_customer())
    data = resolve("edge/charge.succeeded.json", fetch)
    assert fetch.calls == []
    assert data.id is None
    assert data.email == "guest.buyer@example.com"
    assert data.name is None and data.phone is None
    assert dict(data.address) == dict.fromkeys(ADA_ADDRESS)
    assert data.metadata == {}  # order metadata is not customer metadata
    assert data.source == "billing_details"


def test_edge_customer_without_email():
    data = resolve("edge/customer.created.json")
    assert data.email is None
    assert not data.has_email
    assert data.name == "Charles Babbage"
    assert data.phone == "+442079460991"
    assert data.description == "Walk-in customer, no email on file"
    assert data.metadata == {"source": "pos"}


def test_edge_html_in_name_is_kept_verbatim():
    data = resolve("edge/customer.updated.json")
    assert data.name == "José Núñez-García <script>alert(1)</script> O'Brien"
    assert data.email == "jose.nunez@example.com"


def test_stripe_objects_are_accepted():
    import stripe

    event = stripe.Event.construct_from(load_event("charge.succeeded.json"), "sk_test_x")
    data = resolve_customer_data(event.type, event.data.object, lambda _id: None)
    assert data.email == "ada@example.com"


def test_empty_strings_become_none_and_email_is_stripped():
    obj = {"object": "charge", "customer": None, "receipt_email": "  ",
           "billing_details": {"email": " x@example.com\n", "name": "", "phone": " ", "address": None}}
    data = resolve_customer_data("charge.succeeded", obj)
    assert data.email == "x@example.com"
    assert data.name is None and data.phone is None


def test_receipt_email_is_the_last_resort_for_charges():
    obj = {"object": "charge", "customer": None, "receipt_email": "r@example.com",
           "billing_details": {"email": None}}
    assert resolve_customer_data("charge.succeeded", obj).email == "r@example.com"


def test_to_dict_is_plain_json():
    data = resolve("customer.updated.json")
    as_dict = data.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["address"] == ADA_ADDRESS
    assert isinstance(data, CustomerData)
