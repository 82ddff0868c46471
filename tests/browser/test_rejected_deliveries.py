"""A delivery signed with the wrong secret shows in the Stripe page's live log, in Chromium, as a
"Rejected" row saying why, without a reload."""
import pytest
from playwright.sync_api import expect

from tests.browser.test_manage_stripe import connect_in_browser
from tests.helpers import event_bytes_with, sign
from webapp.stripe_sync.models import StripeResource

pytestmark = pytest.mark.browser

MARKER = "walrus-topaz-9931"  # in the body: it must not reach the page


def test_a_wrongly_signed_delivery_appears_live_as_a_rejected_row(logged_in_page, app, db, stripe_key):
    page = logged_in_page
    connect_in_browser(page, stripe_key)
    res = db.session.query(StripeResource).one()
    page.goto("/apps/stripe")
    expect(page.locator("#log-rows tr")).to_have_count(0)
    page.evaluate("window.__notReloaded = true")

    body = event_bytes_with("customer.created.json", id=f"evt_{MARKER}")
    resp = app.test_client().post(f"/webhooks/stripe/{res.token}", data=body,
                                  headers={"Stripe-Signature": sign(body, "whsec_rolled_in_stripe"),
                                           "Content-Type": "application/json"})
    assert resp.status_code == 400

    row = page.locator("#log-rows tr.log-rejected")
    expect(row).to_have_count(1, timeout=6000)  # the 2 s poll brings it
    expect(row.locator(".badge")).to_have_text("Rejected")
    expect(row.locator(".reason")).to_have_text(
        "Bad signature: the signing secret may have been rolled in Stripe, or a proxy changed the body")
    expect(row).to_contain_text("rejected delivery")
    expect(row).to_contain_text(res.name)
    # The resource's own row counts it, with the same poll.
    expect(page.locator(f"#resource-{res.id} .rejected-count")).to_have_text("1 rejected")
    assert page.evaluate("window.__notReloaded") is True
    assert MARKER not in page.content()
