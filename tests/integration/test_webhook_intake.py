"""POST /webhooks/stripe/<token>: what is accepted, what is refused, and what gets stored and queued."""
import json
import time

from sqlalchemy import func, select

from tests.helpers import event_bytes, sign
from webapp.crm.models import Contact
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import pending
from webapp.stripe_sync.models import StripeEvent, StripeResource, SyncLog, WebhookSecret


def stored(db):
    return db.session.scalar(select(func.count()).select_from(StripeEvent))


def queued_jobs():
    return get_queue().count


def test_accepts_records_and_queues(connect_resource, post_event, db, app_logs):
    resource = connect_resource("charge")
    resp = post_event(resource, "charge.succeeded")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.get_json() == {"received": True}
    row = db.session.scalar(select(StripeEvent))
    raw = event_bytes("charge.succeeded").decode()
    assert (row.stripe_event_id, row.type, row.created, row.status, row.payload) == (
        "evt_3UGcRwLm3xVt9QeK2a1u4iNF", "charge.succeeded", 1789740128, "queued", raw)
    assert row.enqueued_at is not None and row.resource_id == resource.id and row.historical is False
    queue = get_queue()
    assert pending.where(queue, [row.id])[row.id][0] == "pending"
    assert queued_jobs() == 1 and queue.fetch_job(queue.job_ids[0]).func_name == "webapp.jobs.drain_events"
    assert db.session.get(StripeResource, resource.id).last_event_at is not None
    assert resource.secrets[0] not in app_logs.text and "ada@example.com" not in app_logs.text


def test_duplicate_delivery_is_acknowledged_and_processed_once(connect_resource, post_event, run_worker, db):
    resource = connect_resource("customer")
    first = post_event(resource, "customer.created")
    second = post_event(resource, "customer.created")
    assert first.status_code == second.status_code == 200
    assert second.get_json() == {"received": True, "duplicate": True}
    assert stored(db) == 1 and queued_jobs() == 1
    run_worker()
    third = post_event(resource, "customer.created")  # Stripe retrying after we already processed it
    assert third.get_json()["duplicate"] is True and queued_jobs() == 0
    run_worker()
    assert db.session.scalar(select(func.count()).select_from(SyncLog)) == 1
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 1


def test_bad_signature_is_refused_and_nothing_stored(connect_resource, post_event, db, app_logs):
    resource = connect_resource("charge")
    resp = post_event(resource, "charge.succeeded", secret="whsec_not_the_one")
    assert resp.status_code == 400 and "signature" in resp.get_json()["error"]
    tampered = event_bytes("charge.succeeded").replace(b'"amount": 2900', b'"amount": 1')
    header = sign(event_bytes("charge.succeeded"), resource.secrets[0])
    assert post_event(resource, tampered, signature=header).status_code == 400
    assert post_event(resource, "charge.succeeded", signature="").status_code == 400
    assert post_event(resource, "charge.succeeded", signature="t=abc,v9=zz").status_code == 400
    assert stored(db) == 0 and queued_jobs() == 0
    assert "rejected" in app_logs.text and "whsec_not_the_one" not in app_logs.text


def test_expired_or_future_timestamp_is_refused(connect_resource, post_event, db):
    resource = connect_resource("charge")
    old = post_event(resource, "charge.succeeded", timestamp=int(time.time()) - 301)
    assert old.status_code == 400 and "tolerance" in old.get_json()["error"]
    future = post_event(resource, "charge.succeeded", timestamp=int(time.time()) + 3600)
    assert future.status_code == 400
    assert post_event(resource, "charge.succeeded", timestamp=int(time.time()) - 290).status_code == 200
    assert stored(db) == 1


def test_unknown_token_is_404_json(app, connect_resource, db, app_logs):
    connect_resource("charge")
    payload = event_bytes("charge.succeeded")
    client = app.test_client()
    for token in ("nope", "x" * 43, "x" * 500):
        resp = client.post(f"/webhooks/stripe/{token}", data=payload,
                           headers={"Stripe-Signature": sign(payload, "whsec_test_engine_room_0001")})
        assert resp.status_code == 404 and resp.get_json() == {"error": "unknown webhook endpoint"}
    assert stored(db) == 0 and "unknown token" in app_logs.text


def test_body_that_is_not_an_event_is_400_and_not_stored(connect_resource, post_event, db):
    resource = connect_resource("charge")
    event = json.loads(event_bytes("charge.succeeded"))
    bodies = [b"not json", b"[1, 2]", b"{}", json.dumps({**event, "id": None}).encode(),
              json.dumps({**event, "created": "yesterday"}).encode(),
              json.dumps({**event, "data": {"object": None}}).encode(), b"\xff\xfe"]
    for body in bodies:
        resp = post_event(resource, body)
        assert resp.status_code == 400, body
    assert stored(db) == 0 and queued_jobs() == 0


def test_disconnected_resource_is_410(connect_resource, post_event, db):
    resource = connect_resource("charge")
    row = db.session.get(StripeResource, resource.id)
    row.status = "disconnected"
    db.session.commit()
    resp = post_event(resource, "charge.succeeded")
    assert resp.status_code == 410
    assert stored(db) == 0 and queued_jobs() == 0


def test_rotated_secrets_either_verifies(connect_resource, post_event, db):
    resource = connect_resource("customer", secrets=["whsec_old_one", "whsec_new_one"])
    assert post_event(resource, "customer.created", secret="whsec_old_one").status_code == 200
    assert post_event(resource, "customer.updated", secret="whsec_new_one").status_code == 200
    old = db.session.scalar(select(WebhookSecret).where(WebhookSecret.resource_id == resource.id)
                            .order_by(WebhookSecret.id))
    old.active = False  # rotation finished
    db.session.commit()
    assert post_event(resource, event_bytes("customer.created", id="evt_again"),
                      secret="whsec_old_one").status_code == 400
    assert stored(db) == 2


def test_rotation_is_seen_through_the_cache(app, connect_resource, post_event, db):
    resource = connect_resource("customer")
    app.config["WEBHOOK_CACHE_SECONDS"] = 60
    assert post_event(resource, "customer.created").status_code == 200  # caches the secret
    from webapp.crypto import encrypt

    db.session.add(WebhookSecret(resource_id=resource.id, secret_enc=encrypt("whsec_added_later")))
    db.session.commit()
    time.sleep(0.6)
    assert post_event(resource, "customer.updated", secret="whsec_added_later").status_code == 200


def test_event_the_resource_does_not_subscribe_to_is_recorded_as_ignored(connect_resource, post_event,
                                                                          run_worker, db):
    resource = connect_resource("customer")
    resp = post_event(resource, "charge.succeeded")
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "ignored": True}
    row = db.session.scalar(select(StripeEvent))
    assert row.status == "ignored" and queued_jobs() == 0
    log = db.session.scalar(select(SyncLog))
    assert (log.outcome, log.event_row_id) == ("ignored", row.id)
    assert "does not subscribe to charge.succeeded" in log.reason
    run_worker()
    assert db.session.scalar(select(func.count()).select_from(Contact)) == 0


def test_delivery_waits_for_a_held_sqlite_write_lock_then_is_recorded(app, connect_resource, post_event, db):
    """A worker's batch holds SQLite's one write lock; intake polls for it and records the event."""
    import sqlite3
    import threading

    import pytest

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock")
    resource = connect_resource("customer")
    holder = sqlite3.connect(db.engine.url.database)
    holder.execute("BEGIN IMMEDIATE")
    replies = []
    thread = threading.Thread(target=lambda: replies.append(post_event(resource, "customer.created")))
    thread.start()
    time.sleep(0.3)
    assert replies == [] and stored(db) == 0  # still waiting for the lock, not failed
    holder.rollback()
    holder.close()
    thread.join(10)
    assert replies[0].status_code == 200 and stored(db) == 1
