"""The event table must say exactly what the product promises, because endpoints and the worker read only it."""

import json

import pytest

from tests.helpers import EVENTS_DIR, load_event
from webapp.stripe_sync import events
from webapp.stripe_sync.events import Effect


def fixture_paths():
    """Every shared event file, Ada's story and the edge cases alike."""
    return sorted(EVENTS_DIR.glob("*.json")) + sorted((EVENTS_DIR / "edge").glob("*.json"))


def test_fixtures_are_present():
    assert len(fixture_paths()) == 20


@pytest.mark.parametrize("path", fixture_paths(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_type_is_known_and_belongs_to_one_resource(path):
    event = json.loads(path.read_text(encoding="utf-8"))
    event_type = event["type"]
    assert events.is_known_event(event_type)
    owners = [r.kind for r in events.RESOURCES if event_type in r.event_types]
    assert len(owners) == 1
    resource = events.resource_for_event(event_type)
    assert resource.kind == owners[0]
    assert resource.stripe_object == event["data"]["object"]["object"]


def test_resources_in_order_with_names():
    assert events.resource_choices() == [
        ("charge", "Charge"),
        ("customer", "Customer"),
        ("subscription", "Subscription"),
        ("invoice", "Invoice"),
        ("checkout_session", "Checkout Session"),
    ]
    assert events.RESOURCE_KINDS == ("charge", "customer", "subscription", "invoice", "checkout_session")


def test_subscribed_events_match_design():
    assert events.events_for_resource("charge") == ("charge.succeeded", "charge.refunded")
    assert events.events_for_resource("customer") == ("customer.created", "customer.updated")
    assert events.events_for_resource("subscription") == tuple(
        f"customer.subscription.{s}"
        for s in ("created", "updated", "deleted", "trial_will_end", "paused", "resumed")
    )
    assert events.events_for_resource("invoice") == tuple(
        f"invoice.{s}" for s in ("created", "updated", "payment_succeeded", "payment_failed", "upcoming")
    )
    assert events.events_for_resource("checkout_session") == (
        "checkout.session.async_payment_succeeded",
        "checkout.session.completed",
    )
    assert len(events.ALL_EVENT_TYPES) == 17


def test_every_shared_fixture_type_is_subscribed_somewhere():
    fixture_types = {json.loads(p.read_text())["type"] for p in EVENTS_DIR.glob("*.json")}
    assert fixture_types == set(events.ALL_EVENT_TYPES)


def test_unknown_kind_raises_and_unknown_event_is_none():
    with pytest.raises(KeyError):
        events.events_for_resource("payout")
    assert events.resource_for_event("payout.paid") is None
    assert events.effect_for_event("payout.paid") is None
    assert not events.is_known_event("customer.deleted")


def test_effects():
    assert events.effect_for_event("customer.created") is Effect.CONTACT
    assert events.effect_for_event("charge.succeeded") is Effect.CONTACT
    assert events.effect_for_event("charge.refunded") is Effect.REFUND
    assert events.effect_for_event("invoice.upcoming") is Effect.CONTACT
    for t in events.events_for_resource("invoice"):
        assert events.effect_for_event(t) is Effect.CONTACT
    for t in events.events_for_resource("subscription"):
        assert events.effect_for_event(t) is Effect.RECURRING_PAYMENT
    for t in events.events_for_resource("checkout_session"):
        assert events.effect_for_event(t) is Effect.ORDER


def test_tags():
    assert events.tags_for_event("charge.succeeded") == [
        "stripe-integration",
        "stripe-integration-charge.succeeded",
    ]
    assert events.tags_for_event("customer.subscription.paused") == [
        "stripe-integration",
        "stripe-integration-customer.subscription.paused",
        "stripe-integration-Billing_Subscription_Events",
    ]
    assert events.tags_for_event("invoice.upcoming") == [
        "stripe-integration",
        "stripe-integration-invoice.upcoming",
    ]
    for t in events.ALL_EVENT_TYPES:
        has_extra = "stripe-integration-Billing_Subscription_Events" in events.tags_for_event(t)
        assert has_extra == t.startswith("customer.subscription.")


def test_history_sources():
    lists = {r.kind: r.history for r in events.RESOURCES}
    assert lists["customer"].api_path == "/v1/customers"
    assert lists["charge"].api_path == "/v1/charges"
    assert lists["subscription"].list_params() == {"limit": 100, "status": "all"}
    assert lists["invoice"].list_params() == {"limit": 100}
    assert lists["checkout_session"].service == ("checkout", "sessions")
    assert lists["checkout_session"].list_params() == {"limit": 100, "status": "complete"}
    params = lists["subscription"].list_params()
    params["starting_after"] = "sub_x"
    assert "starting_after" not in lists["subscription"].list_params()


def test_history_services_exist_on_stripe_client():
    import stripe

    client = stripe.StripeClient("sk_test_" + "x" * 24)
    for r in events.RESOURCES:
        service = client.v1
        for attr in r.history.service:
            service = getattr(service, attr)
        assert callable(service.list)


def test_historical_event_types_from_fixture_objects():
    obj = lambda name: load_event(name)["data"]["object"]  # noqa: E731
    assert events.historical_event_type("customer", obj("customer.created.json")) == "customer.created"
    assert events.historical_event_type("charge", obj("charge.succeeded.json")) == "charge.succeeded"
    assert events.historical_event_type("charge", obj("charge.refunded.json")) == "charge.refunded"
    assert (
        events.historical_event_type("subscription", obj("customer.subscription.deleted.json"))
        == "customer.subscription.created"
    )
    assert events.historical_event_type("invoice", obj("invoice.payment_succeeded.json")) == "invoice.payment_succeeded"
    assert events.historical_event_type("invoice", obj("invoice.payment_failed.json")) == "invoice.created"
    assert events.historical_event_type("invoice", obj("invoice.created.json")) == "invoice.created"
    assert (
        events.historical_event_type("checkout_session", obj("checkout.session.completed.json"))
        == "checkout.session.completed"
    )


def test_historical_charge_edge_cases():
    partial = {"status": "succeeded", "refunded": False, "amount_refunded": 100}
    assert events.historical_event_type("charge", partial) == "charge.refunded"
    assert events.historical_event_type("charge", {"status": "failed", "refunded": False}) is None
    assert events.historical_event_type("invoice", {"paid": True, "status": "open"}) == "invoice.payment_succeeded"


@pytest.mark.parametrize(
    "stripe_status, crm",
    [
        ("active", "ACTIVE"),
        ("trialing", "ACTIVE"),
        ("past_due", "PAYMENT_FAILED"),
        ("unpaid", "PAYMENT_FAILED"),
        ("canceled", "CANCELLED"),
        ("incomplete", "PENDING"),
        ("incomplete_expired", "EXPIRED"),
        ("paused", "PAUSED"),
    ],
)
def test_subscription_status_map(stripe_status, crm):
    assert events.SUBSCRIPTION_STATUS_MAP[stripe_status] == crm
    assert events.map_subscription_status(stripe_status) == crm


def test_unknown_subscription_status_is_upper_cased_not_raised():
    assert events.map_subscription_status("on_hold") == "ON_HOLD"
    assert events.map_subscription_status(None) == "UNKNOWN"
    assert events.map_subscription_status("") == "UNKNOWN"


def test_table_is_frozen():
    with pytest.raises(AttributeError):
        events.RESOURCES[0].name = "x"
