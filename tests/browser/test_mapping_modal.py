"""The field-mapping step in Chromium: the Customer Name row needs no guess, "Create field" from a row, and
"Preview with a recent customer" (in the connect flow and in "Update field mapping")."""
import time

import pytest
from playwright.sync_api import expect

from tests.browser.test_manage_stripe import post
from tests.helpers import ACCOUNT_ID, add_mapping_row, event_bytes_with, field_id, open_connect_modal
from webapp.crm import service
from webapp.crm.models import ContactField
from webapp.stripe_sync.models import StripeResource

pytestmark = pytest.mark.browser


def to_mapping(page, key, kind="Customer"):
    """Connect Account → key → resource and sync type → Continue; returns the dialog at the mapping step."""
    dialog = open_connect_modal(page)
    dialog.get_by_label("Secret Key").fill(key)
    dialog.get_by_role("button", name="Connect").click()
    dialog.get_by_label("Choose Resource").select_option(label=kind)
    dialog.get_by_label("Sync type").select_option(label="Sync new records only")
    dialog.get_by_role("button", name="Continue").click()
    expect(dialog.locator(".mapping-row")).to_have_count(2)
    return dialog


def visible_options(select) -> list[str]:
    """The option texts a user sees in a select (hidden ones left out)."""
    return select.evaluate("s => [...s.options].filter(o => !o.hidden).map(o => o.textContent.trim())")


def create_field(row, name, type_label):
    """"Create field" in a row: name and type, then Create."""
    row.get_by_role("button", name="Create field").click()
    row.get_by_label("Field name").fill(name)
    row.get_by_label("Type").select_option(label=type_label)
    row.get_by_role("button", name="Create", exact=True).click()


def test_the_customer_name_row_needs_no_guess(logged_in_page, app, db, stripe_double, stripe_key, run_worker):
    page = logged_in_page
    dialog = to_mapping(page, stripe_key)
    row = add_mapping_row(dialog)
    row.get_by_label("Stripe field").select_option(label="Customer Name")
    crm = dialog.locator(".mapping-row").nth(2).get_by_label("CRM field")
    expect(crm.locator("option:checked")).to_have_text("First Name + Last Name")
    expect(dialog.get_by_text("split into First Name and Last Name")).to_be_visible()
    assert "First Name" not in visible_options(crm) and "Last Name" not in visible_options(crm)
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")

    res = db.session.query(StripeResource).one()
    assert [(m.stripe_field, m.field.key) for m in res.mappings] == [("email", "email"), ("name", "first_name")]
    post(app, stripe_double, res.id, event_bytes_with("customer.created.json", email="grace@example.com",
                                                      name="Grace Brewster Hopper"))
    run_worker()
    grace = service.find_contact_by_email("grace@example.com")
    assert (grace.first_name, grace.last_name) == ("Grace", "Brewster Hopper")

    # "Update field mapping" shows the stored mapping the same way.
    page.get_by_role("button", name="Customer", exact=True).click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("Field mapping: Customer")
    expect(dialog.locator(".mapping-row").nth(2).get_by_label("CRM field").locator("option:checked")).to_have_text(
        "First Name + Last Name")


def test_a_field_created_from_the_modal_is_selected_and_used(logged_in_page, app, db, stripe_double, stripe_key,
                                                              run_worker):
    page = logged_in_page
    dialog = to_mapping(page, stripe_key)
    row = add_mapping_row(dialog)
    row.get_by_label("Stripe field").select_option(label="Metadata: plan_tier")
    expect(row.get_by_label("CRM field")).to_have_value("")
    create_field(row, "Plan", "Text")
    row = dialog.locator(".mapping-row").nth(2)
    expect(row.get_by_label("CRM field").locator("option:checked")).to_have_text("Plan")
    expect(row.get_by_label("Stripe field")).to_have_value("metadata.plan_tier")
    id_row = dialog.locator(".mapping-row").nth(1)
    expect(id_row.get_by_label("CRM field for Stripe ID").locator("option", has_text="Plan")).to_have_count(1)

    # The same name again, from the Stripe ID row: the CRM's message in that row, nothing else lost.
    create_field(id_row, "plan", "Text")
    expect(id_row.get_by_role("alert")).to_have_text("A field named “Plan” already exists.")
    expect(id_row.get_by_label("Field name")).to_have_value("plan")
    expect(dialog.locator(".mapping-row").nth(2).get_by_label("CRM field").locator("option:checked")).to_have_text("Plan")
    id_row.get_by_label("Field name").fill("")
    id_row.get_by_role("button", name="Create", exact=True).click()
    expect(id_row.get_by_role("alert")).to_have_text("Enter a field name.")
    id_row.get_by_role("button", name="Cancel").click()
    expect(id_row.get_by_label("Field name")).to_have_count(0)

    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")
    plan = db.session.query(ContactField).filter_by(label="Plan").one()
    res = db.session.query(StripeResource).one()
    assert [(m.stripe_field, m.field_id) for m in res.mappings][1:] == [("metadata.plan_tier", plan.id)]
    post(app, stripe_double, res.id, event_bytes_with("customer.created.json", metadata={"plan_tier": "gold"}))
    run_worker()
    assert service.custom_values(service.find_contact_by_email("ada@example.com")) == {plan.id: "gold"}


def test_preview_with_a_recent_customer(logged_in_page, db, stripe_double, stripe_key):
    stripe_double.add_customer(ACCOUNT_ID, email="grace.newest@example.com", name="Grace Brewster Hopper",
                               address={"city": "London"}, created=int(time.time()) + 60)
    page = logged_in_page
    dialog = to_mapping(page, stripe_key)
    add_mapping_row(dialog).get_by_label("Stripe field").select_option(label="Customer Name")
    row = add_mapping_row(dialog)
    create_field(row, "Lucky number", "Number")  # no Stripe field chosen yet: every type is offered
    row = dialog.locator(".mapping-row").nth(3)
    expect(row.get_by_label("CRM field").locator("option:checked")).to_have_text("Lucky number")
    row.get_by_label("Stripe field").select_option(label="City")
    expect(row.get_by_label("Stripe field")).to_have_value("address.city")

    dialog.get_by_role("button", name="Preview with a recent customer").click()
    preview = dialog.locator(".mapping-preview")
    expect(preview).to_contain_text("grace.newest@example.com")
    table = preview.locator("table")
    expect(table.locator("tr", has_text="First Name")).to_contain_text("“Grace”")
    expect(table.locator("tr", has_text="Last Name")).to_contain_text("“Brewster Hopper”")
    expect(table.locator("tr", has_text="Lucky number")).to_contain_text(
        "would be left out: “London” is not a number")
    assert db.session.query(StripeResource).count() == 0  # nothing saved

    # Without the row that cannot fit, Finish; "Update field mapping" previews the stored rows the same way.
    dialog.locator(".mapping-row").nth(3).get_by_role("button", name="Remove field mapping").click()
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Customer", exact=True).click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("Field mapping: Customer")
    dialog.get_by_role("button", name="Preview with a recent customer").click()
    expect(dialog.locator(".mapping-preview tr", has_text="Last Name")).to_contain_text("“Brewster Hopper”")
    assert field_id(db, "first_name")
