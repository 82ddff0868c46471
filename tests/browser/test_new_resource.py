"""Issue 13, finding 10: "Connect a new resource" makes its draft with a POST and still leads to the mapping step."""
import pytest
from playwright.sync_api import expect

from tests.helpers import connect
from webapp.stripe_sync.models import StripeAccount, StripeResource

pytestmark = pytest.mark.browser


def test_connect_a_new_resource_posts_and_reaches_the_mapping(logged_in_page, auth_client, db, stripe_key):
    page = logged_in_page
    connect(auth_client, db, stripe_key)
    account = db.session.query(StripeAccount).one()
    page.goto("/apps/stripe")
    page.wait_for_load_state("load")
    with page.expect_request(f"**/apps/stripe/accounts/{account.id}/resources/new") as request:
        page.get_by_role("button", name="Connect a new resource").click()
    assert request.value.method == "POST"
    dialog = page.locator("dialog#modal")
    dialog.get_by_label("Choose Resource").select_option(label="Charge")
    dialog.get_by_label("Sync type").select_option(label="Sync new records only")
    dialog.get_by_role("button", name="Continue").click()
    expect(dialog.locator(".mapping-row").first).to_be_visible()
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected").last).to_be_visible()
    page.wait_for_load_state("load")
    db.session.expire_all()
    assert {r.kind for r in db.session.query(StripeResource)} == {"customer", "charge"}
