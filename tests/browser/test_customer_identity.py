"""One contact per Stripe customer, and history that can be re-synced, as a marketer sees them in Chromium."""
import json

import pytest
import requests
from playwright.sync_api import expect

from tests.helpers import ACCOUNT_ID, add_mapping_row, event_path, sign
from tests.browser.test_mapping_modal import create_field
from webapp.stripe_sync.models import StripeResource

pytestmark = pytest.mark.browser


def deliver(live_server, resource, payload: bytes):
    """Post exactly these bytes as Stripe does, signed with the resource's secret."""
    resp = requests.post(live_server.url + resource.url, data=payload, timeout=10,
                         headers={"Stripe-Signature": sign(payload, resource.secrets[0]),
                                  "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text


def test_an_email_changed_in_stripe_keeps_one_contact_with_the_old_email_in_its_history(
        logged_in_page, live_server, connect_resource, run_worker):
    page = logged_in_page
    resource = connect_resource("customer")
    deliver(live_server, resource, event_path("customer.created").read_bytes())
    run_worker()
    moved = json.loads(event_path("customer.updated").read_bytes())
    moved["data"]["object"]["email"] = "ada.king@example.org"
    deliver(live_server, resource, json.dumps(moved).encode())
    run_worker()

    page.goto("/contacts")
    rows = page.locator("#contact-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ada.king@example.org")
    page.get_by_role("link", name="ada.king@example.org").click()
    history = page.locator("#email-history")
    expect(history.locator(".email-change")).to_have_count(1)
    expect(history.locator(".old-email")).to_have_text("ada@example.com")
    expect(history).to_contain_text("changed in Stripe")
    expect(page.locator(".stripe-customers")).to_have_text("cus_Visible1")


def test_resync_fills_a_newly_mapped_field_on_existing_contacts(logged_in_page, live_server, connect_resource,
                                                               stripe_double, run_worker, db):
    page = logged_in_page
    stripe_double.add_customer(ACCOUNT_ID, id="cus_boston", email="bo@example.com", name="Bo Ston",
                               address={"city": "Boston", "country": "US", "line1": None, "line2": None,
                                        "postal_code": None, "state": None}, created=1_700_000_000)
    resource = connect_resource("customer")
    stored = db.session.get(StripeResource, resource.id)
    stored.sync_type = "historical"
    db.session.commit()
    page.goto("/apps/stripe")
    page.get_by_role("button", name="Re-sync existing records").click()
    progress = page.locator(f"#backfill-row-{resource.id} .backfill")
    expect(progress.locator(".backfill-state")).to_have_text("queued")
    run_worker()
    expect(progress.locator(".backfill-state")).to_have_text("finished", timeout=15_000)

    page.goto("/contacts")
    page.get_by_role("link", name="bo@example.com").click()
    expect(page.locator(".details")).not_to_contain_text("Boston")

    # City is mapped after the first import, through "Update field mapping", into a field made there.
    page.goto("/apps/stripe")
    page.get_by_role("button", name="Customer", exact=True).click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("Field mapping: Customer")
    row = add_mapping_row(dialog)
    row.get_by_label("Stripe field").select_option(label="City")
    create_field(row, "City", "Text")
    expect(dialog.locator(".mapping-row").last.get_by_label("CRM field").locator("option:checked")).to_have_text("City")
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Field mapping for Customer updated")).to_be_visible()
    db.session.expire_all()
    assert "address.city" in [m.stripe_field for m in db.session.get(StripeResource, resource.id).mappings]

    page.get_by_role("button", name="Re-sync existing records").click()
    expect(progress.locator(".backfill-state")).to_have_text("queued")
    run_worker()
    expect(progress.locator(".backfill-state")).to_have_text("finished", timeout=15_000)
    expect(progress.locator(".backfill-imported")).not_to_have_text("0")
    page.goto("/contacts")
    page.get_by_role("link", name="bo@example.com").click()
    expect(page.locator(".details")).to_contain_text("Boston")
