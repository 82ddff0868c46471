"""Endpoints Stripe disabled or lost, in Chromium: the Stripe page says so in red, "Re-enable" enables the
endpoint in Stripe and recovers what it missed, "Recreate endpoint" makes a new endpoint and URL (the old
URL stops accepting deliveries), and "Check for missed events" brings in what webhooks never delivered."""
import copy

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.helpers import ACCOUNT_ID, load_event, open_connect_modal
from webapp.crm.models import Contact
from webapp.stripe_sync.models import StripeAccount, StripeResource
from webapp.stripe_sync.recovery import schedule

pytestmark = pytest.mark.browser


@pytest.fixture
def delivering(app, stripe_double, live_server):
    """The double delivers what it sends to crm.example.test to this app; events are recovered at once."""
    app.config.update(RECOVERY_SETTLE=0, WEBHOOK_CACHE_SECONDS=0)
    stripe_double.map_webhook_host("crm.example.test", live_server.url)


def connect_customers(page, stripe_key):
    """Connect the Customer resource, new records only, through the modal."""
    dialog = open_connect_modal(page)
    dialog.get_by_label("Secret Key").fill(stripe_key)
    dialog.get_by_role("button", name="Connect").click()
    dialog.get_by_label("Choose Resource").select_option(label="Customer")
    dialog.get_by_label("Sync type").select_option(label="Sync new records only")
    dialog.get_by_role("button", name="Continue").click()
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")


def new_customer(stripe_double, n: int) -> str:
    """A customer created in Stripe now; returns its email."""
    obj = copy.deepcopy(load_event("customer.created")["data"]["object"])
    email = f"gap{n}@example.test"
    obj.update(id=f"cus_Gap{n}", email=email, name=f"Gap Person {n}")
    stripe_double.emit(ACCOUNT_ID, "customer.created", obj)
    return email


def contact_exists(db, email) -> bool:
    """Whether the CRM has the contact now."""
    db.session.expire_all()
    found = db.session.scalar(select(Contact).where(Contact.email_lower == email)) is not None
    db.session.rollback()
    return found


def scheduled_check(db, run_worker):
    """What the worker's schedule does every 15 minutes, run to the end."""
    schedule.request_check(db.session.scalar(select(StripeAccount.id)))
    run_worker()


def test_a_disabled_endpoint_is_shown_and_re_enabled(logged_in_page, db, delivering, stripe_double, stripe_key,
                                                     run_worker):
    page = logged_in_page
    connect_customers(page, stripe_key)
    res = db.session.scalar(select(StripeResource))
    stripe_double.disable_endpoint(ACCOUNT_ID, res.webhook_endpoint_id)  # days of failed deliveries
    first = new_customer(stripe_double, 1)
    assert not contact_exists(db, first)  # Stripe sent nothing

    scheduled_check(db, run_worker)
    assert contact_exists(db, first)  # recovered while the endpoint stays disabled
    page.reload()
    status = page.locator(f"#resource-status-{res.id}")
    expect(status.locator(".badge-danger")).to_have_text("Endpoint disabled")
    expect(status).to_contain_text("Stripe disabled this endpoint after failed deliveries")
    recovery = page.locator(".recovery")
    expect(recovery).to_contain_text("1 recovered")
    page.goto("/apps/connected")  # seen from Connected Apps too
    expect(page.locator(".endpoint-alert")).to_have_text("1 webhook endpoint disabled or deleted in Stripe")
    page.goto("/apps/stripe")

    second = new_customer(stripe_double, 2)
    status.get_by_role("button", name="Re-enable").click()
    expect(status).to_contain_text("Re-enabled in Stripe. Checking for missed events…")
    expect(status.locator(".badge-ok")).to_have_text("Active")
    assert stripe_double.endpoints(ACCOUNT_ID)[0]["status"] == "enabled"
    run_worker()
    assert contact_exists(db, second)  # the gap was recovered

    third = new_customer(stripe_double, 3)  # delivered by webhook again
    run_worker()
    assert contact_exists(db, third)
    assert stripe_double.deliveries[-1]["status"] == 200
    page.reload()
    expect(page.locator(f"#resource-status-{res.id} .badge-ok")).to_have_text("Active")


def test_a_deleted_endpoint_is_recreated_and_the_old_url_stops_working(logged_in_page, db, app, delivering,
                                                                       stripe_double, stripe_key, run_worker):
    page = logged_in_page
    connect_customers(page, stripe_key)
    res = db.session.scalar(select(StripeResource))
    old_token, old_endpoint = res.token, res.webhook_endpoint_id
    stripe_double.delete_endpoint(ACCOUNT_ID, old_endpoint)  # a colleague in the Dashboard
    lost = new_customer(stripe_double, 1)

    page.get_by_role("button", name="Check for missed events").click()
    expect(page.locator(".recovery")).to_contain_text("Checking for missed events…")
    run_worker()
    expect(page.locator(".recovery")).to_contain_text("1 recovered", timeout=10_000)  # the box polled itself
    assert contact_exists(db, lost)
    page.reload()
    status = page.locator(f"#resource-status-{res.id}")
    expect(status.locator(".badge-danger")).to_have_text("Endpoint deleted")
    expect(status).to_contain_text("was deleted in Stripe")

    status.get_by_role("button", name="Recreate endpoint").click()
    expect(status).to_contain_text("A new endpoint was created in Stripe.")
    expect(status.locator(".badge-ok")).to_have_text("Active")
    db.session.expire_all()
    res = db.session.get(StripeResource, res.id)
    assert res.token != old_token and res.webhook_endpoint_id != old_endpoint
    [endpoint] = stripe_double.endpoints(ACCOUNT_ID)
    assert endpoint["id"] == res.webhook_endpoint_id and endpoint["url"].endswith("/webhooks/stripe/" + res.token)
    assert app.test_client().post(f"/webhooks/stripe/{old_token}", data=b"{}").status_code == 404

    fresh = new_customer(stripe_double, 2)  # delivered to the new endpoint
    assert stripe_double.deliveries[-1]["status"] == 200
    run_worker()
    assert contact_exists(db, fresh)
