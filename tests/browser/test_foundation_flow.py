"""The foundation as a marketer clicks it, in real headless Chromium."""
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_setup_login_fields_contacts_tags_apps(page):
    # First run: no user yet, so the app offers setup.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password", exact=True).fill("a long password")
    page.get_by_label("Confirm password").fill("a long password")
    page.get_by_role("button", name="Create admin account").click()
    expect(page).to_have_url(re.compile(r"/contacts$"))

    # Log out and back in through the login form.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Email").fill("owner@example.com")
    page.get_by_label("Password").fill("a long password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()

    # A custom field, then a clash with a standard one that keeps the typed name.
    page.get_by_role("link", name="Fields").click()
    page.get_by_label("Field name").fill("Plan")
    page.get_by_label("Type").select_option("dropdown")
    page.get_by_label("Options (one per line, for dropdowns)").fill("Free\nPro")
    page.get_by_role("button", name="Create field").click()
    expect(page.get_by_text("Field “Plan” created.")).to_be_visible()
    page.get_by_label("Field name", exact=True).fill("Phone")
    page.get_by_role("button", name="Create field").click()
    expect(page.get_by_text("“Phone” is a standard field; choose another name.")).to_be_visible()
    expect(page.get_by_label("Field name", exact=True)).to_have_value("Phone")

    # Create a contact with the custom field.
    page.get_by_role("link", name="Contacts").first.click()
    page.get_by_role("link", name="Add contact").click()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("First Name").fill("Ada")
    page.get_by_label("Last Name").fill("Lovelace")
    page.get_by_label("Plan").select_option("Pro")
    page.get_by_role("button", name="Save contact").click()
    expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    page.wait_for_load_state("load")  # htmx wires the page up after it is visible
    expect(page.locator(".details")).to_contain_text("Pro")

    # Tag it inline (htmx), then remove and re-add.
    page.get_by_placeholder("Add a tag").fill("VIP")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator("#contact-tags .tag")).to_have_text(re.compile("VIP"))
    page.get_by_role("button", name="Remove tag VIP").click()
    expect(page.locator("#contact-tags")).to_contain_text("No tags.")
    page.get_by_placeholder("Add a tag").fill("VIP")
    page.get_by_role("button", name="Add tag").click()
    expect(page.locator("#contact-tags .tag")).to_have_count(1)

    # A second contact, then search as you type narrows the list without a reload.
    page.goto("/contacts/new")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("First Name").fill("Grace")
    page.get_by_role("button", name="Save contact").click()
    page.get_by_role("link", name="Contacts").first.click()
    expect(page.locator("#contact-table tbody tr")).to_have_count(2)
    page.wait_for_load_state("load")
    page.get_by_label("Search contacts").press_sequentially("lov", delay=30)
    expect(page.locator("#contact-table tbody tr")).to_have_count(1)
    expect(page.locator("#contact-table")).to_contain_text("ada@example.com")
    page.get_by_label("Search contacts").fill("")
    page.get_by_label("Tag").select_option(label="VIP")
    expect(page.locator("#contact-table tbody tr")).to_have_count(1)

    # Tags page counts the contact.
    page.get_by_role("link", name="Tags").click()
    expect(page.locator("table")).to_contain_text("VIP")

    # Apps: typing "str" narrows the list live; Stripe opens its page.
    page.get_by_role("link", name="Apps").click()
    page.wait_for_load_state("load")
    page.get_by_label("Search apps").press_sequentially("zz", delay=30)
    expect(page.get_by_text("No apps match")).to_be_visible()
    page.get_by_label("Search apps").fill("")
    page.get_by_label("Search apps").press_sequentially("str", delay=30)
    page.locator("#app-list").get_by_text("Stripe", exact=True).click()
    expect(page.get_by_role("button", name="Connect Account")).to_be_visible()


def test_bad_contact_input_keeps_what_was_typed(logged_in_page):
    page = logged_in_page
    page.goto("/contacts/new")
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_label("First Name").fill("Kept")
    page.get_by_role("button", name="Save contact").click()
    expect(page.get_by_text("Enter a valid email address, like name@example.com.")).to_be_visible()
    expect(page.get_by_label("First Name")).to_have_value("Kept")
