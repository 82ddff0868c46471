"""Connecting with "Sync historical records and capture new records" in Chromium: the import's
progress appears under the resource, polls while it runs, and stops polling once it is finished."""
import pytest
from playwright.sync_api import expect

from tests.helpers import open_connect_modal

pytestmark = pytest.mark.browser


def connect(page, stripe_key, resource, trigger=False):
    dialog = open_connect_modal(page)
    dialog.get_by_label("Secret Key").fill(stripe_key)
    dialog.get_by_role("button", name="Connect").click()
    dialog.get_by_label("Choose Resource").select_option(label=resource)
    dialog.get_by_label("Sync type").select_option(label="Sync historical records and capture new records")
    if trigger:
        dialog.get_by_label("Also trigger automations for historical records").check()
    dialog.get_by_role("button", name="Continue").click()
    dialog.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Stripe is connected")).to_be_visible()
    page.wait_for_load_state("load")  # htmx wires the page up after it is visible


def test_progress_polls_until_the_import_is_finished(logged_in_page, stripe_double, stripe_key, run_worker):
    stripe_double.generate_customers("acct_1EngineRoom", 250, start_created=1_700_000_000)
    page = logged_in_page
    connect(page, stripe_key, "Customer")

    progress = page.locator("#backfill-row-1 .backfill")
    expect(progress.locator(".backfill-state")).to_have_text("queued")
    expect(progress).to_have_attribute("hx-trigger", "every 2s")
    expect(progress.get_by_role("button", name="Cancel")).to_be_visible()

    run_worker()  # the import runs while the page keeps polling

    expect(progress.locator(".backfill-state")).to_have_text("finished", timeout=20_000)
    expect(progress.locator(".backfill-imported")).to_have_text("252")
    expect(progress.locator(".backfill-skipped")).to_have_text("0")
    expect(progress.locator(".backfill-failed")).to_have_text("0")
    expect(progress).to_contain_text("records/s")
    expect(progress).not_to_have_attribute("hx-trigger", "every 2s")  # polling stopped
    expect(progress.get_by_role("button", name="Cancel")).to_have_count(0)
    page.reload()  # the page itself shows the same final state
    expect(page.locator("#backfill-row-1 .backfill-state")).to_have_text("finished")
    expect(page.locator("#resource-1")).to_contain_text("252")  # the Synced column counts records


def test_cancel_and_resume_from_the_page(logged_in_page, stripe_double, stripe_key, run_worker):
    page = logged_in_page
    connect(page, stripe_key, "Customer")
    progress = page.locator("#backfill-row-1 .backfill")
    progress.get_by_role("button", name="Cancel").click()
    expect(progress.locator(".backfill-state")).to_have_text("cancelled")
    expect(progress).not_to_have_attribute("hx-trigger", "every 2s")

    progress.get_by_role("button", name="Resume").click()
    expect(progress.locator(".backfill-state")).to_have_text("queued")
    run_worker()
    expect(progress.locator(".backfill-state")).to_have_text("finished", timeout=20_000)
    expect(progress.locator(".backfill-imported")).to_have_text("2")


def test_a_large_import_shows_windows_rate_and_time_left_while_it_runs(logged_in_page, app, stripe_double, stripe_key,
                                                                       redis_server):
    import signal

    from tests.helpers import start_worker, worker_env

    small_windows = dict(BACKFILL_SPLIT_AFTER_PAGES=2, BACKFILL_WINDOW_PAGES=2, BACKFILL_WINDOWS_PER_LANE=2)
    app.config.update(small_windows)
    stripe_double.generate_customers("acct_1EngineRoom", 3000, start_created=1_700_000_000)
    stripe_double.set_latency(0.15)  # Stripe taking its time, so the import is watched while it runs
    page = logged_in_page
    connect(page, stripe_key, "Customer")
    progress = page.locator("#backfill-row-1 .backfill")

    env = worker_env(app, redis_server.url, stripe_double, **{k: str(v) for k, v in small_windows.items()})
    worker = start_worker(env, burst=False)
    try:
        expect(progress.locator(".backfill-state")).to_have_text("running", timeout=20_000)
        expect(progress.locator(".backfill-windows-total")).not_to_have_text("1", timeout=20_000)  # cut into windows
        expect(progress.locator(".backfill-eta")).to_contain_text("left", timeout=20_000)
        expect(progress.locator(".backfill-rate")).to_be_visible()
        stripe_double.set_latency(0)
        expect(progress.locator(".backfill-state")).to_have_text("finished", timeout=60_000)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    expect(progress.locator(".backfill-imported")).to_have_text("3,002")
    done, total = progress.locator(".backfill-windows-done"), progress.locator(".backfill-windows-total")
    expect(done).to_have_text(total.inner_text())  # every window read
    expect(progress.locator(".backfill-eta")).to_have_count(0)
