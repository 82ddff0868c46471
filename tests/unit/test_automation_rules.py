"""Trigger matching, action settings and SMTP_URL parsing: the rules, without a worker."""
from datetime import timedelta

import pytest

from webapp.automations import matching, steps
from webapp.automations.matching import Fired
from webapp.automations.outbox import SmtpUrlError, parse_smtp_url
from webapp.crm.service import ValidationError, create_field


def fired(trigger="makes_purchase", event_type="checkout.session.async_payment_succeeded", **kw):
    return Fired(trigger=trigger, event_type=event_type, **kw)


# --- matching ------------------------------------------------------------------------------------

def test_stripe_event_received_matches_the_chosen_types_only():
    config = {"event_types": ["invoice.payment_failed", "charge.refunded"]}
    assert matching.matches("stripe_event_received", config,
                            fired("stripe_event_received", "invoice.payment_failed"))
    assert not matching.matches("stripe_event_received", config,
                                fired("stripe_event_received", "invoice.payment_succeeded"))
    assert not matching.matches("stripe_event_received", {}, fired("stripe_event_received", "invoice.payment_failed"))
    # Another trigger kind of the same event never matches.
    assert not matching.matches("stripe_event_received", config, fired("makes_purchase", "invoice.payment_failed"))


@pytest.mark.parametrize("config,amount,currency,expected", [
    ({"filter": "any"}, 100, "usd", True),
    ({"filter": "min_amount", "min_amount": "450"}, 45000, "usd", True),
    ({"filter": "min_amount", "min_amount": "450.01"}, 45000, "usd", False),
    ({"filter": "min_amount", "min_amount": "5000"}, 5000, "jpy", True),     # zero-decimal: 5000 is ¥5,000
    ({"filter": "min_amount", "min_amount": "5000.5"}, 5000, "jpy", False),
    ({"filter": "min_amount", "min_amount": "1.5"}, 1500, "kwd", True),      # three decimals
    ({"filter": "min_amount", "min_amount": "10"}, None, "usd", False),
    ({"filter": "min_amount", "min_amount": "junk"}, 100000, "usd", False),
])
def test_purchase_minimum_amount_in_major_units(config, amount, currency, expected):
    assert matching.matches("makes_purchase", config, fired(amount=amount, currency=currency)) is expected


def test_purchase_product_name_contains_ignores_case():
    facts = fired(products=["Onboarding Workshop", "Notebook Pro"])
    assert matching.matches("makes_purchase", {"filter": "product", "product_name": "workshop"}, facts)
    assert not matching.matches("makes_purchase", {"filter": "product", "product_name": "gift card"}, facts)
    assert not matching.matches("makes_purchase", {"filter": "product", "product_name": ""}, facts)
    assert not matching.matches("makes_purchase", {"filter": "product", "product_name": "pro"}, fired(products=[]))


def test_recurring_triggers_with_and_without_a_status():
    cancelled = fired("recurring_payment_updated", "customer.subscription.deleted", details={"status": "CANCELLED"})
    assert matching.matches("recurring_payment_updated", {}, cancelled)
    assert matching.matches("recurring_payment_updated", {"status": "CANCELLED"}, cancelled)
    assert not matching.matches("recurring_payment_updated", {"status": "PAYMENT_FAILED"}, cancelled)
    assert not matching.matches("recurring_payment_created", {}, cancelled)
    assert not matching.matches(None, {}, cancelled)


def test_trigger_descriptions():
    assert matching.describe(None, None) == "No trigger yet"
    assert matching.describe("stripe_event_received", {"event_types": ["invoice.payment_failed"]}) == \
        "Stripe event received: invoice.payment_failed"
    assert matching.describe("makes_purchase", {"filter": "product", "product_name": "kit"}) == \
        "Makes a purchase: product name contains “kit”"
    assert matching.describe("recurring_payment_updated", {"status": "CANCELLED"}) == \
        "Recurring Payment Updated: status CANCELLED"
    assert matching.describe("recurring_payment_created", {}) == "Recurring Payment Created: any status"
    assert matching.describe_firing(fired(amount=45000, currency="usd", products=["Workshop"])) == \
        "Makes a purchase by checkout.session.async_payment_succeeded ($450.00, Workshop)"


# --- actions -------------------------------------------------------------------------------------

def test_action_settings_are_validated():
    assert steps.clean_step("add_tag", {"tag": "  vip   customer "}) == {"tag": "vip customer"}
    assert steps.clean_step("end", {}) == {}
    assert steps.clean_step("wait", {"amount": "3", "unit": "days"}) == {"amount": 3, "unit": "days"}
    assert steps.clean_step("send_email", {"subject": " Hi ", "body": "Body\n"}) == {"subject": "Hi", "body": "Body"}
    for kind, raw, key in [
        ("add_tag", {"tag": ""}, "tag"),
        ("wait", {"amount": "0", "unit": "days"}, "amount"),
        ("wait", {"amount": "1.5", "unit": "days"}, "amount"),
        ("wait", {"amount": "366", "unit": "days"}, "amount"),
        ("wait", {"amount": "1", "unit": "weeks"}, "unit"),
        ("send_email", {"subject": "x" * 301, "body": "b"}, "subject"),
        ("nope", {}, "kind"),
    ]:
        with pytest.raises(ValidationError) as exc:
            steps.clean_step(kind, raw)
        assert key in exc.value.errors, (kind, raw)


def test_update_field_checks_values_without_tags_now_and_with_tags_later(db):
    from webapp.crm.service import all_fields

    seats = create_field("Seats", "number")
    email = next(f for f in all_fields() if f.key == "email")
    assert steps.clean_step("update_field", {"field_id": str(seats.id), "value": "12"}) == \
        {"field_id": seats.id, "value": "12"}
    assert steps.clean_step("update_field", {"field_id": str(seats.id), "value": "%ECOM_TOTAL_ORDERS%"}) == \
        {"field_id": seats.id, "value": "%ECOM_TOTAL_ORDERS%"}
    with pytest.raises(ValidationError) as exc:
        steps.clean_step("update_field", {"field_id": str(seats.id), "value": "many"})
    assert exc.value.errors == {"value": "Seats must be a number."}
    with pytest.raises(ValidationError) as exc:
        steps.clean_step("update_field", {"field_id": str(email.id), "value": "x@example.com"})
    assert "field_id" in exc.value.errors
    assert "Email" not in [f.label for f in steps.updatable_fields()]


def test_waits_and_descriptions():
    assert steps.wait_delay({"amount": 3, "unit": "days"}) == timedelta(days=3)
    assert steps.wait_delay({"amount": 90, "unit": "minutes"}) == timedelta(minutes=90)
    assert steps.wait_delay({"amount": 2, "unit": "seconds"}) == timedelta(seconds=2)
    assert steps.describe("wait", {"amount": 1, "unit": "hours"}) == "Wait 1 hour"
    assert steps.describe("wait", {"amount": 2, "unit": "days"}) == "Wait 2 days"
    assert steps.describe("update_field", {"field_id": 9, "value": ""}, {9: "Plan"}) == "Clear Plan"
    assert steps.describe("update_field", {"field_id": 8, "value": "x"}, {}) == "Set a deleted field to “x”"


# --- SMTP_URL ------------------------------------------------------------------------------------

def test_smtp_urls():
    plain = parse_smtp_url("smtp://127.0.0.1:2525")
    assert (plain.host, plain.port, plain.ssl, plain.starttls, plain.username) == ("127.0.0.1", 2525, False, False, None)
    tls = parse_smtp_url("smtp://user:p%40ss%3Aword@mail.example.com?starttls=1")
    assert (tls.port, tls.starttls, tls.username, tls.password) == (587, True, "user", "p@ss:word")
    ssl = parse_smtp_url("smtps://u:p@mail.example.com")
    assert (ssl.port, ssl.ssl, ssl.starttls) == (465, True, False)
    assert parse_smtp_url("smtp://mail.example.com").port == 25
    assert "p@ss" not in repr(tls)
    for bad in ("http://mail.example.com", "smtp://", "smtp://host:99999"):
        with pytest.raises(SmtpUrlError):
            parse_smtp_url(bad)
