"""Faults during a burst, each ending with every event processed exactly once and nothing lost:
a worker SIGKILLed, Redis stopped and restarted during intake, PostgreSQL restarted during
processing, Stripe answering 429 and 500 for a while, SQLite busy under concurrent writers."""
import json
import os
import shlex
import signal
import subprocess
import threading

import pytest
from sqlalchemy import func, select

from tests.helpers import EVENTS_DIR, PG_URL, customer_events, start_worker, worker_env
from webapp.crm.models import Contact
from webapp.embedded_redis import RedisServer
from webapp.stripe_sync.models import StripeEvent, SyncLog
from webapp.stripe_sync.queue.sweep import sweep_unqueued
from tests.waiting import wait_for as wait_until

FAST = {"EVENT_RETRY_INTERVALS": "0,0,0,0", "STRIPE_RATE_LIMIT_BACKOFF": "0.01"}


def count(db, *where, model=StripeEvent):
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def assert_all_processed_once(db, n):
    """Every event processed, one successful sync per event, no failure left."""
    assert count(db, StripeEvent.status == "processed") == n
    per_event = db.session.execute(select(SyncLog.event_row_id, func.count()).where(
        SyncLog.outcome.in_(("created", "updated"))).group_by(SyncLog.event_row_id)).all()
    assert len(per_event) == n and all(c == 1 for _, c in per_event)
    assert count(db, StripeEvent.status == "failed") == 0



def finish(app, run_worker):
    """What the running system does next: the sweep requeues, a worker drains, until all is quiet."""
    app.config.update(EVENT_RETRY_INTERVALS=[0, 0, 0, 0], EVENT_SWEEP_GRACE=0)
    for _ in range(6):
        report = sweep_unqueued(0)
        run_worker()
        if not report.changed:
            break


def test_worker_sigkilled_mid_burst(app, db, connect_resource, post_event, run_worker, stripe_double, redis_server):
    res = connect_resource("customer")
    events = customer_events(300)
    for payload in events:
        assert post_event(res, payload).status_code == 200
    env = worker_env(app, redis_server.url, stripe_double, **FAST)
    doomed = start_worker(env, "doomed", burst=False)
    survivor = start_worker(env, "survivor")
    assert wait_until(lambda: count(db, StripeEvent.status == "processed") >= 40, timeout=60)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    survivor.wait(120)
    finish(app, run_worker)
    assert_all_processed_once(db, 300)


def test_redis_stopped_and_restarted_during_intake(app, db, connect_resource, post_event, run_worker):
    private = RedisServer().start()
    app.config["REDIS_URL"] = private.url
    app.extensions.pop("redis", None)
    try:
        res = connect_resource("customer")
        events = customer_events(120)
        for payload in events[:40]:
            assert post_event(res, payload).status_code == 200
        private.stop()
        for payload in events[40:80]:  # Redis is down: still 200, recorded for the sweep
            assert post_event(res, payload).status_code == 200
        assert count(db, StripeEvent.status == "received") == 40
        private.start()
        for payload in events[80:]:
            assert post_event(res, payload).status_code == 200
        app.extensions.pop("redis", None)
        finish(app, run_worker)
        assert_all_processed_once(db, 120)
    finally:
        private.stop()


@pytest.mark.exclusive
@pytest.mark.skipif(not PG_URL or not os.environ.get("TEST_PG_DATA"), reason="needs the throwaway PostgreSQL")
def test_postgres_restarted_during_processing(app, db, connect_resource, post_event, run_worker, stripe_double,
                                              redis_server):
    res = connect_resource("customer")
    events = customer_events(300)
    for payload in events:
        assert post_event(res, payload).status_code == 200
    db.session.remove()
    db.engine.dispose()
    worker = start_worker(worker_env(app, redis_server.url, stripe_double, **FAST), "through-restart", burst=False)
    try:
        assert wait_until(lambda: count(db, StripeEvent.status == "processed") >= 30, timeout=60)
        db.session.remove()
        db.engine.dispose()
        runas = shlex.split(os.environ.get("TEST_PG_RUNAS", ""))
        subprocess.run(runas + [os.path.join(os.environ["TEST_PG_BIN"], "pg_ctl"), "-D", os.environ["TEST_PG_DATA"],
                                "-m", "fast", "-w", "restart"], check=True, stdout=subprocess.DEVNULL)
        db.engine.dispose()
        # The worker keeps going on fresh connections; give it time, then let the sweep finish the rest.
        wait_until(lambda: count(db, StripeEvent.status == "processed") == 300, timeout=90)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    finish(app, run_worker)
    assert_all_processed_once(db, 300)


def test_stripe_answering_429_and_500_for_a_while(app, db, connect_resource, post_event, run_worker, stripe_double):
    app.config.update(EVENT_RETRY_INTERVALS=[0, 0, 0, 0, 0, 0], STRIPE_RATE_LIMIT_BACKOFF=0.01)
    res = connect_resource("subscription")
    template = json.loads((EVENTS_DIR / "customer.subscription.updated.json").read_text())
    for i in range(30):
        stripe_double.add_customer("acct_1EngineRoom", id=f"cus_sub_{i:03d}", email=f"s{i}@example.test",
                                   name=f"Sub {i}")
        ev = json.loads(json.dumps(template))
        ev["id"], ev["created"] = f"evt_sub_{i:03d}", 1_790_000_000 + i
        ev["data"]["object"].update(id=f"sub_{i:03d}", customer=f"cus_sub_{i:03d}")
        assert post_event(res, json.dumps(ev, indent=2).encode()).status_code == 200
    stripe_double.fail_next(25, status=429, path_prefix="/v1/customers")
    stripe_double.fail_next(25, status=500, path_prefix="/v1/customers")
    finish(app, run_worker)
    assert_all_processed_once(db, 30)
    assert count(db, model=Contact) == 30


def test_sqlite_busy_under_concurrent_writers(app, db, connect_resource, post_event, run_worker, stripe_double,
                                              redis_server):
    if PG_URL:
        pytest.skip("this fault is SQLite's")
    res = connect_resource("customer")
    events = customer_events(400)
    env = worker_env(app, redis_server.url, stripe_double, **FAST)
    workers = [start_worker(env, f"busy-{n}", burst=False) for n in range(3)]
    try:
        posted = []

        from tests.helpers import sign
        from webapp import create_app

        # Two apps with their own connections, as two web processes have; built here, not in the
        # threads: CPython 3.11 can fail compiling ASTs (Werkzeug's URL rules) in two threads at once.
        clients = [create_app(app.config).test_client() for _ in range(2)]

        def post_all(client, chunk):
            for payload in chunk:
                resp = client.post(res.url, data=payload, headers={"Stripe-Signature": sign(payload, res.secrets[0]),
                                                                   "Content-Type": "application/json"})
                posted.append(resp.status_code)

        threads = [threading.Thread(target=post_all, args=(clients[k], events[k::2])) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert posted.count(200) == 400, {s: posted.count(s) for s in set(posted)}
        wait_until(lambda: count(db, StripeEvent.status == "processed") == 400, timeout=120)
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            w.wait(30)
    finish(app, run_worker)
    assert_all_processed_once(db, 400)


def test_worker_dying_between_dequeue_and_start(app, db, connect_resource, post_event, run_worker):
    """RQ hands a job over through its intermediate list; a worker killed right there leaves the job
    'queued' but off the queue. The sweep spots it instead of waiting for RQ's minutes-long clean-up."""
    from webapp.redis_queue import get_queue

    res = connect_resource("customer")
    assert post_event(res, customer_events(1)[0]).status_code == 200
    queue = get_queue()
    queue.connection.lmove(queue.key, queue.intermediate_queue.key, "LEFT", "RIGHT")
    assert queue.count == 0
    run_worker()
    assert count(db, StripeEvent.status == "processed") == 0  # nobody will ever run it by itself
    finish(app, run_worker)
    assert_all_processed_once(db, 1)
    assert queue.connection.llen(queue.intermediate_queue.key) == 0
