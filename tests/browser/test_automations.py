"""A marketer builds "when invoice.payment_failed, send an email with the invoice link" in Chromium,
the event is replayed, and the message is in the outbox with the link."""
import pytest
from playwright.sync_api import expect

from tests.helpers import FAST, INVOICE_URL, kind_for, story_files

pytestmark = pytest.mark.browser


def test_build_a_dunning_email_replay_the_event_and_find_it_in_the_outbox(logged_in_page, app, connect_resource,
                                                                          post_event, run_worker):
    page = logged_in_page
    app.config.update(FAST)
    invoices = connect_resource("invoice")
    assert post_event(invoices, "invoice.created").status_code == 200  # Ada and a recent event to preview with
    run_worker()
    dialog = page.locator("dialog#modal")

    page.get_by_role("link", name="Automations").click()
    expect(page.get_by_text("No automations yet")).to_be_visible()
    page.get_by_role("button", name="New automation").first.click()
    dialog.get_by_label("Name").fill("Dunning")
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="Dunning")).to_be_visible()
    page.wait_for_load_state("load")  # htmx wires the page up after it is visible

    # The trigger picker: sections, the recurring triggers explained, event types of the connected resource.
    page.get_by_role("button", name="Choose trigger").click()
    expect(dialog.get_by_role("heading", name="CX apps")).to_be_visible()
    expect(dialog.get_by_role("heading", name="E-commerce")).to_be_visible()
    expect(dialog.locator("#recurring-missing")).to_contain_text("appear once at least one recurring payment has synced")
    dialog.get_by_role("button", name="Stripe event received").click()
    expect(dialog.get_by_label("charge.succeeded")).to_have_count(0)  # Charge is not connected
    dialog.get_by_role("button", name="Save trigger").click()
    expect(dialog.get_by_text("Choose at least one event type.")).to_be_visible()
    dialog.get_by_label("invoice.payment_failed").check()
    dialog.get_by_role("button", name="Save trigger").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#trigger-summary")).to_contain_text("Stripe event received: invoice.payment_failed")

    # The email editor: tags go in at the cursor.
    page.get_by_role("button", name="Add action").click()
    dialog.get_by_role("button", name="Send email").click()
    subject = dialog.get_by_label("Subject")
    subject.fill("your payment failed")
    subject.press("Home")
    dialog.get_by_role("button", name="%FIRSTNAME%").click()
    page.keyboard.type(", ")
    expect(subject).to_have_value("%FIRSTNAME%, your payment failed")
    body = dialog.get_by_label("Body")
    body.fill("Hi ")
    dialog.get_by_role("button", name="%FIRSTNAME%").click()
    page.keyboard.type(",\nYour card was declined. Update it here: ")
    dialog.get_by_role("button", name="%STRIPE_INVOICE_URL%").click()
    page.keyboard.type("\nAmount due: %STRIPE_AMUONT%")
    expect(body).to_have_value("Hi %FIRSTNAME%,\nYour card was declined. Update it here: %STRIPE_INVOICE_URL%"
                               "\nAmount due: %STRIPE_AMUONT%")

    # The preview, for Ada and the recent event, flags the misspelt tag.
    dialog.get_by_label("Event").select_option(index=1)
    dialog.get_by_role("button", name="Preview").click()
    preview = dialog.locator("#email-preview")
    expect(preview.locator(".preview-subject")).to_have_text("Ada, your payment failed")
    expect(preview.locator(".unknown-tags")).to_contain_text("%STRIPE_AMUONT%")
    frame = preview.frame_locator("iframe")
    expect(frame.get_by_text("Hi Ada,")).to_be_visible()
    expect(frame.locator("mark.unknown-tag")).to_have_text("%STRIPE_AMUONT%")
    body.press("End")
    for _ in "%STRIPE_AMUONT%":
        body.press("Backspace")
    dialog.get_by_role("button", name="%STRIPE_AMOUNT%").click()
    dialog.get_by_role("button", name="Save action").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#steps")).to_contain_text("Send email “%FIRSTNAME%, your payment failed”")

    page.locator("#automation-status-1").get_by_role("button", name="Activate").click()
    expect(page.locator("#automation-status-1")).to_contain_text("Active")

    # Stripe sends the failed payment (twice); the worker runs the automation.
    for _ in range(2):
        assert post_event(invoices, "invoice.payment_failed").status_code == 200
    run_worker()

    page.locator("nav").get_by_role("link", name="Outbox").click()
    expect(page.get_by_text("No SMTP_URL is configured")).to_be_visible()
    rows = page.locator("#outbox-rows tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ada@example.com")
    expect(rows.first).to_contain_text("Not sent (no SMTP_URL configured)")
    rows.first.get_by_role("button", name="Ada, your payment failed").click()
    link = dialog.frame_locator("#message-body iframe").get_by_role("link", name=INVOICE_URL)
    expect(link).to_have_attribute("href", INVOICE_URL)
    message = dialog.frame_locator("#message-body iframe").locator("body")
    expect(message).to_contain_text("Amount due: $29.00")
    dialog.get_by_role("button", name="Close").last.click()

    page.locator("nav").get_by_role("link", name="Automations").click()
    page.get_by_role("link", name="Dunning").click()
    expect(page.locator("#entered-count")).to_have_text("1 contact entered")
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    expect(page.locator("#runs tbody tr").first).to_contain_text("Completed")


def build(page, name, trigger, configure, subject, body):
    """New automation → trigger (configured by `configure(dialog)`) → Send email → Activate."""
    dialog = page.locator("dialog#modal")
    page.goto("/automations/")
    page.get_by_role("button", name="New automation").first.click()
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    page.wait_for_load_state("load")  # htmx wires the page up after it is visible
    page.get_by_role("button", name="Choose trigger").click()
    dialog.get_by_role("button", name=trigger).click()
    configure(dialog)
    dialog.get_by_role("button", name="Save trigger").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Add action").click()
    dialog.get_by_role("button", name="Send email").click()
    dialog.get_by_label("Subject").fill(subject)
    dialog.get_by_label("Body").fill(body)
    dialog.get_by_role("button", name="Save action").click()
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".automation-status").first).to_contain_text("Active")


def test_the_three_automations_and_adas_story_send_each_message_once(logged_in_page, app, connect_all, post_event,
                                                                     run_worker):
    page = logged_in_page
    app.config.update(FAST)
    resources = connect_all()
    story = story_files()

    def replay(names):
        for event_name in names:
            assert post_event(resources[kind_for(event_name)], event_name).status_code == 200
        run_worker()

    replay(story[:2])  # a subscription has synced, so the recurring triggers are offered
    build(page, "Welcome", "Makes a purchase", lambda d: d.get_by_label("Any purchase").check(),
          "Welcome aboard, %FIRSTNAME%", "Thanks for buying %STRIPE_PRODUCT_NAME% (%STRIPE_AMOUNT%).")
    build(page, "Dunning", "Stripe event received", lambda d: d.get_by_label("invoice.payment_failed").check(),
          "Your payment failed", "Update your card: %STRIPE_INVOICE_URL%")
    build(page, "Win-back", "Recurring Payment Updated", lambda d: d.get_by_label("Status").select_option("CANCELLED"),
          "We miss you, %FIRSTNAME%", "Your %STRIPE_PRODUCT_NAME% subscription is %STRIPE_SUBSCRIPTION_STATUS%.")
    replay(story[2:])
    replay(story)  # Stripe redelivers every event

    page.goto("/automations/outbox")
    rows = page.locator("#outbox-rows tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_contain_text("Welcome aboard, Ada")
    expect(rows.nth(1)).to_contain_text("Your payment failed")
    expect(rows.nth(0)).to_contain_text("We miss you, Ada")
    rows.nth(1).get_by_role("button", name="Your payment failed").click()
    dialog = page.locator("dialog#modal")
    expect(dialog.frame_locator("#message-body iframe").get_by_role("link", name=INVOICE_URL)).to_be_visible()
    dialog.get_by_role("button", name="Close").last.click()
    rows.nth(0).get_by_role("button", name="We miss you, Ada").click()
    expect(dialog.frame_locator("#message-body iframe").locator("body")).to_have_text(
        "Your Notebook Pro monthly subscription is canceled.")
    dialog.get_by_role("button", name="Close").last.click()
    rows.nth(2).get_by_role("button", name="Welcome aboard, Ada").click()
    expect(dialog.frame_locator("#message-body iframe").locator("body")).to_have_text(
        "Thanks for buying onboarding_workshop ($450.00).")

    page.goto("/automations/")
    for name in ("Welcome", "Dunning", "Win-back"):
        row = page.locator("#automation-list tbody tr", has=page.get_by_role("link", name=name, exact=True))
        expect(row.locator("td").nth(3)).to_have_text("1")  # contacts entered: Ada, once
