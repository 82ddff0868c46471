"""Signed but hostile Stripe data: JSON nested past what the parser can take is a 400 with nothing
stored, and NUL characters (which PostgreSQL text cannot hold) are dropped from every Stripe string
before it reaches a CRM row or the stored payload, on both databases."""
import json

from sqlalchemy import select

from tests.helpers import ACCOUNT_ID, backfill, count, event_bytes, load_event, start_import
from webapp.crm import service
from webapp.crm.models import Contact, Order, RecurringPayment
from webapp.stripe_sync.models import StripeEvent, SyncLog

DEEP = 100_000  # far past Python's recursion limit


def contact(db, email):
    return db.session.scalar(select(Contact).where(Contact.email_lower == email))


# --- JSON nested too deep ------------------------------------------------------------------------

def test_signed_body_nested_too_deep_is_a_400_json_answer_and_nothing_is_stored(connect_resource, post_event, db,
                                                                               app_logs):
    resource = connect_resource("customer")
    event = load_event("customer.created")
    event["data"]["object"]["metadata"] = {"deep": "__DEEP__"}
    inside_an_event = json.dumps(event).replace('"__DEEP__"', "[" * DEEP + "]" * DEEP).encode()
    for body in (b"[" * DEEP, b"[" * DEEP + b"]" * DEEP, b'{"a":' * DEEP, inside_an_event):
        resp = post_event(resource, body)  # through the fast lane, signed with the resource's secret
        assert resp.status_code == 400 and resp.mimetype == "application/json", resp.status_code
        assert "nested too deep" in resp.get_json()["error"]
    assert count(db, StripeEvent) == 0
    # Only the refusal is logged: one rejected row for the four (one per reason per minute), no sync attempt.
    assert [(r.outcome, r.reason, r.event_row_id) for r in db.session.scalars(select(SyncLog))] == [
        ("rejected", "Not a Stripe event: JSON nested too deep", None)]
    assert "nested too deep" in app_logs.text


# --- NUL characters --------------------------------------------------------------------------------

def test_nul_in_a_customer_is_dropped_and_the_event_processed(connect_resource, post_event, run_worker, db):
    plan = service.create_field("App user", "text")
    resource = connect_resource("customer", mapping=(("email", "email"), ("name", "first_name"),
                                                     ("phone", "phone"), ("metadata.app_user_id", plan.key)))
    body = event_bytes("customer.created", object__name="Nul\u0000Name", object__phone="+1 555\u0000 0100",
                       object__metadata={"app_user_id": "user\u00001815"})
    assert b"\\u0000" in body
    assert post_event(resource, body).status_code == 200
    run_worker()
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.error) == ("processed", None)
    ada = contact(db, "ada@example.com")
    assert (ada.first_name, ada.phone) == ("NulName", "+1 555 0100")
    assert service.custom_values(ada)[plan.id] == "user1815"
    # The payload kept for the log's detail view and for automations holds no NUL either.
    assert "\\u0000" not in row.payload and json.loads(row.payload)["data"]["object"]["name"] == "NulName"


def test_nul_in_an_event_id_is_dropped_before_it_is_stored(connect_resource, post_event, db):
    resource = connect_resource("customer")
    resp = post_event(resource, event_bytes("customer.created", id="evt_nul\u0000one"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert db.session.scalar(select(StripeEvent.stripe_event_id)) == "evt_nulone"


def test_nul_in_a_fetched_customer_is_dropped(connect_resource, post_event, run_worker, db, stripe_double):
    stripe_double.add_customer(ACCOUNT_ID, id="cus_NulFetched", email="fetched@example.com",
                               name="Fetched\u0000Name", metadata={"plan": "pro\u0000"})
    resource = connect_resource("subscription")
    body = event_bytes("customer.subscription.created", object__customer="cus_NulFetched")
    assert post_event(resource, body).status_code == 200
    run_worker()
    assert db.session.scalar(select(StripeEvent.status)) == "processed"
    assert contact(db, "fetched@example.com").first_name == "FetchedName"


def test_nul_in_product_names_is_dropped_from_orders_and_recurring_payments(connect_resource, post_event,
                                                                          run_worker, db):
    subscriptions = connect_resource("subscription")
    sessions = connect_resource("checkout_session")
    sub = load_event("customer.subscription.created")
    sub["data"]["object"]["items"]["data"][0]["price"]["nickname"] = "Notebook\u0000 Pro"
    paid = load_event("checkout.session.completed")
    paid["data"]["object"].update(payment_status="paid", metadata={"product_name": "Note\u0000book"},
                                  customer_details={**paid["data"]["object"]["customer_details"],
                                                    "name": "Ada\u0000 Lovelace"})
    assert post_event(subscriptions, json.dumps(sub).encode()).status_code == 200
    assert post_event(sessions, json.dumps(paid).encode()).status_code == 200
    run_worker()
    assert [e.status for e in db.session.scalars(select(StripeEvent))] == ["processed", "processed"]
    assert db.session.scalar(select(RecurringPayment.name)) == "Notebook Pro"
    assert [p["name"] for p in db.session.scalar(select(Order.products))] == ["Notebook"]
    assert all("\x00" not in log.reason for log in db.session.scalars(select(SyncLog)))


def test_nul_in_imported_history_is_dropped(app, db, fast, connect_resource, stripe_double, run_worker):
    stripe_double.add_customer(ACCOUNT_ID, id="cus_NulHistory", email="history@example.com",
                               name="Hist\u0000ory", description="from\u0000 the past", created=1_600_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    run_worker()
    assert backfill(db, backfill_id).failed == 0
    assert contact(db, "history@example.com").first_name == "History"
    row = db.session.scalar(select(StripeEvent).where(StripeEvent.stripe_event_id == "hist_customer_cus_NulHistory"))
    assert row.status == "processed" and "\\u0000" not in row.payload
