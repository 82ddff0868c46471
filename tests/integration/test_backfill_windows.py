"""The historical import in time windows, read by several worker processes at once: the same CRM data as
one cursor read sequentially, records bunched in one second all imported, and one request budget that
holds with two imports and webhooks sharing it."""
import signal

from rq.registry import FinishedJobRegistry
from sqlalchemy import func, select

from tests.crm_snapshot import clear_crm, snapshot
from tests.helpers import ACCOUNT_ID, backfill, count, customer_events, start_import, start_worker, worker_env
from tests.waiting import wait_for
from webapp.crm.models import Contact
from webapp.redis_queue import get_queue
from webapp.stripe_sync.models import Backfill, BackfillWindow, StripeEvent

# What a worker process and the in-process worker both use: no request budget (these tests are about
# windows, not pacing) and small windows, so a few thousand records make many.
WINDOWED = dict(BACKFILL_SPLIT_AFTER_PAGES=2, BACKFILL_WINDOW_PAGES=2, BACKFILL_WINDOWS_PER_LANE=3)
SEQUENTIAL = dict(BACKFILL_SPLIT_AFTER_PAGES=10**9, BACKFILL_WINDOWS_PER_LANE=1)


def run_workers(app, redis_server, stripe_double, n, done, extra=None, timeout=120):
    """n worker.py processes (not burst: lanes are queued while the import runs) until `done()`."""
    env = worker_env(app, redis_server.url, stripe_double, **{k: str(v) for k, v in (extra or {}).items()})
    workers = [start_worker(env, burst=False) for _ in range(n)]
    try:
        assert wait_for(done, timeout=timeout), "the imports did not finish"
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(20)
            except Exception:  # noqa: BLE001 - a worker that will not stop warmly is killed
                w.kill()
                w.wait(10)


def finished(db, *ids):
    """A probe for wait_for: every import ended."""
    def probe():
        states = db.session.scalars(select(Backfill.state).where(Backfill.id.in_(ids))).all()
        db.session.rollback()
        return all(s in ("finished", "failed", "cancelled") for s in states)
    return probe


def test_a_windowed_import_with_three_workers_equals_a_sequential_one(app, db, connect_resource, stripe_double,
                                                                      redis_server, run_worker):
    app.config.update(STRIPE_BUDGET_TEST=0, **SEQUENTIAL)
    stripe_double.generate_customers(ACCOUNT_ID, 2500, start_created=1_700_000_000)
    stripe_double.generate_charges(ACCOUNT_ID, 700, start_created=1_710_000_000)
    customers, charges = connect_resource("customer"), connect_resource("charge")

    ids = start_import(db, customers), start_import(db, charges)
    run_worker()
    assert [backfill(db, i).state for i in ids] == ["finished", "finished"]
    assert count(db, BackfillWindow) == 2  # one window each: read with one cursor, page after page
    sequential = snapshot(db)
    assert len(sequential["contacts"]) == 2500 + 700 + 2 and sequential["events"] == 2502 + 700 + 700
    assert len(sequential["tags"]) == 2 * 3202 + 700  # customer.created and .updated for each; charge.succeeded

    clear_crm(db)
    app.config.update(**WINDOWED)
    ids = start_import(db, customers), start_import(db, charges)
    db.session.remove()
    run_workers(app, redis_server, stripe_double, 3, finished(db, *ids), extra=dict(STRIPE_BUDGET_TEST=0, **WINDOWED))

    assert [backfill(db, i).state for i in ids] == ["finished", "finished"]
    windows = {i: db.session.scalar(select(func.count()).select_from(BackfillWindow)
                                    .where(BackfillWindow.backfill_id == i)) for i in ids}
    assert windows[ids[0]] > 5 and windows[ids[1]] > 1, windows
    lanes = {job_id.split("-")[3] for job_id in FinishedJobRegistry(queue=get_queue()).get_job_ids()
             if job_id.startswith(f"stripe-backfill-{ids[0]}-")}
    assert len(lanes) >= 2, lanes  # read by more than one lane at once
    assert snapshot(db) == sequential


def test_records_bunched_in_one_second_are_all_imported(app, db, fast, connect_resource, stripe_double, run_worker):
    app.config.update(BACKFILL_SPLIT_AFTER_PAGES=1, BACKFILL_WINDOW_PAGES=1)
    stripe_double.generate_customers(ACCOUNT_ID, 400, start_created=1_700_000_000)
    for i in range(350):  # 350 customers (three and a half pages) created in one and the same second
        stripe_double.add_customer(ACCOUNT_ID, id=f"cus_Bunch{i:04d}", email=f"bunch{i}@example.test",
                                   name=f"Bunch {i}", created=1_705_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported) == ("finished", 400 + 350 + 2)
    bunch = db.session.scalar(select(func.count()).select_from(Contact).where(Contact.email_lower.like("bunch%")))
    assert bunch == 350
    one_second = db.session.scalars(select(BackfillWindow).where(
        BackfillWindow.backfill_id == backfill_id, BackfillWindow.lo <= 1_705_000_000,
        BackfillWindow.hi > 1_705_000_000)).all()
    assert len(one_second) == 1 and one_second[0].records >= 350  # one window, paged through by its cursor
    assert count(db, StripeEvent) == 752 and bf.passed_over == 0


def test_one_budget_holds_for_two_imports_and_webhooks_on_three_workers(app, db, connect_resource, stripe_double,
                                                                       redis_server, post_event):
    budget = dict(STRIPE_BUDGET_TEST=10, STRIPE_BUDGET_LIST=6, BACKFILL_BUDGET_SHARE=0.75, STRIPE_BUDGET_BURST=0.1,
                  **WINDOWED)
    app.config.update(**budget)
    stripe_double.set_rate_limit(12, list_per_second=8)  # Stripe's limits, a little above ours
    stripe_double.generate_customers(ACCOUNT_ID, 2000, start_created=1_700_000_000)
    stripe_double.generate_charges(ACCOUNT_ID, 400, start_created=1_710_000_000)
    customers, charges = connect_resource("customer"), connect_resource("charge")
    ids = start_import(db, customers), start_import(db, charges)
    db.session.remove()

    seen_during_import = []

    def webhooks_arrive_while_importing():
        """Post customer events once the import is under way; note whether their contacts showed up
        while the imports still ran."""
        if not seen_during_import:
            if not db.session.scalar(select(func.sum(Backfill.pages))):
                db.session.rollback()
                return False
            for payload in customer_events(20, name="customer.created"):
                assert post_event(customers, payload).status_code == 200
            seen_during_import.append(None)
        people = db.session.scalar(select(func.count()).select_from(Contact)
                                   .where(Contact.email_lower.like("p%@example.test")))
        running = db.session.scalar(select(func.count()).select_from(Backfill)
                                    .where(Backfill.state.in_(("queued", "running", "paused"))))
        db.session.rollback()
        if people == 10 and len(seen_during_import) == 1:
            seen_during_import.append(running)
        return finished(db, *ids)() and len(seen_during_import) == 2

    run_workers(app, redis_server, stripe_double, 3, webhooks_arrive_while_importing, extra=budget, timeout=180)

    assert [backfill(db, i).state for i in ids] == ["finished", "finished"]
    assert seen_during_import[1] >= 1, "the webhooks' contacts appeared only after the imports"
    stats = stripe_double.stats()
    # The double, counting every request by its arrival, never saw more in any one second than its
    # limits (the account's 12, a list's 8), so Stripe never had to say 429…
    assert stats["rate_limited"] == 0 and stats["max_per_second"] <= 12, stats
    assert stripe_double.max_per_second("/v1/customers") <= 8
    assert stripe_double.max_per_second("/v1/charges") <= 8
    # …and on average the workers kept to our budget (10/s for the account, 6/s per list). A single
    # second may hold one or two more: three workers and the tests on two cores wake threads late.
    times = sorted(r.at for r in stripe_double.requests if r.at is not None)
    assert (len(times) - 1) / (times[-1] - times[0]) <= 10, stats
    for path in ("/v1/customers", "/v1/charges"):
        listed = sorted(r.at for r in stripe_double.requests if r.path == path)
        assert (len(listed) - 1) / (listed[-1] - listed[0]) <= 6 * 0.95 + 0.1
    assert count(db, Contact) == 2000 + 400 + 2 + 10
