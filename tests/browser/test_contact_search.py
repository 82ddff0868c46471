"""Searching and sorting the contact list as a marketer does it, in real Chromium: typing the middle of
a name narrows the list without a reload, and a column header sorts it and sorts it back."""
import re
from datetime import datetime

import pytest
from playwright.sync_api import expect

from webapp.crm import service

pytestmark = pytest.mark.browser


def test_typing_part_of_a_name_or_domain_finds_the_contact(logged_in_page, db):
    for email, first, last in (("ana@correo.example.org", "Ana", "Nunez"), ("grace@navy.test", "Grace", "Hopper"),
                               ("alan@bletchley.test", "Alan", "Turing")):
        service.save_contact(None, {"email": email, "first_name": first, "last_name": last})
    page = logged_in_page
    page.goto("/contacts")
    page.wait_for_load_state("load")  # htmx wires the search box up after the page shows
    rows = page.locator("#contact-table tbody tr")
    expect(rows).to_have_count(3)

    page.get_by_label("Search contacts").press_sequentially("unez", delay=40)  # not how the name starts
    expect(rows).to_have_count(1)
    expect(page.locator("#contact-table")).to_contain_text("Ana Nunez")
    expect(page.locator("#contact-table .count")).to_have_text("1 contact matching “unez”")
    expect(page).to_have_url(re.compile(r"/contacts\?q=unez"))  # the address can be shared and reloaded

    page.get_by_label("Search contacts").fill("")
    expect(rows).to_have_count(3)
    page.get_by_label("Search contacts").press_sequentially("letchl", delay=40)  # the middle of a domain
    expect(rows).to_have_count(1)
    expect(page.locator("#contact-table")).to_contain_text("alan@bletchley.test")

    page.get_by_label("Search contacts").fill("")
    page.get_by_label("Search contacts").press_sequentially("zzq", delay=40)
    expect(page.locator("#contact-table")).to_contain_text("No contacts match. Try another search.")


def test_a_column_header_sorts_and_a_second_click_reverses(logged_in_page, db):
    for email, value, paid in (("small@shop.test", 900, datetime(2026, 4, 1)), ("none@shop.test", 0, None),
                               ("big@shop.test", 250000, datetime(2026, 2, 1))):
        c = service.save_contact(None, {"email": email, "first_name": "Shop"})
        c.lifetime_value, c.lifetime_currency, c.last_payment_at = value, ("usd" if value else None), paid
    db.session.commit()
    page = logged_in_page
    page.goto("/contacts")
    page.wait_for_load_state("load")
    emails = page.locator("#contact-table tbody tr td:first-child")
    expect(emails).to_have_text(["big@shop.test", "none@shop.test", "small@shop.test"])

    header = page.locator("th", has_text="Lifetime value")
    header.get_by_role("link").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(emails).to_have_text(["big@shop.test", "small@shop.test", "none@shop.test"])
    expect(page.locator("#contact-table tbody tr").first).to_contain_text("$2,500.00")
    expect(page).to_have_url(re.compile(r"sort=-lifetime_value"))

    page.locator("th", has_text="Lifetime value").get_by_role("link").click()
    expect(page.locator("th", has_text="Lifetime value")).to_have_attribute("aria-sort", "ascending")
    expect(emails).to_have_text(["none@shop.test", "small@shop.test", "big@shop.test"])

    # Typing a search keeps the order chosen; the last-payment header sorts by date.
    page.get_by_label("Search contacts").press_sequentially("shop", delay=40)
    expect(page).to_have_url(re.compile(r"q=shop.*sort=lifetime_value|sort=lifetime_value.*q=shop"))
    expect(emails).to_have_text(["none@shop.test", "small@shop.test", "big@shop.test"])
    page.locator("th", has_text="Last payment").get_by_role("link").click()
    expect(page.locator("th", has_text="Last payment")).to_have_attribute("aria-sort", "descending")
    expect(emails).to_have_text(["small@shop.test", "big@shop.test", "none@shop.test"])
    expect(page.locator("#contact-table .count")).to_contain_text("matching “shop”")
