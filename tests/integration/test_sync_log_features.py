"""The sync log a marketer trusts (issue 17, points 6 and 7): failures in plain words with the next retry,
a retried row linking to the attempt that succeeded, the navigation's failure badge, one row per import,
skipped rows that name the customer, one Resource choice per kind, search, dates and the CSV export."""
import csv
import io
import re
from datetime import datetime, timedelta

from rq.registry import ScheduledJobRegistry
from sqlalchemy import event, select

from tests.helpers import ACCOUNT_ID, HX, event_bytes, start_import
from webapp.redis_queue import get_queue
from webapp.stripe_sync.models import StripeEvent, StripeResource, SyncLog
from webapp.timeutil import from_epoch_naive, utcnow

ROW_RE = r'(?s)<tr id="log-%d".*?</tr>'
DETAILS_RE = re.compile(r'(?s)<details class="fold technical-details">.*?</details>')


def row_html(html: str, row_id: int) -> str:
    """One log row of a page or fragment."""
    return re.search(ROW_RE % row_id, html).group(0)


def failing_subscription(app, connect_resource, stripe_double, post_event, run_worker, retry_intervals, down=False):
    """A subscription event whose customer cannot be retrieved (Stripe answers 500, or not at all); its log row."""
    from webapp.extensions import db

    subscriptions = connect_resource("subscription")
    app.config["EVENT_RETRY_INTERVALS"] = retry_intervals
    if down:
        stripe_double.set_down(True)
    else:
        stripe_double.fail_next(100, status=500, path_prefix="/v1/customers")
    assert post_event(subscriptions, "customer.subscription.created").status_code == 200
    run_worker()
    stripe_double.set_down(False)
    stripe_double._fail_rules.clear()
    return db.session.scalars(select(SyncLog).where(SyncLog.outcome == "failed")).one()


def test_a_failure_in_plain_words_with_the_next_retry_and_the_trace_folded_away(
        app, db, connect_resource, stripe_double, post_event, run_worker, get_page):
    failed = failing_subscription(app, connect_resource, stripe_double, post_event, run_worker, [600, 600])
    assert failed.reason.startswith("Stripe API error 500") and failed.reason.endswith("(will retry)")
    score = get_queue().connection.zscore(ScheduledJobRegistry(queue=get_queue()).key,
                                          f"stripe-event-{failed.event_row_id}")
    due = from_epoch_naive(score)
    assert due > utcnow() + timedelta(minutes=9)  # the drain scheduled its retry 10 minutes on

    row = row_html(get_page("/apps/stripe"), failed.id)
    clock = due.strftime("%H:%M UTC" if due.date() == utcnow().date() else "%Y-%m-%d %H:%M UTC")
    assert "The customer could not be retrieved from Stripe" in row and f"Retrying at {clock}" in row
    assert ">Retry</button>" in row
    assert "Stripe API error" not in row and ".py:" not in row and "Traceback" not in row

    detail = get_page(f"/apps/stripe/log/{failed.id}")
    folded = DETAILS_RE.search(detail).group(0)
    assert "<summary>Technical details</summary>" in folded and "<details " in folded and " open" not in folded
    assert "Stripe API error 500" in folded and ".py:" in folded  # the stored error and its frames…
    outside = DETAILS_RE.sub("", detail)
    assert "Stripe API error" not in outside and ".py:" not in outside  # …and nowhere else
    assert "The customer could not be retrieved from Stripe" in outside and f"Retrying at {clock}" in outside


def test_stripe_not_answering_says_so(app, db, connect_resource, stripe_double, post_event, run_worker, get_page):
    failed = failing_subscription(app, connect_resource, stripe_double, post_event, run_worker, [], down=True)
    row = row_html(get_page("/apps/stripe"), failed.id)
    assert "Stripe did not answer" in row and "Gave up after attempt 1; Retry runs it again" in row


def test_a_retried_row_waits_then_links_to_the_attempt_that_succeeded(
        app, db, auth_client, connect_resource, stripe_double, post_event, run_worker, get_page):
    failed = failing_subscription(app, connect_resource, stripe_double, post_event, run_worker, [])
    stripe_double.fail_next(100, status=500, path_prefix="/v1/customers")
    get_page("/apps/stripe")
    auth_client.post(f"/apps/stripe/log/{failed.id}/retry", htmx=True)
    run_worker()  # the first retry fails again
    stripe_double._fail_rules.clear()
    again = db.session.scalars(select(SyncLog).where(SyncLog.outcome == "failed").order_by(SyncLog.id.desc())).first()
    assert again.id > failed.id and again.event_row_id == failed.event_row_id
    first = row_html(get_page(f"/apps/stripe/log/{failed.id}/row"), failed.id)
    assert "Retried: failed again" in first and f'hx-get="/apps/stripe/log/{again.id}"' in first
    assert ">Retry</button>" not in first

    resp = auth_client.post(f"/apps/stripe/log/{again.id}/retry", htmx=True)
    waiting = row_html(resp.get_data(as_text=True), again.id)
    assert resp.status_code == 200 and "Retry queued: waiting for a worker…" in waiting
    assert ">Retry</button>" not in waiting and 'hx-trigger="every 2s"' in waiting  # it refreshes itself
    assert "Retry queued: waiting for a worker…" in row_html(get_page(f"/apps/stripe/log/{again.id}/row"), again.id)

    run_worker()
    db.session.expire_all()
    success = db.session.scalars(select(SyncLog).order_by(SyncLog.id.desc())).first()
    assert success.event_row_id == failed.event_row_id and success.outcome in ("created", "updated")
    for old in (failed, again):
        row = row_html(get_page(f"/apps/stripe/log/{old.id}/row"), old.id)
        assert "Retried: succeeded" in row and f'hx-get="/apps/stripe/log/{success.id}"' in row
        assert ">Retry</button>" not in row and "hx-trigger" not in row and "Retry queued" not in row
    detail = get_page(f"/apps/stripe/log/{again.id}")
    assert "Retried: succeeded" in detail and f'hx-get="/apps/stripe/log/{success.id}"' in detail
    opened = get_page(f"/apps/stripe/log/{success.id}")
    assert "outcome-created" in opened or "outcome-updated" in opened


def test_the_failure_badge_on_every_page_is_one_indexed_query(
        app, db, auth_client, connect_resource, stripe_double, post_event, run_worker, get_page):
    assert 'class="nav-badge"' not in get_page("/contacts")  # hidden at 0
    failed = failing_subscription(app, connect_resource, stripe_double, post_event, run_worker, [])
    statements = []
    listener = lambda conn, cursor, sql, params, context, many: statements.append((sql, params))  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        contacts = get_page("/contacts")
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert re.search(r'<a class="nav-badge" href="/apps/stripe\?outcome=failed" aria-label="1 failed Stripe sync"'
                     r'[^>]*>1</a>', contacts)
    assert 'aria-label="1 failed Stripe sync"' in get_page("/automations/")
    badge_queries = [(sql, params) for sql, params in statements if "stripe_events" in sql]
    assert len(badge_queries) == 1
    if db.engine.dialect.name == "sqlite":
        sql, params = badge_queries[0]
        plan = " ".join(str(r[-1]) for r in db.session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}",
                                                                                     params))
        assert "ix_stripe_events_status_received" in plan, plan

    auth_client.post(f"/apps/stripe/log/{failed.id}/retry", htmx=True)
    run_worker()
    assert 'class="nav-badge"' not in get_page("/contacts")  # retried: gone
    assert 'id="failed-syncs"' in get_page("/contacts")  # the slot the log's poll refreshes stays


def test_one_row_per_import_updated_as_pages_are_saved(app, db, fast, connect_resource, stripe_double, get_page):
    from rq import SimpleWorker

    from webapp.redis_queue import get_redis

    app.config["BACKFILL_SLICE_SECONDS"] = 0  # one page per job
    stripe_double.generate_customers(ACCOUNT_ID, 250, start_created=1_700_000_000)
    stripe_double.add_customer(ACCOUNT_ID, id="cus_Ip1BM6AwKptPXL", name="Charles Babbage", email=None,
                               created=1_600_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)

    def jobs(n=None):
        with app.app_context():
            SimpleWorker([get_queue()], connection=get_redis()).work(burst=True, max_jobs=n, with_scheduler=False)
        db.session.expire_all()

    jobs(1)
    [summary] = db.session.scalars(select(SyncLog).where(SyncLog.event_type == "historical import"))
    assert summary.reason == "Historical import: 100 imported, 0 skipped, 0 failed"
    row = row_html(get_page("/apps/stripe"), summary.id)
    assert "Historical import: 100 imported, 0 skipped, 0 failed" in row and 'hx-trigger="every 2s"' in row
    jobs()
    assert db.session.scalars(select(SyncLog.id).where(SyncLog.event_type == "historical import")).all() == [summary.id]
    db.session.refresh(summary)
    assert summary.reason == "Historical import: 252 imported, 1 skipped, 0 failed"
    page = get_page("/apps/stripe")
    assert "Imported page" not in page and page.count("Historical import:") == 1
    row = row_html(page, summary.id)
    assert "Import finished" in row and "hx-trigger" not in row
    skipped = db.session.scalars(select(SyncLog).where(SyncLog.outcome == "skipped")).one()
    assert "No email on Stripe customer cus_Ip1BM6AwKptPXL (Charles Babbage)" in row_html(page, skipped.id)
    detail = get_page(f"/apps/stripe/log/{summary.id}")
    figures = dict(re.findall(r'<dd class="import-(\w[\w-]*)">([\d,]+|\w+)', detail))
    assert figures == {"state": "Finished", "imported": "252", "skipped": "1", "failed": "0", "passed-over": "0",
                       "pages": "3"}, figures
    assert backfill_id and summary.detail == f"backfill:{backfill_id}"


def test_skipped_rows_name_the_stripe_customer_and_why(app, db, connect_resource, stripe_double, post_event,
                                                        run_worker, get_page):
    customers = connect_resource("customer")
    subscriptions = connect_resource("subscription")
    stripe_double.add_customer(ACCOUNT_ID, id="cus_NoMail", name="Grace Hopper", email=None)
    post_event(customers, "edge/customer.created")  # Charles Babbage, no email, in the event itself
    post_event(subscriptions, event_bytes("customer.subscription.created", id="evt_sub_nomail",
                                          object__customer="cus_NoMail"))  # the customer is retrieved
    run_worker()
    page = get_page("/apps/stripe")
    rows = {r.stripe_event_id: row_html(page, r.id)
            for r in db.session.scalars(select(SyncLog).where(SyncLog.outcome == "skipped"))}
    assert "No email on Stripe customer cus_Ip1BM6AwKptPXL (Charles Babbage)" in rows["evt_1UD6bSLm3xVt9QeKCHHBPfVQ"]
    assert "No email on Stripe customer cus_NoMail (Grace Hopper)" in rows["evt_sub_nomail"]  # the name remembered
    assert all(">no email<" not in r and '<span class="muted">—</span>' not in r for r in rows.values())


def test_no_activity_message_only_without_rows(app, db, connect_resource, post_event, run_worker, get_page):
    customers = connect_resource("customer")
    assert "No sync activity yet" in get_page("/apps/stripe")
    post_event(customers, "customer.created")
    run_worker()
    page = get_page("/apps/stripe")
    assert 'id="log-rows"' in page and "No sync activity" not in page


def test_the_resource_filter_lists_each_kind_once(app, db, connect_resource, post_event, run_worker, get_page):
    first = connect_resource("customer")
    post_event(first, "customer.created")
    run_worker()
    db.session.get(StripeResource, first.id).status = "disconnected"  # removed, then connected again
    db.session.commit()
    second = connect_resource("customer")
    post_event(second, "customer.updated")
    run_worker()
    page = get_page("/apps/stripe")
    select_html = re.search(r'(?s)<select id="filter-resource".*?</select>', page).group(0)
    assert re.findall(r"<option[^>]*>([^<]+)</option>", select_html) == ["All", "Customer"]
    filtered = get_page("/apps/stripe?resource=customer")
    assert filtered.count('<tr id="log-') == 2  # both resources' rows
    assert get_page("/apps/stripe?resource=charge").count('<tr id="log-') == 0


def test_search_by_email_event_id_or_customer_id_survives_the_poll(
        app, db, auth_client, connect_resource, post_event, run_worker, get_page):
    customers = connect_resource("customer")
    post_event(customers, "customer.created")  # Ada, evt_1U0I3z…
    post_event(customers, event_bytes("customer.created", id="evt_BobFirst", object__id="cus_Bob",
                                      object__email="bob@example.com", object__name="Bob"))
    post_event(customers, "edge/customer.created")  # Charles, no email
    run_worker()

    def shown(query):
        page = get_page("/apps/stripe?" + query)
        return re.findall(r'<tr id="log-\d+"[^>]*>', page), page

    rows, page = shown("q=ADA@EXAMPLE")
    assert len(rows) == 1 and "ada@example.com" in page and 'value="ADA@EXAMPLE"' in page
    rows, page = shown("q=bobfirst")
    assert len(rows) == 1 and "bob@example.com" in page
    rows, page = shown("q=cus_ip1bm6")  # the skipped row's customer id, any case
    assert len(rows) == 1 and "Charles Babbage" in page
    rows, page = shown("q=%25")  # a LIKE wildcard is a plain character
    assert rows == [] and "No sync activity matches these filters yet" in page

    poll = re.search(r'id="log-poller" hx-get="([^"]+)"', get_page("/apps/stripe?q=bob")).group(1).replace("&amp;", "&")
    assert "q=bob" in poll
    post_event(customers, event_bytes("customer.updated", id="evt_AdaAgain"))
    post_event(customers, event_bytes("customer.updated", id="evt_BobAgain", object__id="cus_Bob",
                                      object__email="bob@example.com", object__name="Bob"))
    run_worker()
    body = auth_client.get(poll, headers=HX).get_data(as_text=True)
    assert body.count('<tr id="log-') == 1 and "bob@example.com" in body and "ada@example.com" not in body
    fragment = auth_client.get("/apps/stripe?q=bob", headers={**HX, "HX-Target": "log-results"}).get_data(as_text=True)
    assert 'id="log-results"' in fragment and 'id="filter-q"' not in fragment  # the search box keeps its focus
    assert re.search(r'<a id="log-export"[^>]*href="/apps/stripe/log/export.csv\?q=bob"', fragment)


def test_a_date_range_in_utc_days(app, db, connect_resource, post_event, run_worker, get_page):
    customers = connect_resource("customer")
    for n in range(3):
        post_event(customers, event_bytes("customer.updated", id=f"evt_day{n}"))
    run_worker()
    days = [datetime(2025, 3, 1, 23, 59), datetime(2025, 3, 2, 0, 0), datetime(2025, 3, 3, 12, 0)]
    for log_row, day in zip(db.session.scalars(select(SyncLog).order_by(SyncLog.id)), days):
        log_row.created_at = day
    db.session.commit()

    def ids(query):
        return re.findall(r'<tr id="log-\d+"', get_page("/apps/stripe?" + query))

    assert len(ids("from=2025-03-02")) == 2 and len(ids("to=2025-03-02")) == 2
    assert len(ids("from=2025-03-02&to=2025-03-02")) == 1 and len(ids("from=nonsense")) == 3
    page = get_page("/apps/stripe?from=2025-03-02&to=2025-03-02")
    assert '<label class="inline-label" for="filter-from">From</label>' in page and 'value="2025-03-02"' in page
    assert '<label class="inline-label" for="filter-to">To</label>' in page
    assert "from=2025-03-02&amp;to=2025-03-02" in re.search(r'id="log-poller" hx-get="([^"]+)"', page).group(1)


def test_the_csv_export_streams_every_matching_row_safely(app, db, auth_client, connect_resource, post_event,
                                                          run_worker):
    customers = connect_resource("customer")
    post_event(customers, event_bytes("customer.created", object__description="Only-in-the-payload 7Q"))
    run_worker()
    ada_row = db.session.scalars(select(SyncLog)).one()
    assert "Only-in-the-payload 7Q" in db.session.get(StripeEvent, ada_row.event_row_id).payload
    now, res = utcnow(), dict(account_id=customers.account_id, resource_id=customers.id)
    db.session.add_all([SyncLog(**res, event_type="customer.updated", stripe_event_id=f"evt_bulk{i:04d}",
                                outcome="ignored", reason=f"bulk {i}", created_at=now) for i in range(1200)])
    db.session.add(SyncLog(**res, event_type="+SUM(A1)", stripe_event_id="=HYPERLINK(\"http://evil\")",
                           outcome="skipped", reason="@cmd|' /C calc'!A0", created_at=now))
    db.session.add(SyncLog(**res, event_type="customer.updated", stripe_event_id="evt_minus", outcome="skipped",
                           reason="-2+3", created_at=now))
    db.session.commit()

    resp = auth_client.raw.get("/apps/stripe/log/export.csv?outcome=ignored")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="stripe-sync-log-')
    chunks = [c.decode() for c in resp.response]
    assert len(chunks) == 1 + 3  # the header, then 1,200 rows read and sent 500 at a time
    rows = list(csv.reader(io.StringIO("".join(chunks).lstrip("\ufeff"))))
    assert rows[0] == ["Time (UTC)", "Resource", "Event type", "Stripe event id", "Contact email", "Outcome", "Reason"]
    assert len(rows) == 1 + 1200 and rows[1][3] == "evt_bulk1199" and rows[-1][3] == "evt_bulk0000"  # all, newest first
    assert {r[5] for r in rows[1:]} == {"ignored"}

    everything = auth_client.get("/apps/stripe/log/export.csv?q=ada").get_data(as_text=True)
    [ada] = list(csv.reader(io.StringIO(everything.lstrip("\ufeff"))))[1:]
    assert ada[1:] == ["Customer", "customer.created", ada_row.stripe_event_id, "ada@example.com", "created",
                       ada_row.reason]
    assert "Only-in-the-payload" not in everything and "livemode" not in everything  # never the payload

    hostile = list(csv.reader(io.StringIO(auth_client.get("/apps/stripe/log/export.csv?outcome=skipped")
                                          .get_data(as_text=True).lstrip("\ufeff"))))[1:]
    assert hostile[0][2:4] == ["customer.updated", "evt_minus"] and hostile[0][6] == "'-2+3"
    assert hostile[1][2] == "'+SUM(A1)" and hostile[1][3] == "'=HYPERLINK(\"http://evil\")"
    assert hostile[1][6] == "'@cmd|' /C calc'!A0"
