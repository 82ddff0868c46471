"""A marketer watches Ada's Stripe story arrive on her contact page, in real headless Chromium.

Stripe's deliveries go over HTTP to the live server, a real RQ worker processes them, and the
page shows the tags, the recurring payment with its status history and the $450.00 order.
"""

import pytest
import requests
from playwright.sync_api import expect

from tests.helpers import event_path, kind_for, sign, story_files

pytestmark = pytest.mark.browser


def deliver(live_server, resource, name):
    """Post one event file as Stripe does: exact bytes, signed with the resource's secret."""
    payload = event_path(name).read_bytes()
    resp = requests.post(live_server.url + resource.url, data=payload, timeout=10,
                         headers={"Stripe-Signature": sign(payload, resource.secrets[0]),
                                  "Content-Type": "application/json"})
    assert resp.status_code == 200, (name, resp.text)


def test_ada_story_on_her_contact_page(logged_in_page, live_server, connect_all, run_worker):
    page = logged_in_page
    resources = connect_all()
    story = story_files()
    first_part = story[:5]  # created, subscription (trial), checkout, trial_will_end, paused
    for name in first_part:
        deliver(live_server, resources[kind_for(name)], name)
    run_worker()

    page.goto("/contacts")
    page.get_by_role("link", name="ada@example.com").click()
    expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    payments = page.locator("#recurring-payments")
    expect(payments.locator(".rp-status")).to_have_text("PAUSED")
    expect(payments.locator(".rp-transition .badge")).to_have_text(["ACTIVE", "PAUSED"])
    expect(page.locator("#orders")).to_contain_text("No orders.")

    for name in story[5:]:
        deliver(live_server, resources[kind_for(name)], name)
    run_worker()
    page.reload()

    tags = page.locator("#contact-tags .tag")
    expect(tags).to_have_count(2 + len(story))
    shown = {text.replace("×", "").strip() for text in tags.all_inner_texts()}
    assert {"stripe-integration", "stripe-integration-customer.created",
            "stripe-integration-Billing_Subscription_Events", "stripe-integration-charge.refunded",
            "stripe-integration-invoice.upcoming"} <= shown

    expect(payments.locator(".rp-name")).to_have_text("Notebook Pro monthly")
    expect(payments.locator(".rp-status")).to_have_text("CANCELLED")
    expect(payments.locator(".rp-transition .badge")).to_have_text(
        ["ACTIVE", "PAUSED", "ACTIVE", "PAYMENT_FAILED", "CANCELLED"])
    expect(payments).to_contain_text("$29.00 / month")

    orders = page.locator("#orders tr.order")
    expect(orders).to_have_count(1)
    expect(orders.locator(".order-amount")).to_have_text("$450.00")
    expect(orders).to_contain_text("Paid")
    expect(page.locator("#ecommerce-customer .ec-revenue")).to_have_text("$450.00")
    expect(page.locator("#ecommerce-customer .ec-orders")).to_have_text("1")

    activity = page.locator("#stripe-activity .activity")
    expect(activity).to_have_count(len(story))
    expect(activity.first).to_contain_text("customer.subscription.deleted")
    expect(activity.last).to_contain_text("customer.created")
    expect(activity.last).to_contain_text("Created")
