"""The Stripe manage page in Chromium: live log, filters, retry, mapping update, removal, disconnects."""
import re

import pytest
from playwright.sync_api import expect

from tests.helpers import EVENTS_DIR, add_mapping_row, connect, event_bytes_with
from webapp.crm import service
from webapp.stripe_sync.models import StripeResource

pytestmark = pytest.mark.browser


def connect_in_browser(page, key, kind="Customer", map_name=True):
    """Connect Account → resource → mapping → Finish, as a marketer clicks it."""
    page.goto("/apps/stripe")
    button = page.get_by_role("button", name="Connect Account")
    if not button.count():
        button = page.get_by_role("button", name="Connect another account")
    button.click()
    dialog = page.locator("dialog#modal")
    dialog.get_by_label("Secret Key").fill(key)
    dialog.get_by_role("button", name="Connect").click()
    dialog.get_by_label("Choose Resource").select_option(label=kind)
    dialog.get_by_label("Sync type").select_option(label="Sync new records only")
    dialog.get_by_role("button", name="Continue").click()
    if map_name:
        add_mapping_row(dialog).get_by_label("Stripe field").select_option(label="Customer Name")
        # Left as shown: a Customer Name row with no CRM field chosen maps "First Name + Last Name"
        # (test_connect_stripe.py and test_mapping_modal.py check the select itself).
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected").last).to_be_visible()
    page.wait_for_load_state("load")  # htmx wires the page up after it is visible


def post(app, stripe_double, resource_id, payload):
    """Deliver signed bytes to the resource's URL, as Stripe would."""
    from webapp.extensions import db
    res = db.session.get(StripeResource, resource_id)
    secret = next(e["secret"] for e in stripe_double.endpoints("acct_1EngineRoom") if e["id"] == res.webhook_endpoint_id)
    client = app.test_client()
    resp = client.post(f"/webhooks/stripe/{res.token}", data=payload,
                       headers={"Stripe-Signature": stripe_double.sign(payload, secret),
                                "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_counters_and_last_event_move_with_the_log(logged_in_page, app, db, stripe_double, stripe_key, run_worker):
    page = logged_in_page
    connect_in_browser(page, stripe_key)
    res_id = db.session.query(StripeResource).one().id
    page.goto("/apps/stripe")
    row = page.locator(f"#resource-{res_id}")
    expect(row.locator(".last-event")).to_have_text("Waiting for the first event from Stripe…")
    expect(row.locator(".synced-count")).to_have_text("0")

    post(app, stripe_double, res_id, event_bytes_with("customer.created.json"))
    post(app, stripe_double, res_id, event_bytes_with("customer.updated.json"))
    post(app, stripe_double, res_id, (EVENTS_DIR / "edge" / "customer.created.json").read_bytes())  # no email
    run_worker()
    # Without a reload: the same poll that brings the log rows brings the resource's row.
    expect(row.locator(".synced-count")).to_have_text("2", timeout=6000)
    expect(row.locator(".skipped-count")).to_have_text("1")
    expect(row.locator(".failed-count")).to_have_text("0")
    expect(row.locator(".last-event .receiving")).to_have_text("Receiving")
    expect(row.locator(".last-event")).to_contain_text("since ")
    expect(page.locator("#log-rows tr")).to_have_count(3)
    expect(page.locator(".resource-row")).to_have_count(1)  # replaced in place, not added


def test_live_log_filters_and_retry(logged_in_page, auth_client, app, db, stripe_double, stripe_key, run_worker):
    page = logged_in_page
    connect_in_browser(page, stripe_key)
    res_id = db.session.query(StripeResource).one().id
    page.goto("/apps/stripe")
    expect(page.locator("#log-rows tr")).to_have_count(0)
    expect(page.get_by_text("No sync activity yet")).to_be_visible()

    post(app, stripe_double, res_id, event_bytes_with("customer.created.json"))
    run_worker()
    # The poll brings the row in within a few seconds, without a reload.
    row = page.locator("#log-rows tr").first
    expect(row).to_contain_text("customer.created", timeout=6000)
    expect(row).to_contain_text("ada@example.com")

    # A filter survives the refresh and the page reload.
    page.get_by_label("Outcome").select_option("skipped")
    expect(page).to_have_url(re.compile(r"outcome=skipped"))
    expect(page.locator("#log-rows tr")).to_have_count(0)
    post(app, stripe_double, res_id, (EVENTS_DIR / "edge" / "customer.created.json").read_bytes())
    post(app, stripe_double, res_id, event_bytes_with("customer.updated.json"))
    run_worker()
    expect(page.locator("#log-rows tr")).to_have_count(1, timeout=6000)
    expect(page.locator("#log-rows tr").first).to_contain_text("No email on Stripe customer cus_Ip1BM6AwKptPXL (Charles Babbage)")
    page.reload()
    expect(page.get_by_label("Outcome")).to_have_value("skipped")
    expect(page.locator("#log-rows tr")).to_have_count(1)

    # A failed event offers Retry; the retried attempt appears in the log.
    page.get_by_label("Outcome").select_option("")
    subscriptions = connect(auth_client, db, stripe_key, kind="subscription", extra=())
    app.config["EVENT_RETRY_INTERVALS"] = []  # fail for good on the first attempt
    stripe_double.fail_next(20, status=500, path_prefix="/v1/customers")  # its customer cannot be retrieved
    post(app, stripe_double, subscriptions.id, event_bytes_with("customer.subscription.created.json"))
    run_worker()
    failed_row = page.locator("#log-rows tr.log-failed").first
    expect(failed_row).to_contain_text("Failed", timeout=6000)
    expect(failed_row).to_contain_text("customer.subscription.created")
    stripe_double._fail_rules.clear()
    failed_row.get_by_role("button", name="Retry").click()
    expect(page.get_by_text("Retry queued")).to_be_visible()
    run_worker()
    newest = page.locator("#log-rows tr").first
    expect(newest).to_contain_text("customer.subscription.created", timeout=6000)
    expect(newest).to_contain_text(re.compile("Created|Updated"))
    expect(newest).to_contain_text("ada@example.com")

    # Details open in the modal with the payload.
    page.locator("#log-rows tr").first.get_by_role("button", name=re.compile("Details")).click()
    expect(page.locator("dialog#modal")).to_contain_text("Stripe event payload")


def test_mapping_update_removal_disconnect_and_second_account(logged_in_page, app, db, stripe_double, stripe_key,
                                                              run_worker):
    page = logged_in_page
    notes = service.create_field("Notes", "text")
    connect_in_browser(page, stripe_key)
    res_id = db.session.query(StripeResource).one().id
    post(app, stripe_double, res_id, event_bytes_with("customer.created.json"))
    run_worker()

    # Update the mapping: drop the name row, map the description into Notes.
    page.goto("/apps/stripe")
    page.get_by_role("button", name="Customer", exact=True).click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("Field mapping: Customer")
    expect(dialog.locator(".mapping-row")).to_have_count(3)
    dialog.get_by_role("button", name="Remove field mapping").first.click()
    expect(dialog.locator(".mapping-row")).to_have_count(2)
    add_mapping_row(dialog).get_by_label("Stripe field").select_option(label="Customer Description")
    dialog.locator(".mapping-row").last.get_by_label("CRM field").select_option(label="Notes")
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Field mapping for Customer updated")).to_be_visible()
    page.wait_for_load_state("load")
    post(app, stripe_double, res_id, event_bytes_with("customer.updated.json", name="Ada King", description="Countess"))
    run_worker()
    ada = service.find_contact_by_email("ada@example.com")
    assert ada.first_name == "Ada" and service.custom_values(ada) == {notes.id: "Countess"}

    # A second Stripe account through "Connect another account".
    acct2 = stripe_double.add_account(email="shop@second.test", business_name="Second Shop")
    key2 = stripe_double.add_secret_key(acct2["id"])
    connect_in_browser(page, key2, kind="Charge", map_name=False)
    expect(page.locator(".account-card")).to_have_count(2)
    expect(page.locator(".account-card").nth(1)).to_contain_text("shop@second.test")

    # Remove the first resource with its confirmation modal.
    page.get_by_role("button", name="Remove resource Customer").click()
    page.locator("dialog#modal").get_by_role("button", name="Remove").click()
    expect(page.get_by_text("Customer was removed")).to_be_visible()
    page.wait_for_load_state("load")
    expect(page.locator(f"#resource-{res_id}")).to_have_count(0)
    assert [e for e in stripe_double.endpoints("acct_1EngineRoom")] == []

    # Disconnect the second account.
    page.locator(".account-card", has_text="shop@second.test").get_by_role("button", name="Disconnect").click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("Disconnect Account")
    dialog.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("was disconnected")).to_be_visible()
    expect(page.locator(".account-card")).to_have_count(1)
    assert stripe_double.endpoints(acct2["id"]) == []
    assert service.find_contact_by_email("ada@example.com") is not None
