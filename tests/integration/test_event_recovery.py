"""Events webhooks never delivered are recovered from Stripe's Events API: the CRM ends as if they had been
delivered, a later redelivery changes nothing, an event in an older API version is applied from the object
retrieved at ours, a checkpoint older than Stripe keeps events says so and offers the historical sync, and
a check survives a 429 storm and a SIGKILLed worker with every event stored and applied once."""
import copy
import json
import signal
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.crm_snapshot import clear_crm, snapshot
from tests.helpers import ACCOUNT_ID, count, load_event, start_worker, worker_env
from tests.waiting import wait_for
from webapp.crm.models import Contact, RecurringPayment
from webapp.crypto import decrypt, encrypt
from webapp.stripe_sync.client import STRIPE_API_VERSION, make_client
from webapp.stripe_sync.connect import endpoints as connect_endpoints
from webapp.stripe_sync.models import Backfill, StripeAccount, StripeEvent, StripeResource, SyncLog, WebhookSecret
from webapp.stripe_sync.recovery import schedule
from webapp.timeutil import from_epoch_naive, utcnow

HOUR = 3600
DAY = 86400
KINDS = ("customer", "charge", "subscription", "invoice", "checkout_session")


@pytest.fixture
def connected(app, db, connect_resource, stripe_double, live_server):
    """Every resource connected an hour ago with a real endpoint in the double, which delivers to this app."""
    app.config.update(RECOVERY_SETTLE=0)
    stripe_double.map_webhook_host("crm.example.test", live_server.url)
    resources = {kind: connect_resource(kind, secrets=()) for kind in KINDS}
    account = db.session.scalar(select(StripeAccount))
    client = make_client(decrypt(account.secret_key_enc))
    for kind, conn in resources.items():
        res = db.session.get(StripeResource, conn.id)
        endpoint_id, secret = connect_endpoints.create_endpoint(client, kind, res.webhook_url, False)
        res.webhook_endpoint_id = endpoint_id
        res.secrets.append(WebhookSecret(secret_enc=encrypt(secret)))
        res.created_at = utcnow() - timedelta(seconds=HOUR)
        conn.secrets.append(secret)
    account.events_checkpoint = int(time.time()) - HOUR
    db.session.commit()
    return account.id, resources


def _obj(fixture: str, **changes) -> dict:
    """A fixture event's object with these fields changed."""
    obj = copy.deepcopy(load_event(fixture)["data"]["object"])
    obj.update(changes)
    return obj


def story(customers: int, start: int) -> list[tuple[str, dict, int]]:
    """Four events per customer (created, subscribed, bought, then one more of four kinds), in Stripe's order."""
    events = []
    for i in range(customers):
        cus, email = f"cus_Out{i:03d}", f"out{i}@example.test"
        sub = _obj("customer.subscription.created", id=f"sub_Out{i:03d}", customer=cus, status="active")
        events += [
            ("customer.created", _obj("customer.created", id=cus, email=email, name=f"Out Person {i}")),
            ("customer.subscription.created", sub),
            ("checkout.session.completed", _obj("checkout.session.completed", id=f"cs_test_Out{i:03d}", customer=cus,
                                                payment_status="paid", payment_intent=f"pi_Out{i:03d}",
                                                amount_total=1000 + i, customer_details={"email": email})),
        ]
        last = i % 4
        if last == 0:
            events.append(("charge.succeeded", _obj("charge.succeeded", id=f"ch_Out{i:03d}", customer=cus,
                                                    payment_intent=f"pi_OutC{i:03d}",
                                                    billing_details={"email": email, "name": f"Out Person {i}"})))
        elif last == 1:
            events.append(("customer.subscription.updated", {**copy.deepcopy(sub), "status": "past_due"}))
        elif last == 2:
            events.append(("invoice.payment_succeeded", _obj("invoice.payment_succeeded", id=f"in_Out{i:03d}",
                                                             customer=cus, customer_email=email,
                                                             customer_name=f"Out Person {i}")))
        else:
            events.append(("customer.updated", _obj("customer.created", id=cus, email=email,
                                                    name=f"Renamed Person {i}")))
    return [(t, o, start + n) for n, (t, o) in enumerate(events)]


def emit_all(stripe_double, events) -> list[str]:
    """Let the events happen in the double (delivered unless deliveries are dropped)."""
    return [stripe_double.emit(ACCOUNT_ID, t, o, created=c)["id"] for t, o, c in events]


def check_now(run_worker, account_id) -> None:
    """What "Check for missed events" does, run to the end by a real worker."""
    assert schedule.request_check(account_id)
    run_worker()


def test_an_outage_is_recovered_as_if_every_event_had_been_delivered(app, db, connected, stripe_double, run_worker,
                                                                     auth_client):
    account_id, resources = connected
    stripe_double.drop_deliveries(True)
    ids = emit_all(stripe_double, story(50, int(time.time()) - 1800))
    stripe_double.drop_deliveries(False)
    assert len(ids) == 200 and sum(1 for d in stripe_double.deliveries if d["status"] is None) == 200
    assert count(db, StripeEvent) == 0

    # What uninterrupted delivery gives: each event delivered once, in order.
    for event_id in ids:
        assert [status for _ep, status in stripe_double.redeliver(ACCOUNT_ID, event_id)] == [200]
    run_worker()
    delivered = snapshot(db)
    assert len(delivered["contacts"]) == 50 and len(delivered["recurring"]) == 50 and len(delivered["orders"]) == 50
    assert delivered["events"] == 200
    assert sum(1 for r in delivered["recurring"] if r[2] == "PAYMENT_FAILED") == 13

    clear_crm(db)
    check_now(run_worker, account_id)
    recovered = snapshot(db)
    assert recovered == delivered
    assert db.session.scalar(select(func.count()).select_from(SyncLog).where(SyncLog.recovered.is_(True))) == 200
    account = db.session.get(StripeAccount, account_id)
    assert account.events_last_recovered == 200 and account.events_error is None
    assert account.events_checkpoint >= int(time.time()) - 5  # moved past everything stored
    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "Recovered from Stripe: not delivered by webhook" in page
    assert "200</strong> recovered" in page

    # Stripe's late retries of some of the same events: acknowledged as duplicates, nothing changes.
    for event_id in ids[::7]:
        assert [status for _ep, status in stripe_double.redeliver(ACCOUNT_ID, event_id)] == [200]
    run_worker()
    check_now(run_worker, account_id)  # and a second check finds nothing new
    assert snapshot(db) == recovered
    assert db.session.get(StripeAccount, account_id).events_last_recovered == 0


def test_an_event_in_an_older_api_version_is_applied_from_the_object_at_ours(app, db, connected, stripe_double,
                                                                              run_worker):
    account_id, _resources = connected
    sub = _obj("customer.subscription.created", id="sub_OldShape", customer="cus_Visible1", status="active")
    period_end = sub["items"]["data"][0]["current_period_end"]
    stripe_double.drop_deliveries(True)
    event = stripe_double.emit(ACCOUNT_ID, "customer.subscription.created", sub, api_version="2024-06-20")
    stripe_double.drop_deliveries(False)
    # As /v1/events renders it: the billing period on the subscription, none on its items.
    shape = event["data"]["object"]
    assert event["api_version"] == "2024-06-20" and shape["current_period_end"] == period_end
    assert "current_period_end" not in shape["items"]["data"][0]

    check_now(run_worker, account_id)
    payment = db.session.scalar(select(RecurringPayment).where(RecurringPayment.external_id == "sub_OldShape"))
    assert payment is not None and payment.status == "ACTIVE"
    assert payment.current_period_end == from_epoch_naive(period_end)  # read from the retrieved object's items
    assert any(r.path == "/v1/subscriptions/sub_OldShape" for r in stripe_double.requests)
    stored = json.loads(db.session.scalar(select(StripeEvent.payload)))
    assert (stored["id"], stored["type"], stored["created"]) == (event["id"], event["type"], event["created"])
    assert stored["api_version"] == "2024-06-20" and stored["applied_object_version"] == STRIPE_API_VERSION


def test_a_checkpoint_older_than_stripe_keeps_events_offers_the_historical_sync(app, db, connected, stripe_double,
                                                                                 run_worker, auth_client):
    account_id, resources = connected
    account = db.session.get(StripeAccount, account_id)
    account.events_checkpoint = int(time.time()) - 40 * DAY
    for res in db.session.scalars(select(StripeResource)):
        res.created_at = utcnow() - timedelta(days=41)
    db.session.commit()
    stripe_double.drop_deliveries(True)
    emit_all(stripe_double, story(2, int(time.time()) - 600))
    stripe_double.drop_deliveries(False)

    check_now(run_worker, account_id)
    assert count(db, StripeEvent) == 8  # what Stripe still has is recovered
    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "Recovery cannot reach that far back" in page and "Stripe keeps events for 30 days" in page
    assert "Run historical sync" in page

    resp = auth_client.post(f"/apps/stripe/accounts/{account_id}/history")
    assert resp.status_code == 200 and "Historical sync started for 5 resource(s)" in resp.get_data(as_text=True)
    assert count(db, Backfill) == 5
    assert db.session.get(StripeAccount, account_id).events_gap_from is None
    assert "Recovery cannot reach that far back" not in auth_client.get("/apps/stripe").get_data(as_text=True)


def test_a_429_storm_and_a_killed_worker_end_with_every_event_once(app, db, connected, stripe_double, redis_server):
    account_id, _resources = connected
    stripe_double.drop_deliveries(True)
    start = int(time.time()) - 1800
    customers = [("customer.created", _obj("customer.created", id=f"cus_Storm{i:04d}", email=f"storm{i}@example.test",
                                            name=f"Storm {i}"), start + i // 2) for i in range(1200)]
    stripe_double.emit_many(ACCOUNT_ID, [(t, o, {"created": c}) for t, o, c in customers])
    stripe_double.drop_deliveries(False)
    stripe_double.set_latency(0.3)  # Stripe's usual answer time
    stripe_double.set_rate_limit(None, list_per_second=3)  # /v1/events answers 429 above 3 a second
    stripe_double.fail_next(4, 429, path_prefix="/v1/events")
    env = worker_env(app, redis_server.url, stripe_double, RECOVERY_SETTLE="0", STRIPE_BUDGET_LIST="25",
                     BACKFILL_BACKOFF_BASE="0.2", EVENT_SWEEP_INTERVAL="1", EVENT_SWEEP_GRACE="2")
    db.session.remove()

    def stored():
        n = count(db, StripeEvent)
        db.session.rollback()
        return n

    first = start_worker(env, burst=False, sweep=True, recovery=True)  # a starting worker checks at once
    try:
        assert wait_for(lambda: stored() >= 300, timeout=60), "the first worker recovered nothing"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert stored() < 1200
    second = start_worker(env, burst=False, sweep=True, recovery=True)
    try:
        def all_applied():
            done = db.session.scalar(select(func.count()).select_from(StripeEvent)
                                     .where(StripeEvent.status == "processed"))
            db.session.rollback()
            return done == 1200
        assert wait_for(all_applied, timeout=120), "recovery did not finish after the restart"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    assert stripe_double.stats("/v1/events")["rate_limited"] >= 4
    assert count(db, StripeEvent) == 1200 and count(db, Contact) == 1200
    per_event = db.session.execute(select(SyncLog.stripe_event_id, func.count()).where(SyncLog.outcome != "failed")
                                   .group_by(SyncLog.stripe_event_id)).all()
    assert len(per_event) == 1200 and {n for _id, n in per_event} == {1}


def test_an_endpoint_pointing_elsewhere_is_flagged_and_pointed_back(app, db, connected, stripe_double, run_worker,
                                                                    auth_client):
    account_id, resources = connected
    res = db.session.get(StripeResource, resources["charge"].id)
    client = make_client(decrypt(db.session.get(StripeAccount, account_id).secret_key_enc))
    client.v1.webhook_endpoints.update(res.webhook_endpoint_id,
                                       params={"url": "https://old-host.example.test/webhooks/stripe/" + res.token})
    check_now(run_worker, account_id)
    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "https://old-host.example.test/webhooks/stripe/" in page and "not this app's address" in page
    assert page.count(">Update URL</button>") == 1  # only the charge resource's endpoint points elsewhere

    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/endpoint/url")
    assert resp.status_code == 200 and "Stripe now sends this resource&#39;s events here." in resp.get_data(as_text=True)
    [endpoint] = [e for e in stripe_double.endpoints(ACCOUNT_ID) if e["id"] == res.webhook_endpoint_id]
    assert endpoint["url"] == "https://crm.example.test/webhooks/stripe/" + res.token
    assert "Update URL" not in auth_client.get("/apps/stripe").get_data(as_text=True)


def test_repairs_stripe_refuses_say_why_and_change_nothing(app, db, connected, stripe_double, auth_client):
    account_id, resources = connected
    res = db.session.get(StripeResource, resources["customer"].id)
    stripe_double.delete_endpoint(ACCOUNT_ID, res.webhook_endpoint_id)
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/endpoint/reenable")
    assert resp.status_code == 409
    assert "no longer exists in Stripe. Use “Recreate endpoint”" in resp.get_data(as_text=True)
    assert "Recreate endpoint</button>" in resp.get_data(as_text=True)
    app.config["PUBLIC_BASE_URL"] = "http://localhost:5000"
    token = res.token
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/endpoint/recreate")
    assert resp.status_code == 409 and "not a public address" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(StripeResource, res.id).token == token  # nothing stored changed
    assert auth_client.post("/apps/stripe/resources/99999/endpoint/recreate").status_code == 404
