"""Issue 19: the connect flow from "Connect Account" to "Finish" with the keyboard alone, in Chromium. Focus
moves into the modal when it opens and with each step, Tab and Shift+Tab stay inside it, Escape closes it,
and focus goes back to the control that opened it."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

MODAL = "dialog#modal"


def press(page, key):
    """Press a key once htmx has finished (a user is never faster than its 20 ms settle)."""
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")).to_have_count(0)
    page.keyboard.press(key)


def is_focused(locator) -> bool:
    """Whether the element has the keyboard focus now."""
    return locator.count() == 1 and locator.evaluate("el => el === document.activeElement")


def tab_to(page, locator, limit=40, inside=None, key="Tab"):
    """Press Tab until the element has the focus; with inside, the focus never leaves that element on the way."""
    for _ in range(limit):
        if is_focused(locator):
            return
        if inside is not None:
            assert inside.evaluate("el => el.contains(document.activeElement)"), \
                "the focus left the modal: " + page.evaluate("document.activeElement.outerHTML.slice(0, 120)")
        press(page, key)
    raise AssertionError(f"{limit} × {key} never reached {locator}")


def choose_with_arrows(page, select, value, limit=12):
    """Change a focused <select> with the arrow keys alone, as a keyboard user does."""
    for _ in range(limit):
        if select.input_value() == value:
            return
        press(page, "ArrowDown")
    raise AssertionError(f"ArrowDown never chose {value!r} in {select}")


def test_connect_account_to_finish_with_the_keyboard_alone(logged_in_page, stripe_double, stripe_key):
    page = logged_in_page
    page.goto("/apps/stripe")
    page.wait_for_load_state("load")  # htmx wires the page up after it is visible
    dialog = page.locator(MODAL)
    connect = page.get_by_role("button", name="Connect Account")
    tab_to(page, connect)  # from the top of the page, through the navigation

    # Enter opens the modal with the focus on its field; Escape closes it and gives the focus back.
    press(page, "Enter")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Secret Key")).to_be_focused()
    press(page, "Escape")
    expect(dialog).to_be_hidden()
    expect(connect).to_be_focused()

    # Again, and Tab / Shift+Tab wrap around inside the modal.
    press(page, "Enter")
    key_field = dialog.get_by_label("Secret Key")
    expect(key_field).to_be_focused()
    press(page, "Shift+Tab")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    press(page, "Shift+Tab")
    expect(dialog.get_by_role("button", name="Connect")).to_be_focused()
    press(page, "Tab")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    tab_to(page, key_field, inside=dialog)

    # A wrong key: the message appears and the focus stays in the field for the correction.
    page.keyboard.type("sk_test_wrongwrongwrong123")
    press(page, "Enter")
    expect(dialog.get_by_text("Stripe rejected this key")).to_be_visible()
    expect(key_field).to_be_focused()
    press(page, "Control+A")
    page.keyboard.type(stripe_key)
    press(page, "Enter")

    # Step 2: the focus moves to its first field.
    resource = dialog.get_by_label("Choose Resource")
    expect(resource).to_be_focused()
    choose_with_arrows(page, resource, "customer")
    sync_type = dialog.get_by_label("Sync type")
    tab_to(page, sync_type, inside=dialog)
    choose_with_arrows(page, sync_type, "new_only")
    tab_to(page, dialog.get_by_role("button", name="Continue"), inside=dialog)
    press(page, "Enter")

    # Step 3: the mapping, with the focus inside the modal again; Finish is reached with Tab.
    expect(dialog).to_contain_text("Map fields")
    expect(dialog.locator(".mapping-row").first).to_be_visible()
    assert dialog.evaluate("el => el.contains(document.activeElement) && document.activeElement !== el")
    tab_to(page, dialog.get_by_role("button", name="Add field mapping"), inside=dialog)
    press(page, "Enter")
    expect(dialog.locator(".mapping-row")).to_have_count(3)
    tab_to(page, dialog.get_by_role("button", name="Remove field mapping").last, inside=dialog)
    press(page, "Enter")  # the row goes and the focus stays in the modal, not lost on the page
    expect(dialog.locator(".mapping-row")).to_have_count(2)
    assert dialog.evaluate("el => el.contains(document.activeElement) && document.activeElement !== el")
    tab_to(page, dialog.get_by_role("button", name="Finish"), inside=dialog)
    press(page, "Enter")
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")
    [endpoint] = stripe_double.endpoints("acct_1EngineRoom")
    assert sorted(endpoint["enabled_events"]) == ["customer.created", "customer.updated"]

    # The manage page's modals: Escape and Cancel both give the focus back to their opener.
    mapping = page.get_by_role("button", name="Customer", exact=True)
    tab_to(page, mapping, limit=60)
    press(page, "Enter")
    expect(dialog).to_contain_text("Field mapping: Customer")
    assert dialog.evaluate("el => el.contains(document.activeElement) && document.activeElement !== el")
    press(page, "Escape")
    expect(dialog).to_be_hidden()
    expect(mapping).to_be_focused()

    remove = page.get_by_role("button", name="Remove resource Customer")
    tab_to(page, remove)
    press(page, "Enter")
    expect(dialog).to_contain_text("Remove Customer?")
    tab_to(page, dialog.get_by_role("button", name="Cancel"), inside=dialog)
    press(page, "Enter")
    expect(dialog).to_be_hidden()
    expect(remove).to_be_focused()
    assert len(stripe_double.endpoints("acct_1EngineRoom")) == 1
