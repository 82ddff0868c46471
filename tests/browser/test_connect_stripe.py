"""The Connect Account flow as a marketer clicks it, in Chromium, against the Stripe double."""
import re

import pytest
import stripe
from playwright.sync_api import expect

from tests.helpers import add_mapping_row, open_connect_modal

pytestmark = pytest.mark.browser


def test_click_path_to_a_finished_connection(logged_in_page, stripe_double, stripe_key):
    page = logged_in_page
    dialog = open_connect_modal(page)

    # A wrong key first: the message appears by the field and the typed key stays for correction.
    dialog.get_by_label("Secret Key").fill("sk_test_wrongwrongwrong123")
    dialog.get_by_role("button", name="Connect").click()
    expect(dialog.get_by_text("Stripe rejected this key")).to_be_visible()
    expect(dialog.get_by_label("Secret Key")).to_have_value("sk_test_wrongwrongwrong123")

    dialog.get_by_label("Secret Key").fill(stripe_key)
    dialog.get_by_role("button", name="Connect").click()
    expect(dialog.get_by_text("owner@engineroom.test")).to_be_visible()
    expect(dialog.get_by_text("Test key")).to_be_visible()
    expect(dialog).not_to_contain_text(stripe_key)

    dialog.get_by_label("Choose Resource").select_option(label="Customer")
    dialog.get_by_label("Sync type").select_option(label="Sync new records only")
    dialog.get_by_role("button", name="Continue").click()

    # Mapping: Email row, Stripe ID row, then add two rows and remove one.
    expect(dialog.locator(".mapping-row")).to_have_count(2)
    add_mapping_row(dialog)
    add_mapping_row(dialog)
    dialog.get_by_role("button", name="Remove field mapping").last.click()
    expect(dialog.locator(".mapping-row")).to_have_count(3)
    row = dialog.locator(".mapping-row").nth(2)
    row.get_by_label("Stripe field").select_option(label="Customer Name")
    expect(dialog.get_by_text("split into First Name and Last Name")).to_be_visible()
    name_target = dialog.locator(".mapping-row").nth(2).get_by_label("CRM field")
    expect(name_target.locator("option:checked")).to_have_text("First Name + Last Name")  # no guess asked for
    dialog.get_by_role("button", name="Finish").click()

    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")
    expect(page.locator("#resource-1")).to_contain_text("Customer")
    [endpoint] = stripe_double.endpoints("acct_1EngineRoom")
    assert re.fullmatch(r"https://crm\.example\.test/webhooks/stripe/[\w-]{40,}", endpoint["url"])
    assert sorted(endpoint["enabled_events"]) == ["customer.created", "customer.updated"]
    assert stripe_key not in page.content()

    page.get_by_role("link", name="Connected Apps").click()
    expect(page.locator(".app-card")).to_contain_text("owner@engineroom.test")


def test_endpoint_limit_error_and_recovery(logged_in_page, stripe_double, stripe_key):
    client = stripe.StripeClient(stripe_key, base_addresses={"api": stripe_double.url})
    for i in range(15):
        client.v1.webhook_endpoints.create(params={"url": f"https://other{i}.example/hook",
                                                   "enabled_events": ["charge.succeeded"]})
    client.v1.webhook_endpoints.create(params={"url": "https://crm.example.test/webhooks/stripe/leftover",
                                               "enabled_events": ["customer.created"]})
    page = logged_in_page
    dialog = open_connect_modal(page)
    dialog.get_by_label("Secret Key").fill(stripe_key)
    dialog.get_by_role("button", name="Connect").click()
    dialog.get_by_label("Choose Resource").select_option(label="Charge")
    dialog.get_by_role("button", name="Continue").click()
    dialog.locator(".mapping-row").nth(1).get_by_label("CRM field for Stripe ID").select_option(label="Last Name")
    dialog.get_by_role("button", name="Finish").click()

    expect(dialog.get_by_text("There was an error saving your connection")).to_be_visible()
    expect(dialog.locator("#endpoint-limit tbody tr")).to_have_count(16)
    expect(dialog.locator(".mapping-row").nth(1).get_by_label("CRM field for Stripe ID")).to_have_value(
        re.compile(r"\d+"))
    dialog.get_by_role("button", name="Remove endpoint https://crm.example.test/webhooks/stripe/leftover").click()
    expect(dialog.locator("#endpoint-limit tbody tr")).to_have_count(15)
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    assert len(stripe_double.endpoints("acct_1EngineRoom")) == 16


def test_mapping_changes_log_no_errors_and_finish_is_disabled_while_it_saves(logged_in_page, stripe_double,
                                                                             stripe_key):
    page = logged_in_page
    console = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    dialog = open_connect_modal(page)
    dialog.get_by_label("Secret Key").fill(stripe_key)
    dialog.get_by_role("button", name="Connect").click()
    dialog.get_by_label("Choose Resource").select_option(label="Customer")
    dialog.get_by_role("button", name="Continue").click()
    row = add_mapping_row(dialog)
    row.get_by_label("Stripe field").select_option(label="Customer Name")
    expect(dialog.get_by_text("split into First Name and Last Name")).to_be_visible()
    expect(row.get_by_label("CRM field").locator("option:checked")).to_have_text("First Name + Last Name")
    assert console == []  # no hx-disabled-elt selector errors from the rows' own requests

    stripe_double.set_latency(1.5)  # Stripe creating the endpoint takes a while
    try:
        finish = dialog.get_by_role("button", name="Finish")
        finish.click()
        expect(finish).to_be_disabled(timeout=1000)  # a second click cannot send a second request
        expect(page.get_by_text("Stripe is connected")).to_be_visible(timeout=15_000)
    finally:
        stripe_double.set_latency(0)
    assert len(stripe_double.endpoints("acct_1EngineRoom")) == 1
    assert console == []
