"""Historical sync end to end: a real RQ worker pages through the Stripe double's lists into CRM data."""
import json

from sqlalchemy import select

from tests.helpers import ACCOUNT_ID, EVENTS_DIR, backfill, count, start_import
from webapp.crm.models import Contact, EcommerceCustomer, Order, RecurringPayment, TriggerFired
from webapp.stripe_sync.synclog import resource_counts
from webapp.stripe_sync.models import BackfillWindow, StripeAccount, StripeEvent, StripeResource, SyncLog

FIXTURE_KINDS = {"charge": "charges", "subscription": "subscriptions", "invoice": "invoices",
                 "checkout.session": "checkout_sessions"}


def tags_of(contact):
    return sorted(t.name for t in contact.tags)


def load_story(double):
    """Ada's objects in their latest state, as the demo seeds them."""
    events = []
    for path in EVENTS_DIR.glob("*.json"):
        event = json.loads(path.read_bytes())
        obj = event["data"]["object"]
        if obj.get("object") in FIXTURE_KINDS and obj.get("id"):
            events.append((event["created"], obj))
    for _created, obj in sorted(events, key=lambda e: e[0]):
        double.add_object(ACCOUNT_ID, FIXTURE_KINDS[obj["object"]], obj)


def test_customers_import_end_to_end(app, db, fast, connect_resource, stripe_double, run_worker):
    stripe_double.generate_customers(ACCOUNT_ID, 250, start_created=1_700_000_000)
    stripe_double.add_customer(ACCOUNT_ID, id="cus_Ip1BM6AwKptPXL", name="Charles Babbage", email=None,
                               created=1_600_000_000)
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    assert backfill(db, backfill_id).state == "queued"

    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.skipped, bf.failed, bf.pages) == ("finished", 252, 1, 0, 3)
    window = db.session.scalars(select(BackfillWindow).where(BackfillWindow.backfill_id == bf.id)).one()
    assert bf.rate and bf.finished_at and window.cursor == "cus_Ip1BM6AwKptPXL" and window.state == "done"
    assert count(db, Contact) == 252
    ada = db.session.scalar(select(Contact).where(Contact.email_lower == "ada@example.com"))
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert tags_of(ada) == ["stripe-integration", "stripe-integration-customer.created"]
    assert count(db, StripeEvent, StripeEvent.historical.is_(True)) == 253
    assert count(db, StripeEvent, StripeEvent.status == "processed") == 252
    logs = list(db.session.scalars(select(SyncLog).order_by(SyncLog.id)))
    summaries = [log for log in logs if log.event_row_id is None]
    # One row for the whole import, updated as each of its 3 pages was saved, not one row per page.
    assert [(log.event_type, log.outcome, log.reason, log.detail) for log in summaries] == [
        ("historical import", "created", "Historical import: 252 imported, 1 skipped, 0 failed", f"backfill:{bf.id}")]
    assert all(log.historical for log in logs)
    assert [(log.outcome, log.reason) for log in logs if log.event_row_id] == [("skipped", "no email")]
    assert count(db, TriggerFired) == 0  # history fires no automations by default
    resource_row = db.session.get(StripeResource, resource.id)
    account = db.session.get(StripeAccount, resource.account_id)
    assert resource_counts([account])[resource_row.id] == {"synced": 252, "skipped": 1, "failed": 0, "rejected": 0}


def test_every_kind_of_adas_story_imports_like_its_events(app, db, fast, connect_all, stripe_double, run_worker):
    load_story(stripe_double)
    resources = connect_all()
    ids = [start_import(db, resources[kind]) for kind in ("customer", "charge", "subscription", "invoice",
                                                   "checkout_session")]
    run_worker()

    states = {backfill(db, i).resource.kind: (backfill(db, i).state, backfill(db, i).imported) for i in ids}
    assert states == {"customer": ("finished", 2), "charge": ("finished", 1), "subscription": ("finished", 1),
                      "invoice": ("finished", 1), "checkout_session": ("finished", 2)}
    ada = db.session.scalar(select(Contact).where(Contact.email_lower == "ada@example.com"))
    assert tags_of(ada) == sorted([
        "stripe-integration", "stripe-integration-customer.created", "stripe-integration-charge.refunded",
        "stripe-integration-customer.subscription.created", "stripe-integration-Billing_Subscription_Events",
        "stripe-integration-invoice.payment_succeeded", "stripe-integration-checkout.session.completed"])
    [payment] = db.session.scalars(select(RecurringPayment))
    assert (payment.external_id, payment.status, payment.contact_id) == (
        "sub_1U0I40Lm3xVt9QeKBuuQpyCp", "CANCELLED", ada.id)
    [order] = db.session.scalars(select(Order))  # only the paid session is an order
    assert (order.amount_total, order.currency, order.contact_id) == (45000, "usd", ada.id)
    assert db.session.scalar(select(EcommerceCustomer.total_orders).where(EcommerceCustomer.contact_id == ada.id)) == 1
    types = set(db.session.scalars(select(StripeEvent.type).where(StripeEvent.historical.is_(True))))
    assert types == {"customer.created", "charge.refunded", "customer.subscription.created",
                     "invoice.payment_succeeded", "checkout.session.completed"}
    # the lists expanded each linked customer: no customer was fetched one by one
    assert not [r for r in stripe_double.requests if r.path.startswith("/v1/customers/")]
    assert count(db, TriggerFired) == 0


def test_ticked_trigger_option_fires_automations_for_history(app, db, fast, connect_resource, stripe_double,
                                                             run_worker):
    load_story(stripe_double)
    customers = connect_resource("customer", trigger_historical=True)
    subscriptions = connect_resource("subscription", trigger_historical=True)
    start_import(db, customers)
    start_import(db, subscriptions)
    run_worker()

    fired = sorted((t.trigger, t.event_type, t.historical) for t in db.session.scalars(select(TriggerFired)))
    assert fired == sorted([
        ("stripe_event_received", "customer.created", True),
        ("stripe_event_received", "customer.created", True),
        ("stripe_event_received", "customer.subscription.created", True),
        ("recurring_payment_created", "customer.subscription.created", True),
    ])


def test_a_record_seen_twice_is_not_duplicated(app, db, fast, connect_resource, stripe_double, run_worker):
    """A second import (Re-sync existing records) applies every record again, into the same rows."""
    stripe_double.generate_customers(ACCOUNT_ID, 120, start_created=1_700_000_000)
    resource = connect_resource("customer")
    first = start_import(db, resource)
    run_worker()
    second = start_import(db, resource)  # e.g. the user re-syncs
    run_worker()

    again = backfill(db, second)
    assert (again.state, again.imported, again.passed_over) == ("finished", 122, 0)
    assert backfill(db, first).imported == 122
    assert count(db, Contact) == 122
    assert count(db, StripeEvent) == 122
    summaries = list(db.session.scalars(select(SyncLog.reason).where(SyncLog.event_row_id.is_(None))
                                        .order_by(SyncLog.id)))
    assert summaries == ["Historical import: 122 imported, 0 skipped, 0 failed",  # one row per import
                         "Historical import: 122 imported, 0 skipped, 0 failed"]


def test_webhook_mid_import_is_not_overwritten_by_older_history(app, db, fast, connect_resource, stripe_double,
                                                                run_worker, post_event):
    from tests.helpers import event_bytes

    app.config["BACKFILL_SLICE_SECONDS"] = 0  # one page per job: the webhook job runs between pages
    stripe_double.generate_customers(ACCOUNT_ID, 250, start_created=1_790_000_000)
    stripe_double.add_customer(ACCOUNT_ID, id="cus_Visible1", email="ada@example.com", name="Ada Lovelace",
                               created=1785748502)  # her real creation time: the import reaches her last
    resource = connect_resource("customer")
    backfill_id = start_import(db, resource)
    webhook = event_bytes("customer.updated", object__name="Ada King")  # Stripe's clock: 2026-08-19, newer
    assert post_event(resource, webhook).status_code == 200

    run_worker()

    assert backfill(db, backfill_id).state == "finished"
    logs = [(log.stripe_event_id or log.reason, log.outcome)
            for log in db.session.scalars(select(SyncLog).order_by(SyncLog.id))]
    # The webhook was processed mid-import: after the first page (which wrote the import's row) and before
    # the page that holds Ada (the webhook created her; the import later only updated her).
    assert logs == [("Historical import: 252 imported, 0 skipped, 0 failed", "created"),
                    ("evt_1U6Bz4Lm3xVt9QeKgxTL9RSs", "created")]
    processed = dict(db.session.execute(select(StripeEvent.stripe_event_id, StripeEvent.processed_at).where(
        StripeEvent.stripe_event_id.in_(["hist_customer_cus_Visible1", "evt_1U6Bz4Lm3xVt9QeKgxTL9RSs"]))).all())
    assert processed["evt_1U6Bz4Lm3xVt9QeKgxTL9RSs"] < processed["hist_customer_cus_Visible1"]
    ada = db.session.scalar(select(Contact).where(Contact.email_lower == "ada@example.com"))
    assert (ada.first_name, ada.last_name) == ("Ada", "King")
    assert "stripe-integration-customer.created" in tags_of(ada)
    assert "stripe-integration-customer.updated" in tags_of(ada)
    assert count(db, Contact) == 252


def test_a_record_whose_customer_cannot_be_fetched_fails_alone_and_is_retried(
        app, db, fast, connect_resource, stripe_double, run_worker):
    from tests.helpers import event_path

    charge = json.loads(event_path("edge/charge.succeeded").read_bytes())["data"]["object"]
    charge.update(id="ch_gone_customer", customer="cus_GoneAway", created=1_790_000_000)
    stripe_double.add_object(ACCOUNT_ID, "charges", charge)
    load_story(stripe_double)
    # The double cannot expand a customer it does not hold, so the import fetches customers one by one;
    # the first fetch of cus_GoneAway fails twice (the SDK's retry included).
    stripe_double.fail_next(2, 500, path_prefix="/v1/customers/cus_GoneAway")
    # Customer Description is only on the Customer, so the charge's own details are not enough.
    resource = connect_resource("charge", mapping=(("email", "email"), ("name", "first_name"),
                                                   ("description", "last_name")))
    backfill_id = start_import(db, resource)
    run_worker()

    bf = backfill(db, backfill_id)
    assert (bf.state, bf.imported, bf.failed) == ("finished", 1, 1)
    failed = db.session.scalar(select(SyncLog).where(SyncLog.outcome == "failed"))
    assert failed.historical and failed.reason.endswith("(will retry)")
    assert failed.stripe_event_id == "hist_charge_ch_gone_customer"
    event = db.session.scalar(select(StripeEvent).where(StripeEvent.stripe_event_id == "hist_charge_ch_gone_customer"))
    # process_event's retry (same worker burst) found the customer gone and used the charge's own details
    assert (event.status, event.attempts) == ("processed", 2)
    guest = db.session.scalar(select(Contact).where(Contact.email_lower == "guest.buyer@example.com"))
    assert guest is not None and "stripe-integration-charge.succeeded" in tags_of(guest)
