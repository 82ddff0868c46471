"""Historical sync under pressure: 429 storms, the rate limiter, cancel and resume, removal, lost jobs."""
from datetime import timedelta

from flask import g
from rq import SimpleWorker
from sqlalchemy import create_engine, func, select, text, update

from tests.helpers import ACCOUNT_ID, backfill, count, start_import
from webapp.crm.models import Contact
from webapp.redis_queue import get_queue, get_redis
from webapp.stripe_sync.history import lane as backfill_module
from webapp.stripe_sync.models import Backfill, BackfillLane, StripeEvent, StripeResource, SyncLog
from webapp.stripe_sync.queue.sweep import sweep_unqueued
from webapp.timeutil import utcnow


def run_jobs(app, db, n):
    """A real worker that stops after n jobs, to stand between two slices of an import."""
    with app.app_context():
        SimpleWorker([get_queue()], connection=get_redis()).work(burst=True, max_jobs=n, with_scheduler=False)
    db.session.expire_all()


def list_requests(double):
    return [r for r in double.requests if r.method == "GET" and r.path == "/v1/customers"]


def import_rows(db):
    """The log's rows about imports: one per import, its totals updated as each page is saved."""
    return list(db.session.scalars(select(SyncLog.reason).where(SyncLog.event_row_id.is_(None)).order_by(SyncLog.id)))


def post(auth_client, url):
    g.pop("_login_user", None)  # the worker ended the session that held the cached user
    return auth_client.post(url, htmx=True)


def test_429_storm_pauses_backs_off_and_imports_everything_once(app, db, fast, connect_resource, stripe_double,
                                                                 run_worker, monkeypatch):
    stripe_double.generate_customers(ACCOUNT_ID, 250, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    engine = create_engine(app.config["DATABASE_URL"])
    seen = []
    wait = backfill_module._ImportWaiter.wait

    def watching(self, delay):
        """What the page shows while the job waits: read from another connection, as the web process would."""
        with engine.connect() as conn:
            seen.append(conn.execute(text("SELECT state FROM stripe_backfills WHERE id = :i"), {"i": backfill_id})
                        .scalar())
        return wait(self, delay)

    monkeypatch.setattr(backfill_module._ImportWaiter, "wait", watching)
    stripe_double.fail_next(3, 429, path_prefix="/v1/customers")  # the first page, three times
    run_worker()
    engine.dispose()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.rate_limited, bf.pages, bf.paused_until) == ("finished", 252, 3, 3, None)
    assert seen == ["paused", "paused", "paused"]
    assert len(list_requests(stripe_double)) == 3 + 3
    assert import_rows(db) == ["Historical import: 252 imported, 0 skipped, 0 failed"]
    assert count(db, Contact) == 252 and count(db, StripeEvent) == 252


def test_storm_mid_import_resumes_at_the_same_page(app, db, fast, connect_resource, stripe_double, run_worker):
    app.config["BACKFILL_SLICE_SECONDS"] = 0
    stripe_double.generate_customers(ACCOUNT_ID, 250, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_jobs(app, db, 1)
    stripe_double.clear_requests()
    stripe_double.fail_next(5, 429, path_prefix="/v1/customers")
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.rate_limited) == ("finished", 252, 5)
    after = [r.params.get("starting_after") for r in list_requests(stripe_double)]
    assert len(after) == 5 + 2 and len(set(after[:6])) == 1  # the storm hit page 2; it was asked for again
    assert bf.pages == 3 and count(db, StripeEvent) == 252  # each page saved once
    assert import_rows(db) == ["Historical import: 252 imported, 0 skipped, 0 failed"]


def test_a_storm_longer_than_the_retries_fails_and_resume_continues(app, db, fast, connect_resource, stripe_double,
                                                                    run_worker, auth_client):
    app.config.update(BACKFILL_RATE_LIMIT_RETRIES=2, BACKFILL_SLICE_SECONDS=0)
    stripe_double.generate_customers(ACCOUNT_ID, 150, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_jobs(app, db, 1)
    stripe_double.fail_next(3, 429, path_prefix="/v1/customers")
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.pages) == ("failed", 100, 1)
    assert bf.error == ("Stripe answered 3 requests in a row with 429 (rate limited). "
                        "Resume keeps the 1 page saved and continues from there.")
    html = auth_client.get(f"/apps/stripe/backfills/{backfill_id}").get_data(as_text=True)
    assert "failed" in html and "Resume" in html and "hx-trigger" not in html

    resp = post(auth_client, f"/apps/stripe/backfills/{backfill_id}/resume")
    assert resp.status_code == 200 and "queued" in resp.get_data(as_text=True)
    run_worker()
    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.pages, bf.error) == ("finished", 152, 2, None)
    assert import_rows(db) == ["Historical import: 152 imported, 0 skipped, 0 failed"]  # resumed: the same row


def test_the_limiter_keeps_under_stripes_rate(app, db, connect_resource, stripe_double, run_worker):
    stripe_double.set_rate_limit(10)  # Stripe's bucket for this test: 10 requests a second
    app.config.update(STRIPE_BUDGET_TEST=8)
    stripe_double.generate_customers(ACCOUNT_ID, 600, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.rate_limited) == ("finished", 602, 0)
    assert {r.status for r in list_requests(stripe_double)} == {200}  # never a 429, so never asked twice


def test_cancel_stops_before_the_next_page_and_resume_finishes(app, db, fast, connect_resource, stripe_double,
                                                              run_worker, auth_client):
    app.config["BACKFILL_SLICE_SECONDS"] = 0
    stripe_double.generate_customers(ACCOUNT_ID, 350, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_jobs(app, db, 1)  # page 1
    assert backfill(db, backfill_id).imported == 100

    resp = post(auth_client, f"/apps/stripe/backfills/{backfill_id}/cancel")
    assert resp.status_code == 200
    assert "Cancelling" in resp.get_data(as_text=True)
    stripe_double.clear_requests()
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.pages) == ("cancelled", 100, 1)
    assert list_requests(stripe_double) == []  # stopped before asking for page 2
    html = auth_client.get(f"/apps/stripe/backfills/{backfill_id}").get_data(as_text=True)
    assert "cancelled" in html and "hx-trigger" not in html and "Resume" in html

    post(auth_client, f"/apps/stripe/backfills/{backfill_id}/resume")
    run_worker()
    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported) == ("finished", 352)
    assert bf.pages == 4 and count(db, StripeEvent) == 352  # went on from page 2, none saved twice
    assert import_rows(db) == ["Historical import: 352 imported, 0 skipped, 0 failed"]  # resumed: the same row
    assert count(db, Contact) == 352


def test_cancel_while_queued_ends_it_at_once(app, db, fast, connect_resource, stripe_double, run_worker,
                                            auth_client):
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    resp = post(auth_client, f"/apps/stripe/backfills/{backfill_id}/cancel")
    html = resp.get_data(as_text=True)
    assert "cancelled" in html and "hx-trigger" not in html
    run_worker()
    assert backfill(db, backfill_id).state == "cancelled"
    assert list_requests(stripe_double) == [] and count(db, Contact) == 0


def test_removing_the_resource_stops_its_import(app, db, fast, connect_resource, stripe_double, run_worker):
    app.config["BACKFILL_SLICE_SECONDS"] = 0
    stripe_double.generate_customers(ACCOUNT_ID, 250, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_jobs(app, db, 1)
    db.session.execute(update(StripeResource).where(StripeResource.id == resource.id).values(status="disconnected"))
    db.session.commit()
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported) == ("cancelled", 100)
    assert bf.error == "The resource was removed, so its import stopped."


def test_sweep_requeues_an_import_whose_job_was_lost(app, db, fast, connect_resource, stripe_double, run_worker):
    stripe_double.generate_customers(ACCOUNT_ID, 150, start_created=1_700_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    get_redis().flushdb()  # the job is gone (Redis lost it, or it was never queued)
    db.session.execute(update(Backfill).values(updated_at=utcnow() - timedelta(minutes=5)))
    db.session.execute(update(BackfillLane).values(updated_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()

    assert sweep_unqueued(0).backfills == 1
    assert sweep_unqueued(0).backfills == 0  # its new job is waiting: nothing is queued twice
    run_worker()
    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported) == ("finished", 152)
    assert db.session.scalars(select(BackfillLane.lost)).all() == [0] * 4  # a saved page clears the count


def test_sweep_gives_up_on_an_import_that_keeps_getting_lost(app, db, fast, connect_resource, run_worker):
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    get_redis().flushdb()
    db.session.execute(update(Backfill).values(state="running", updated_at=utcnow() - timedelta(minutes=5)))
    db.session.execute(update(BackfillLane).where(BackfillLane.number == 0)
                       .values(lost=5, updated_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()

    sweep_unqueued(0)
    bf = backfill(db, backfill_id)
    assert bf.state == "failed" and bf.error.startswith("The import stopped 6 times in a row without saving a page")
    assert db.session.scalar(select(func.count()).select_from(Backfill).where(Backfill.state == "running")) == 0


def test_the_fragment_while_paused_and_on_the_stripe_page(app, db, connect_resource, auth_client):
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    db.session.execute(update(Backfill).values(state="paused", imported=1234, skipped=5, failed=1, rate=812.4,
                                               pages=13, paused_until=utcnow() + timedelta(seconds=30)))
    db.session.commit()

    html = auth_client.get(f"/apps/stripe/backfills/{backfill_id}").get_data(as_text=True)
    assert "paused by rate limit" in html and 'hx-trigger="every 2s"' in html
    assert "1,234" in html and "812" in html and "records/s" in html and "13 pages saved" in html
    assert "0</strong>\n    of <strong class=\"backfill-windows-total\">1</strong> time windows read" in html
    assert "Cancel" in html
    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert f'id="backfill-{backfill_id}"' in page and "paused by rate limit" in page
    assert auth_client.get("/apps/stripe/backfills/999").status_code == 404


def test_only_the_historical_sync_type_starts_an_import(app, db, connect_resource):
    from webapp.stripe_sync.history.importer import start_if_historical

    resource = db.session.get(StripeResource, connect_resource("customer").id)
    assert resource.sync_type == "new_only" and start_if_historical(resource) is None
    resource.sync_type = "historical"
    db.session.commit()
    assert start_if_historical(resource).state == "queued"
