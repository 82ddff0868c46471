"""A resource's setup on the Stripe page, in Chromium: its webhook URL with Copy, "Waiting for the first event
from Stripe…" turning into "Receiving" when "Send a test event" goes through, and the signing secret that
`stripe listen` prints, pasted so the deliveries it forwards are accepted."""
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.test_manage_stripe import connect_in_browser
from tests.helpers import event_bytes_with, sign
from webapp.crm.models import Contact
from webapp.stripe_sync.models import StripeResource

pytestmark = pytest.mark.browser

CLI_SECRET = "whsec_" + "CliForwarded0123456789abcdef"


def test_url_copy_test_event_and_first_event(logged_in_page, live_server, db, stripe_double, stripe_key, run_worker):
    page = logged_in_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    connect_in_browser(page, stripe_key)
    res = db.session.scalar(select(StripeResource))
    row, setup = page.locator(f"#resource-{res.id}"), page.locator(f"#resource-setup-{res.id}")
    expect(row.locator(".last-event")).to_have_text("Waiting for the first event from Stripe…")

    expect(setup.locator(f"#webhook-url-{res.id}")).to_have_text(f"https://crm.example.test/webhooks/stripe/{res.token}")
    setup.get_by_role("button", name="Copy the webhook URL of Customer").click()
    expect(setup.get_by_role("button", name="Copy the webhook URL of Customer")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == f"https://crm.example.test/webhooks/stripe/{res.token}"

    setup.get_by_role("button", name="Send a test event").click()
    expect(setup.locator(".setup-note")).to_contain_text("Test event sent as Test Event (test.event@example.com)")
    run_worker()
    # The poll brings the log row and the resource's new state without a reload.
    expect(row.locator(".receiving")).to_have_text("Receiving", timeout=6000)
    expect(row.locator(".last-event")).to_contain_text("since ")
    expect(page.locator("#log-rows tr").first).to_contain_text("test.event@example.com")
    assert db.session.scalar(select(Contact.first_name).where(Contact.email_lower == "test.event@example.com")) == "Test"


def test_a_stripe_listen_secret_is_accepted_once_pasted(logged_in_page, app, db, stripe_double, stripe_key):
    page = logged_in_page
    connect_in_browser(page, stripe_key)
    res = db.session.scalar(select(StripeResource))
    payload = event_bytes_with("customer.created.json")
    client = app.test_client()

    def forwarded():
        """What stripe listen posts: the event signed with the CLI's own secret."""
        return client.post(f"/webhooks/stripe/{res.token}", data=payload,
                           headers={"Stripe-Signature": sign(payload, CLI_SECRET), "Content-Type": "application/json"})

    assert forwarded().status_code == 400  # not ours yet
    setup = page.locator(f"#resource-setup-{res.id}")
    setup.get_by_text("Local development with stripe listen").click()
    expect(setup).to_contain_text(f"stripe listen --forward-to {page.url.split('/apps')[0]}/webhooks/stripe/{res.token}")
    setup.get_by_label("Signing secret from stripe listen").fill("not-a-secret")
    setup.get_by_role("button", name="Save secret").click()
    expect(setup.locator(".field-error")).to_contain_text("starts with “whsec_”")

    setup.get_by_label("Signing secret from stripe listen").fill(CLI_SECRET)
    setup.get_by_role("button", name="Save secret").click()
    expect(setup.locator(".setup-note")).to_contain_text("Deliveries forwarded by stripe listen are accepted now")
    expect(setup.locator(".cli-secret-set")).to_contain_text("A stripe listen secret is set")
    assert CLI_SECRET not in page.content()  # stored encrypted, never shown again
    assert forwarded().status_code == 200

    setup.get_by_role("button", name="Remove secret").click()
    expect(setup.locator(".setup-note")).to_contain_text("Only deliveries from Stripe's endpoint are accepted now")
    assert client.post(f"/webhooks/stripe/{res.token}", data=payload,
                       headers={"Stripe-Signature": sign(payload, CLI_SECRET)}).status_code == 400
