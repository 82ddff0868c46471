"""The sync log in Chromium: the failure badge seen from any page, a failure in plain words and its retry,
a search that survives the poll and a reload, the empty state under live rows, and the CSV export of what
the filters show."""
import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.helpers import event_bytes
from webapp.stripe_sync.models import SyncLog

pytestmark = pytest.mark.browser

HEADER = ["Time (UTC)", "Resource", "Event type", "Stripe event id", "Contact email", "Outcome", "Reason"]


def bob(event_id: str, name: str = "customer.created") -> bytes:
    """A customer event about Bob instead of Ada."""
    return event_bytes(name, id=event_id, object__id="cus_Bob", object__email="bob@example.com", object__name="Bob")


def test_failure_badge_plain_words_and_a_retry_that_links_to_its_success(
        logged_in_page, app, db, connect_resource, stripe_double, post_event, run_worker):
    page = logged_in_page
    subscriptions = connect_resource("subscription")
    app.config["EVENT_RETRY_INTERVALS"] = []  # fail for good on the first attempt
    stripe_double.fail_next(100, status=500, path_prefix="/v1/customers")  # its customer cannot be retrieved
    post_event(subscriptions, "customer.subscription.created")
    run_worker()
    stripe_double._fail_rules.clear()

    page.goto("/contacts")  # any page: the navigation says syncs are failing
    badge = page.get_by_role("link", name="1 failed Stripe sync", exact=True)
    expect(badge).to_be_visible()
    expect(badge).to_have_text("1")
    badge.click()
    expect(page).to_have_url(re.compile(r"/apps/stripe\?outcome=failed$"))
    row = page.locator("#log-rows tr.log-failed")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("The customer could not be retrieved from Stripe")
    expect(row).to_contain_text("Gave up after attempt 1; Retry runs it again")
    expect(row).not_to_contain_text("Stripe API error")

    row.get_by_role("button", name=re.compile("Details")).click()
    dialog = page.locator("dialog#modal")
    trace = dialog.locator(".technical-details pre")
    expect(dialog.get_by_text("Technical details")).to_be_visible()
    expect(trace).to_be_hidden()  # folded away until asked for
    dialog.get_by_text("Technical details").click()
    expect(trace).to_be_visible()
    expect(trace).to_contain_text(".py:")
    dialog.get_by_role("button", name="Close").last.click()

    row.get_by_role("button", name="Retry").click()
    expect(row).to_contain_text("Retry queued: waiting for a worker…")
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    run_worker()
    retried = row.get_by_role("link", name="Retried: succeeded")
    expect(retried).to_be_visible(timeout=6000)  # the row refreshed itself
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("failed Stripe sync"))).to_have_count(0)  # the badge went too
    success = db.session.scalars(select(SyncLog).order_by(SyncLog.id.desc())).first()
    assert success.outcome in ("created", "updated") and success.attempt == 2
    retried.click()
    expect(dialog).to_contain_text("attempt 2")
    expect(dialog.locator(f".outcome-{success.outcome}")).to_be_visible()
    expect(dialog).to_contain_text("ada@example.com")


def test_search_and_dates_survive_the_poll_and_a_reload(logged_in_page, app, db, connect_resource, post_event,
                                                        run_worker):
    page = logged_in_page
    customers = connect_resource("customer")
    post_event(customers, "customer.created")
    post_event(customers, bob("evt_BobFirst"))
    post_event(customers, "edge/customer.created")  # Charles Babbage, no email
    run_worker()
    page.goto("/apps/stripe")
    rows = page.locator("#log-rows tr")
    expect(rows).to_have_count(3)

    search = page.get_by_label("Search", exact=True)
    search.press_sequentially("BOB@", delay=30)
    expect(page).to_have_url(re.compile(r"q=BOB%40"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bob@example.com")
    expect(search).to_be_focused()  # only the results were swapped
    post_event(customers, event_bytes("customer.updated", id="evt_AdaAgain"))
    post_event(customers, bob("evt_BobAgain", "customer.updated"))
    run_worker()
    expect(rows).to_have_count(2, timeout=6000)  # the poll brought Bob's new row, not Ada's
    expect(page.locator("#log-rows")).not_to_contain_text("ada@example.com")
    page.reload()
    expect(page.get_by_label("Search", exact=True)).to_have_value("BOB@")
    expect(rows).to_have_count(2)

    page.get_by_label("Search", exact=True).fill("cus_ip1bm6")  # a customer id, any case
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("No email on Stripe customer cus_Ip1BM6AwKptPXL (Charles Babbage)")
    page.get_by_label("Search", exact=True).fill("")
    expect(rows).to_have_count(5)
    page.get_by_label("From", exact=True).fill("2099-01-01")
    expect(page).to_have_url(re.compile(r"from=2099-01-01"))
    expect(rows).to_have_count(0)
    expect(page.get_by_text("No sync activity matches these filters yet")).to_be_visible()
    page.get_by_label("From", exact=True).fill("")
    page.get_by_label("To", exact=True).fill("2000-01-01")
    expect(rows).to_have_count(0)
    page.get_by_label("To", exact=True).fill("2099-12-31")
    expect(rows).to_have_count(5)


def test_export_downloads_the_filtered_rows(logged_in_page, app, db, connect_resource, post_event, run_worker):
    page = logged_in_page
    customers = connect_resource("customer")
    post_event(customers, "customer.created")
    post_event(customers, bob("evt_BobFirst"))
    post_event(customers, bob("evt_BobAgain", "customer.updated"))
    run_worker()
    page.goto("/apps/stripe")
    page.get_by_label("Search", exact=True).fill("bob")
    expect(page.locator("#log-rows tr")).to_have_count(2)
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert re.fullmatch(r"stripe-sync-log-\d{8}-\d{6}\.csv", download.suggested_filename)
    table = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert table[0] == HEADER
    assert [(r[3], r[4], r[5]) for r in table[1:]] == [("evt_BobAgain", "bob@example.com", "updated"),
                                                       ("evt_BobFirst", "bob@example.com", "created")]


def test_no_activity_message_goes_when_the_first_row_arrives(logged_in_page, app, db, connect_resource, post_event,
                                                              run_worker):
    page = logged_in_page
    customers = connect_resource("customer")
    page.goto("/apps/stripe")
    empty = page.get_by_text("No sync activity yet")
    expect(empty).to_be_visible()
    post_event(customers, "customer.created")
    run_worker()
    expect(page.locator("#log-rows tr")).to_have_count(1, timeout=6000)
    expect(empty).to_be_hidden()
