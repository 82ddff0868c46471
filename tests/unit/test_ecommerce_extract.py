"""Order, recurring payment and refund extraction from the shared fixtures' real fields."""

import json

from tests.helpers import EVENTS_DIR
from webapp.stripe_sync.apply.commerce_data import (
    order_from_checkout_session,
    recurring_payment_from_subscription,
    refund_from_charge,
)


def load_object(name):
    """The data.object of a shared fixture."""
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))["data"]["object"]


def test_paid_async_session_is_an_order():
    order = order_from_checkout_session(load_object("checkout.session.async_payment_succeeded.json"))
    assert order["external_id"] == "cs_test_a16OXKRtRGUEa0NcK8MgraGrFTC8jcF3vkV4g6NKxswLVSYWKqlSSkNvaG"
    assert order["amount_total"] == 45000
    assert order["currency"] == "usd"
    assert order["created"] == 1788277200
    assert order["mode"] == "payment"
    assert order["payment_intent"] == "pi_3UAtp8Lm3xVt9QeKKJJ9u8Kp"
    assert order["customer_id"] == "cus_Visible1"
    assert [p["name"] for p in order["products"]] == ["onboarding_workshop"]
    assert order["description"] == "onboarding_workshop"
    assert order["metadata"] == {"product": "onboarding_workshop"}


def test_unpaid_completed_session_is_not_an_order():
    session = load_object("checkout.session.completed.json")
    assert session["payment_status"] == "no_payment_required"
    assert order_from_checkout_session(session) is None
    assert order_from_checkout_session(dict(session, payment_status="unpaid")) is None


def test_paid_session_without_product_hints_has_no_products():
    session = dict(load_object("checkout.session.completed.json"), payment_status="paid",
                   amount_total=2900, metadata={"plan": "pro"})
    order = order_from_checkout_session(session)
    assert order["products"] == []
    assert order["description"] == "Stripe Checkout (subscription)"
    assert order["invoice"] == "in_1U0I41Lm3xVt9QeK5ZGUDi3Q"
    assert order["subscription"] == "sub_1U0I40Lm3xVt9QeKBuuQpyCp"


def test_expanded_line_items_win_over_metadata():
    session = dict(
        load_object("checkout.session.async_payment_succeeded.json"),
        line_items={"object": "list", "data": [{
            "id": "li_1", "object": "item", "description": "Onboarding workshop", "quantity": 1,
            "amount_total": 45000, "price": {"id": "price_ws", "product": "prod_ws", "unit_amount": 45000},
        }]},
    )
    products = order_from_checkout_session(session)["products"]
    assert products == [{
        "name": "Onboarding workshop", "external_id": "prod_ws", "price_id": "price_ws",
        "quantity": 1, "unit_amount": 45000, "amount_total": 45000,
    }]


def test_subscription_created_is_trialing_active():
    rp = recurring_payment_from_subscription(load_object("customer.subscription.created.json"))
    assert rp["external_id"] == "sub_1U0I40Lm3xVt9QeKBuuQpyCp"
    assert rp["customer_id"] == "cus_Visible1"
    assert (rp["stripe_status"], rp["status"]) == ("trialing", "ACTIVE")
    assert rp["amount"] == 2900 and rp["currency"] == "usd"
    assert (rp["interval"], rp["interval_count"]) == ("month", 1)
    assert rp["name"] == "Notebook Pro monthly"
    assert rp["product_id"] == "prod_VmE2T31IImB3xG"
    assert rp["price_id"] == "price_1Tysd2Lm3xVt9QeK7wPPFPgV"
    assert rp["current_period_end"] == 1786958500
    assert rp["trial_end"] == 1786958500
    assert rp["canceled_at"] is None
    assert rp["created"] == 1785748900


def test_subscription_lifecycle_statuses():
    def status(name):
        rp = recurring_payment_from_subscription(load_object(name))
        return rp["stripe_status"], rp["status"]

    assert status("customer.subscription.trial_will_end.json") == ("trialing", "ACTIVE")
    assert status("customer.subscription.paused.json") == ("paused", "PAUSED")
    assert status("customer.subscription.resumed.json") == ("active", "ACTIVE")
    assert status("customer.subscription.updated.json") == ("past_due", "PAYMENT_FAILED")
    assert status("customer.subscription.deleted.json") == ("canceled", "CANCELLED")


def test_subscription_deleted_carries_cancellation():
    rp = recurring_payment_from_subscription(load_object("customer.subscription.deleted.json"))
    assert rp["canceled_at"] == 1790335804
    assert rp["ended_at"] == 1790335804
    assert rp["cancellation_reason"] == "cancellation_requested"
    assert rp["current_period_end"] == 1792228900


def test_subscription_amount_multiplies_quantity_and_handles_unknown_prices():
    sub = load_object("customer.subscription.created.json")
    item = sub["items"]["data"][0]
    three = dict(sub, items={"data": [dict(item, quantity=3)]})
    assert recurring_payment_from_subscription(three)["amount"] == 8700
    tiered = dict(sub, items={"data": [dict(item, price=dict(item["price"], unit_amount=None))]})
    assert recurring_payment_from_subscription(tiered)["amount"] is None
    empty = recurring_payment_from_subscription(dict(sub, items={"data": []}))
    assert empty["amount"] is None and empty["status"] == "ACTIVE"


def test_expanded_product_name_is_preferred():
    sub = load_object("customer.subscription.created.json")
    item = sub["items"]["data"][0]
    price = dict(item["price"], product={"id": "prod_VmE2T31IImB3xG", "name": "Notebook Pro"})
    rp = recurring_payment_from_subscription(dict(sub, items={"data": [dict(item, price=price)]}))
    assert rp["name"] == "Notebook Pro"
    assert rp["product_id"] == "prod_VmE2T31IImB3xG"


def test_refund_from_charge():
    refund = refund_from_charge(load_object("charge.refunded.json"))
    assert refund["charge_id"] == "ch_3UGcRwLm3xVt9QeKJWNH9PAD"
    assert refund["payment_intent"] == "pi_3UGcRwLm3xVt9QeKZol7eE0k"
    assert refund["amount_refunded"] == 2900
    assert refund["refunded"] is True
    assert refund["partial"] is False
    assert refund["invoice"] is None  # charges carry no invoice field since 2025-03-31.basil


def test_unrefunded_and_partial_charges():
    charge = load_object("charge.succeeded.json")
    assert refund_from_charge(charge)["refunded"] is False
    partial = refund_from_charge(dict(charge, amount_refunded=900, invoice="in_old"))
    assert partial["partial"] is True and partial["invoice"] == "in_old"


def test_stripe_objects_are_accepted():
    import stripe

    event = stripe.Event.construct_from(
        json.loads((EVENTS_DIR / "customer.subscription.paused.json").read_text()), "sk_test_x"
    )
    assert recurring_payment_from_subscription(event.data.object)["status"] == "PAUSED"
