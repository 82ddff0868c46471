"""Refused Stripe deliveries are visible: each is answered exactly as before and leaves one "rejected"
sync-log row saying why in plain words (never the body or the signature) and a count on its resource,
with at most one row per resource (or unknown URL) and reason per minute, so garbage cannot fill the log."""
import json
import secrets
import sqlite3
import threading
import time

import pytest
from sqlalchemy import func, select

from tests.helpers import count, load_event, sign
from webapp.stripe_sync.models import ResourceCounter, StripeEvent, StripeResource, SyncLog
from webapp.webhooks import rejections

MARKER = "zebra-quartz-4417"  # in every body sent here: it must never reach a log row


def marked_event(**changes) -> bytes:
    """A real charge event carrying MARKER in a field and in its id."""
    event = load_event("charge.succeeded")
    event["id"] = f"evt_{MARKER}"
    event["data"]["object"]["description"] = MARKER
    event.update(changes)
    return json.dumps(event).encode()


def rejected_rows(db) -> list[SyncLog]:
    """The rejected rows, oldest first."""
    return list(db.session.scalars(select(SyncLog).where(SyncLog.outcome == "rejected").order_by(SyncLog.id)))


def rejected_count(db, resource_id) -> int:
    """The resource's "rejected" counter, summed over its shards."""
    return db.session.scalar(select(func.coalesce(func.sum(ResourceCounter.count), 0))
                             .where(ResourceCounter.resource_id == resource_id,
                                    ResourceCounter.outcome == "rejected"))


def assert_nothing_sent_is_in(row: SyncLog, *secret_bits: str) -> None:
    """Neither the body nor the signature (nor the whole token) appears anywhere in the row."""
    text = " ".join(str(getattr(row, c.key)) for c in SyncLog.__table__.columns)
    assert MARKER not in text
    for bit in secret_bits:
        assert bit not in text


def bad_signature(resource, post_event, db):
    return post_event(resource, marked_event(), secret="whsec_rolled_in_stripe")


def stale_timestamp(resource, post_event, db):
    return post_event(resource, marked_event(), timestamp=int(time.time()) - 301)


def not_json(resource, post_event, db):
    return post_event(resource, f"<html>{MARKER}</html>".encode())


def not_utf8(resource, post_event, db):
    return post_event(resource, MARKER.encode() + b"\xff\xfe")


def no_signature_header(resource, post_event, db):
    return post_event(resource, marked_event(), signature="")


def disconnected(resource, post_event, db):
    db.session.get(StripeResource, resource.id).status = "disconnected"
    db.session.commit()
    return post_event(resource, marked_event())


CASES = {
    bad_signature: (400, "signature verification failed: signature does not match",
                    "Bad signature: the signing secret may have been rolled in Stripe, or a proxy changed the body"),
    stale_timestamp: (400, "signature verification failed: timestamp outside the tolerance zone",
                      "Timestamp too old (over 5 minutes): a replay, or this server's clock is off"),
    not_json: (400, "not a Stripe event: body is not JSON", "Not a Stripe event: body is not JSON"),
    not_utf8: (400, "body is not UTF-8", "Not UTF-8: the body is not a Stripe event, or a proxy changed it"),
    no_signature_header: (400, "signature verification failed: missing Stripe-Signature header",
                          "Missing Stripe-Signature header: the request is not from Stripe, or a proxy dropped "
                          "the header"),
    disconnected: (410, "this resource is disconnected",
                   "Resource disconnected: Stripe still sends to its URL; delete that endpoint in Stripe or "
                   "reconnect the resource"),
}


@pytest.mark.parametrize("send", list(CASES), ids=lambda f: f.__name__)
def test_a_refused_delivery_is_answered_as_before_and_leaves_one_rejected_row(send, connect_resource, post_event,
                                                                             db):
    resource = connect_resource("charge")
    status, error, reason = CASES[send]
    resp = send(resource, post_event, db)
    assert (resp.status_code, resp.get_json()) == (status, {"error": error})
    assert count(db, StripeEvent) == 0
    [row] = rejected_rows(db)
    assert (row.outcome, row.event_type, row.reason) == ("rejected", "rejected delivery", reason)
    assert (row.resource_id, row.account_id) == (resource.id, resource.account_id)
    assert (row.stripe_event_id, row.event_row_id, row.contact_id, row.detail) == (None, None, None, None)
    assert (row.attempt, row.duration_ms, row.historical) == (0, 0, False)
    assert_nothing_sent_is_in(row, resource.token, "v1=")
    assert rejected_count(db, resource.id) == 1
    assert count(db, SyncLog) == 1  # nothing else was logged


def test_an_unknown_webhook_url_is_a_404_and_a_row_with_only_a_token_prefix(app, connect_resource, db):
    resource = connect_resource("charge")
    token = "Zq9x" + secrets.token_urlsafe(32)
    body = marked_event()
    resp = app.test_client().post(f"/webhooks/stripe/{token}", data=body,
                                  headers={"Stripe-Signature": sign(body, resource.secrets[0])})
    assert (resp.status_code, resp.get_json()) == (404, {"error": "unknown webhook endpoint"})
    [row] = rejected_rows(db)
    assert row.reason == (f"Unknown webhook URL (token {token[:6]}…): no resource has it; an endpoint left in "
                          "Stripe after a removal, or a wrong URL")
    assert (row.resource_id, row.account_id, row.stripe_event_id) == (None, None, None)
    assert_nothing_sent_is_in(row, token[:7], "v1=")
    assert count(db, StripeEvent) == 0 and count(db, ResourceCounter) == 0


def test_a_signed_body_that_is_not_a_whole_event_keeps_its_event_id(connect_resource, post_event, db):
    resource = connect_resource("charge")
    resp = post_event(resource, marked_event(type=None))
    assert (resp.status_code, resp.get_json()) == (400, {"error": "not a Stripe event: event has no type"})
    [row] = rejected_rows(db)
    assert row.reason == "Not a Stripe event: event has no type"
    assert row.stripe_event_id == f"evt_{MARKER}"  # verified by its signature, so worth showing


def test_an_unverified_body_never_gives_its_event_id(connect_resource, post_event, db):
    resource = connect_resource("charge")
    post_event(resource, marked_event(type=None), secret="whsec_forged")
    [row] = rejected_rows(db)
    assert row.stripe_event_id is None and row.reason.startswith("Bad signature")


def test_a_body_declared_too_large_is_a_413_and_a_row_for_its_resource(app, connect_resource, post_event, db):
    resource = connect_resource("customer")
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    resp = post_event(resource, marked_event(padding="x" * 20_000))
    assert (resp.status_code, resp.get_json()) == (413, {"error": "body too large"})
    [row] = rejected_rows(db)
    assert row.reason == "Body too large (over 10,000 bytes): not a Stripe event"
    assert row.resource_id == resource.id and rejected_count(db, resource.id) == 1
    assert count(db, StripeEvent) == 0


def test_each_reason_has_its_own_row_and_the_counter_adds_up(connect_resource, post_event, db):
    resource = connect_resource("charge")
    assert bad_signature(resource, post_event, db).status_code == 400
    assert not_json(resource, post_event, db).status_code == 400
    assert stale_timestamp(resource, post_event, db).status_code == 400
    assert [r.reason.split(":")[0] for r in rejected_rows(db)] == ["Bad signature", "Not a Stripe event",
                                                                    "Timestamp too old (over 5 minutes)"]
    assert rejected_count(db, resource.id) == 3
    assert post_event(resource, "charge.succeeded").status_code == 200  # a good one is still taken
    assert count(db, StripeEvent) == 1


def test_a_burst_of_garbage_to_random_urls_writes_at_most_two_rows(app, connect_resource, db, monkeypatch):
    connect_resource("charge")
    client = app.test_client()
    tokens = [secrets.token_urlsafe(32) for _ in range(50)]
    for token in tokens:
        resp = client.post(f"/webhooks/stripe/{token}", data=MARKER.encode() * 100,
                           headers={"Stripe-Signature": "t=1,v1=" + "0" * 64})
        assert (resp.status_code, resp.get_json()) == (404, {"error": "unknown webhook endpoint"})
    rows = rejected_rows(db)
    assert 1 <= len(rows) <= 2
    assert all(t[:7] not in r.reason for t in tokens for r in rows)
    assert MARKER not in " ".join(r.reason for r in rows)
    # Once the window has passed, the next row says how many were left out.
    monkeypatch.setattr(rejections, "RATE_SECONDS", 0.2)
    time.sleep(0.25)
    client.post(f"/webhooks/stripe/{secrets.token_urlsafe(32)}", data=b"{}")
    last = rejected_rows(db)[-1]
    assert last.reason.endswith(f"({50 - len(rows)} more like this in the last minute)"), last.reason
    assert count(db, ResourceCounter) == 0


def test_a_flood_to_one_resource_is_one_row_and_every_delivery_is_counted(connect_resource, post_event, db,
                                                                         monkeypatch):
    resource = connect_resource("charge")
    for _ in range(20):
        assert bad_signature(resource, post_event, db).status_code == 400
    assert len(rejected_rows(db)) == 1 and rejected_count(db, resource.id) == 1
    monkeypatch.setattr(rejections, "RATE_SECONDS", 0.2)
    time.sleep(0.25)
    bad_signature(resource, post_event, db)
    rows = rejected_rows(db)
    assert len(rows) == 2 and rows[1].reason.endswith("(19 more like this in the last minute)")
    assert rejected_count(db, resource.id) == 21  # the left-out ones are counted with the row that reports them


def test_a_failing_log_write_still_sends_the_refusal(connect_resource, post_event, db, monkeypatch, app_logs):
    resource = connect_resource("charge")

    def broken(conn, row, deliveries):
        raise RuntimeError("database went away")

    monkeypatch.setattr(rejections, "_insert", broken)
    resp = bad_signature(resource, post_event, db)
    assert (resp.status_code, resp.get_json()) == (400, {"error": CASES[bad_signature][1]})
    assert rejected_rows(db) == [] and rejected_count(db, resource.id) == 0
    assert "not written to the sync log" in app_logs.text and MARKER not in app_logs.text


def test_a_held_sqlite_write_lock_delays_a_refusal_at_most_a_moment(connect_resource, post_event, db):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single write lock")
    resource = connect_resource("charge")
    holder = sqlite3.connect(db.engine.url.database)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        resp = bad_signature(resource, post_event, db)
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert resp.status_code == 400
    assert rejections.WRITE_WAIT_SECONDS <= took < rejections.WRITE_WAIT_SECONDS + 2
    assert rejected_rows(db) == []  # dropped rather than holding Stripe's request


def test_rejected_rows_show_in_the_stripe_page_log_and_its_outcome_filter(connect_resource, post_event, auth_client,
                                                                          db):
    resource = connect_resource("charge")
    bad_signature(resource, post_event, db)
    assert post_event(resource, "customer.created").get_json() == {"received": True, "ignored": True}
    everything = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "does not subscribe to customer.created" in everything and "Bad signature" in everything
    page = auth_client.get("/apps/stripe?outcome=rejected").get_data(as_text=True)
    assert "Rejected" in page and "Bad signature: the signing secret may have been rolled" in page
    assert "does not subscribe" not in page and MARKER not in page


def test_the_window_is_one_row_per_key_across_threads():
    limiter = rejections.Limiter()
    admitted = []
    now = time.monotonic()
    threads = [threading.Thread(target=lambda: admitted.append(limiter.admit((7, "bad_signature"), now)))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count((0, 0.0)) == 1 and admitted.count(None) == 15
    left_out, since = limiter.admit((7, "bad_signature"), now + rejections.RATE_SECONDS + 1)
    assert (left_out, since) == (15, pytest.approx(rejections.RATE_SECONDS + 1))
    assert limiter.admit((8, "bad_signature"), now) == (0, 0.0)  # another resource has its own window


def test_reasons_follow_the_configured_tolerance(app):
    app.config["WEBHOOK_TOLERANCE"] = 90
    assert rejections.reason(rejections.TOO_OLD).startswith("Timestamp too old (over 90 seconds)")
    assert rejections.reason(rejections.UNKNOWN_URL, token="<b>ab/cdef").startswith(
        "Unknown webhook URL (token ?b?ab?…)")
