"""Personalization tags: escaping, currency formatting, missing values, unknown tags, the catalogue."""
import json

import pytest

from tests.helpers import EVENTS_DIR
from webapp.automations import personalization as p


def event(name):
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


VALUES = {"FIRSTNAME": "Ada", "LASTNAME": "Lovelace", "EMAIL": "ada@example.com", "PHONE": None,
          "STRIPE_INVOICE_URL": "https://invoice.stripe.com/i/acct_1/test_x?s=ap&t=1"}


# --- escaping --------------------------------------------------------------------------------------

def test_values_are_html_escaped_in_an_html_body():
    values = {"FIRSTNAME": "José <script>alert(1)</script> O'Brien & Co"}
    html = p.render_body("<p>Hello %FIRSTNAME%!</p>", values)
    assert html == "<p>Hello José &lt;script&gt;alert(1)&lt;/script&gt; O&#39;Brien &amp; Co!</p>"


def test_a_plain_text_body_is_escaped_whole_keeps_line_breaks_and_links_urls():
    body = "Hi %FIRSTNAME%,\n\nUpdate your card: %STRIPE_INVOICE_URL%.\n5 < 6"
    html = p.render_body(body, {**VALUES, "FIRSTNAME": "<b>Ada</b>"})
    assert "&lt;b&gt;Ada&lt;/b&gt;" in html and "<b>" not in html
    url = "https://invoice.stripe.com/i/acct_1/test_x?s=ap&amp;t=1"
    assert f'<a href="{url}">{url}</a>.' in html  # the full stop stays outside the link
    assert html.count("<br>") == 3 and "5 &lt; 6" in html


def test_url_values_in_an_href_are_escaped_but_still_work():
    html = p.render_body('<a href="%STRIPE_INVOICE_URL%">Pay now</a>', VALUES)
    assert html == '<a href="https://invoice.stripe.com/i/acct_1/test_x?s=ap&amp;t=1">Pay now</a>'


def test_a_value_cannot_break_out_of_an_attribute():
    html = p.render_body('<a href="%STRIPE_INVOICE_URL%">x</a>', {"STRIPE_INVOICE_URL": '" onclick="evil()'})
    assert html == '<a href="&#34; onclick=&#34;evil()">x</a>'


def test_the_subject_is_plain_text_on_one_line():
    subject = p.render_subject("Hi %FIRSTNAME%\r\nBcc: x@evil.test", {"FIRSTNAME": "Ada & <Co>"})
    assert subject == "Hi Ada & <Co> Bcc: x@evil.test"


def test_the_text_part_shows_links_with_their_address():
    rendered = p.render_email("s", '<p>Hi %FIRSTNAME%,</p><p><a href="%STRIPE_INVOICE_URL%">Update your card</a></p>'
                              "<ul><li>one</li><li>two</li></ul>", VALUES)
    assert rendered.text == ("Hi Ada,\n\nUpdate your card (https://invoice.stripe.com/i/acct_1/test_x?s=ap&t=1)"
                             "\n\n- one\n- two")


# --- missing and unknown -------------------------------------------------------------------------

def test_a_known_tag_without_a_value_renders_empty():
    rendered = p.render_email("Call %PHONE%", "Phone: %PHONE%. Amount: %STRIPE_AMOUNT%.",
                              {**VALUES, "STRIPE_AMOUNT": None})
    assert rendered.subject == "Call"
    assert rendered.html == "Phone: . Amount: ."
    assert rendered.unknown == []


def test_unknown_tags_stay_visible_and_are_flagged_only_in_the_preview():
    body = "<p>Hi %FIRSTNAME% %FRISTNAME%, 100% sure %NOPE%</p>"
    sent = p.render_email("About %NOPE%", body, VALUES)
    assert sent.html == "<p>Hi Ada %FRISTNAME%, 100% sure %NOPE%</p>"
    assert sent.subject == "About %NOPE%"
    assert sent.unknown == ["%NOPE%", "%FRISTNAME%"]
    preview = p.render_email("About %NOPE%", body, VALUES, mark_unknown=True)
    assert '<mark class="unknown-tag" title="Unknown personalization tag">%FRISTNAME%</mark>' in preview.html
    assert preview.text == sent.text == "Hi Ada %FRISTNAME%, 100% sure %NOPE%"


def test_unknown_tags_are_marked_in_a_plain_text_preview_too():
    html = p.render_body("Hi %NOPE%\nbye", {}, mark_unknown=True)
    assert html == 'Hi <mark class="unknown-tag" title="Unknown personalization tag">%NOPE%</mark><br>\nbye'


def test_tags_ignore_case():
    assert p.render_subject("%firstname% %Email%", VALUES) == "Ada ada@example.com"


# --- amounts and dates ---------------------------------------------------------------------------

@pytest.mark.parametrize("amount,currency,expected", [
    (2900, "usd", "$29.00"),
    (5000, "jpy", "¥5,000"),          # zero-decimal: no cents
    (12345, "krw", "₩12,345"),
    (1500, "kwd", "1.500 KWD"),       # three decimals
    (45000, "eur", "€450.00"),
    (0, "usd", "$0.00"),
])
def test_amounts_are_formatted_for_their_currency(amount, currency, expected):
    charge = event("charge.succeeded")
    charge["data"]["object"].update(amount=amount, currency=currency)
    assert p.stripe_values(charge)["STRIPE_AMOUNT"] == expected


def test_a_jpy_checkout_has_no_cents():
    session = event("checkout.session.async_payment_succeeded")
    session["data"]["object"].update(amount_total=45000, currency="jpy")
    values = p.stripe_values(session)
    assert (values["STRIPE_AMOUNT"], values["STRIPE_CURRENCY"]) == ("¥45,000", "JPY")


def test_ecommerce_values():
    values = p.ecommerce_values(45000, 1, "usd", p.datetime(2026, 9, 4, 16, 0, 12), 45000)
    assert values == {"ECOM_TOTAL_REVENUE": "$450.00", "ECOM_TOTAL_ORDERS": "1",
                      "ECOM_LAST_ORDER_DATE": "September 4, 2026", "ECOM_LAST_ORDER_AMOUNT": "$450.00"}
    assert set(p.ecommerce_values().values()) == {None}
    assert p.ecommerce_values(1000, 2, "jpy")["ECOM_TOTAL_REVENUE"] == "¥1,000"


# --- Stripe tags from the shared events ----------------------------------------------------------

def test_invoice_payment_failed_gives_the_hosted_invoice_url_and_amount_due():
    values = p.stripe_values(event("invoice.payment_failed"))
    assert values["STRIPE_EVENT_TYPE"] == "invoice.payment_failed"
    assert values["STRIPE_INVOICE_URL"].startswith("https://invoice.stripe.com/i/acct_1Ovd2aLm3xVt9QeK/")
    assert values["STRIPE_AMOUNT"] == "$29.00"
    assert values["STRIPE_PRODUCT_NAME"] == "1 × Notebook Pro (at $29.00 / month)"  # the line, without CRM rows
    assert values["STRIPE_RECEIPT_URL"] is None


def test_what_the_crm_knows_about_an_invoice_subscription_wins():
    known = p.Known(product_name="Notebook Pro monthly", subscription_status="past_due", trial_end=1786958500)
    values = p.stripe_values(event("invoice.payment_failed"), known)
    assert (values["STRIPE_PRODUCT_NAME"], values["STRIPE_SUBSCRIPTION_STATUS"], values["STRIPE_TRIAL_END"]) == (
        "Notebook Pro monthly", "past due", "August 17, 2026")


def test_subscription_tags():
    values = p.stripe_values(event("customer.subscription.created"))
    assert values["STRIPE_SUBSCRIPTION_STATUS"] == "trialing"
    assert values["STRIPE_TRIAL_END"] == "August 17, 2026"
    assert values["STRIPE_PRODUCT_NAME"] == "Notebook Pro monthly"
    assert values["STRIPE_AMOUNT"] == "$29.00"
    assert p.stripe_values(event("customer.subscription.deleted"))["STRIPE_SUBSCRIPTION_STATUS"] == "canceled"


def test_charge_tags():
    values = p.stripe_values(event("charge.succeeded"))
    assert values["STRIPE_RECEIPT_URL"].startswith("https://pay.stripe.com/receipts/")
    assert values["STRIPE_INVOICE_URL"] is None
    refunded = p.stripe_values(event("charge.refunded"))
    assert refunded["STRIPE_AMOUNT"] == "$29.00"


def test_no_event_leaves_every_stripe_tag_empty():
    values = p.stripe_values(None)
    assert set(values) == {t.name for t in p.STRIPE_TAGS} and set(values.values()) == {None}
    assert p.render_subject("[%STRIPE_AMOUNT%]", values) == "[]"


# --- the catalogue -------------------------------------------------------------------------------

def test_custom_field_tags_come_from_labels_and_never_clash():
    tags = p.custom_field_tags([(1, "Plan"), (2, "Plan tier"), (3, "plan-tier"), (4, "Email"), (5, "2nd phone"),
                                (6, "¿?")])
    assert {k: t.token for k, t in tags.items()} == {
        1: "%PLAN%", 2: "%PLAN_TIER%", 3: "%PLAN_TIER_2%", 4: "%EMAIL_2%", 5: "%FIELD_2ND_PHONE%", 6: "%FIELD%"}


def test_sections_list_every_tag_the_issue_names():
    sections = dict(p.tag_sections(p.custom_field_tags([(1, "Plan")])))
    assert list(sections) == ["Contact", "Stripe", "E-commerce"]
    tokens = {t.token for tags in sections.values() for t in tags}
    for token in ("%FIRSTNAME%", "%LASTNAME%", "%EMAIL%", "%PHONE%", "%PLAN%", "%STRIPE_EVENT_TYPE%",
                  "%STRIPE_AMOUNT%", "%STRIPE_PRODUCT_NAME%", "%STRIPE_SUBSCRIPTION_STATUS%", "%STRIPE_TRIAL_END%",
                  "%STRIPE_INVOICE_URL%", "%STRIPE_RECEIPT_URL%", "%ECOM_TOTAL_REVENUE%", "%ECOM_TOTAL_ORDERS%",
                  "%ECOM_LAST_ORDER_DATE%", "%ECOM_LAST_ORDER_AMOUNT%"):
        assert token in tokens


def test_is_html():
    assert p.is_html("<p>x</p>") and p.is_html("a<br>b") and p.is_html("<a href='x'>y</a>")
    assert not p.is_html("5 < 6 and 7 > 2") and not p.is_html("Hi %FIRSTNAME%")
