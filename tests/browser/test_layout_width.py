"""The Stripe page and its modals fit a 1280 px laptop screen, even with long event types, ids and reasons in
the log: nothing a marketer needs ("Connect another account", "Disconnect", the Failed column, the trash
icons, "Details") is cut off or needs sideways scrolling."""
import json

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.test_manage_stripe import connect_in_browser, post
from tests.helpers import event_bytes_with
from webapp.stripe_sync.models import StripeResource

pytestmark = pytest.mark.browser

WIDTH = 1280


def overflow(page, selector="html") -> int:
    """How many pixels the element is wider than what it shows (0: no sideways scrolling)."""
    return page.evaluate("(s) => { const e = document.querySelector(s); return e.scrollWidth - e.clientWidth; }",
                         selector)


def inside_viewport(page, locator) -> bool:
    """Whether the element is wholly within the window's width."""
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH


def test_the_stripe_page_and_its_modals_fit_1280_pixels(logged_in_page, app, db, stripe_double, stripe_key,
                                                        run_worker):
    page = logged_in_page
    page.set_viewport_size({"width": WIDTH, "height": 800})
    connect_in_browser(page, stripe_key, kind="Subscription")
    res = db.session.scalar(select(StripeResource))
    long_name = "Wilhelmina Bartholomew-Featherstonehaugh " * 3
    event = json.loads(event_bytes_with("customer.subscription.created.json"))
    for n, event_type in enumerate(["customer.subscription.trial_will_end", "customer.subscription.resumed",
                                    "customer.subscription.paused"]):
        event.update(id=f"evt_{'LongIdentifier' * 4}{n}", type=event_type)
        event["data"]["object"]["metadata"] = {"note": long_name}
        post(app, stripe_double, res.id, json.dumps(event).encode())
    stripe_double.fail_next(40, status=500, path_prefix="/v1/customers")  # failures with long reasons
    app.config["EVENT_RETRY_INTERVALS"] = []
    run_worker()
    page.goto("/apps/stripe")
    expect(page.locator("#log-rows tr")).to_have_count(3)

    assert overflow(page) <= 0
    for name in ("Connect another account", "Disconnect", "Check for missed events", "Send a test event"):
        assert inside_viewport(page, page.get_by_role("button", name=name).first), name
    assert inside_viewport(page, page.get_by_role("button", name="Remove resource Subscription"))
    assert inside_viewport(page, page.locator("th", has_text="Failed").first)
    assert inside_viewport(page, page.locator(".log-table"))
    buttons = page.locator("main button:visible").all()
    assert len(buttons) > 10
    for button in buttons:  # Details, Retry, the trash icons, the log's own buttons: none cut off
        assert inside_viewport(page, button), button.text_content()

    dialogs = [page.get_by_role("button", name="Details", exact=False).first, page.locator("[title='Update field mapping']"),
               page.get_by_role("button", name="Remove resource Subscription"),
               page.get_by_role("button", name="Disconnect"), page.get_by_role("button", name="Connect another account")]
    for button in dialogs:
        button.click()
        dialog = page.locator("dialog#modal")
        expect(dialog).to_be_visible()
        assert overflow(page, "dialog#modal") <= 0, dialog.text_content()[:80]
        assert inside_viewport(page, dialog), dialog.text_content()[:80]
        dialog.locator("[data-close-modal]").first.click()
        expect(dialog).to_be_hidden()
    # The connect flow's further steps for a new resource: resource, mapping with extra rows.
    stripe_double._fail_rules.clear()  # Stripe answers again
    page.get_by_role("button", name="Connect a new resource").click()
    dialog = page.locator("dialog#modal")
    expect(dialog.get_by_label("Choose Resource")).to_be_visible()
    assert overflow(page, "dialog#modal") <= 0 and inside_viewport(page, dialog)
    dialog.get_by_label("Choose Resource").select_option(label="Checkout Session")
    dialog.get_by_role("button", name="Continue").click()
    dialog.get_by_role("button", name="Add field mapping").click()
    dialog.get_by_role("button", name="Add field mapping").click()
    expect(dialog.locator(".mapping-row")).to_have_count(4)
    assert overflow(page, "dialog#modal") <= 0 and inside_viewport(page, dialog)
    for button in dialog.locator("button:visible").all():
        assert inside_viewport(page, button), button.text_content()
    assert overflow(page) <= 0
