"""The process_event job against a real worker, Redis and the Stripe double: retries, mapping,
refunds, triggers, idempotency and two workers racing for the same new customer."""
import re
import threading

import pytest
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select
from stripe._http_client import HTTPClient

from tests.helpers import count, event_bytes
from webapp.crm.models import (
    Contact, ContactField, ContactTag, EcommerceCustomer, Order, RecurringPayment, Tag, TriggerFired,
)
from webapp.crm.service import create_field, find_contact_by_email
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue.drain import process_event
from webapp.stripe_sync.queue import enqueue as dispatch
from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeEvent, StripeResource, SyncLog

CUSTOMER_PATH = "/v1/customers/cus_Visible1"


@pytest.fixture
def fast_sdk_retries(monkeypatch):
    """The SDK sleeps at least 0.5 s between its own retries; shrink that for tests."""
    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(HTTPClient, "MAX_DELAY", 0.02)


def logs(db):
    return list(db.session.scalars(select(SyncLog).order_by(SyncLog.id)))


def customer_fetches(double):
    return [r for r in double.requests if r.path == CUSTOMER_PATH]


def test_rate_limited_then_ok_fetch_is_retried_inside_the_job(connect_resource, post_event, run_worker, db,
                                                              stripe_double):
    resource = connect_resource("subscription")  # a subscription carries no details: its customer is needed
    stripe_double.fail_next(2, status=429, path_prefix="/v1/customers")
    post_event(resource, "customer.subscription.created")
    run_worker()
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.attempts) == ("processed", 1)
    assert len(customer_fetches(stripe_double)) == 3
    assert find_contact_by_email("ada@example.com").full_name == "Ada Lovelace"


def test_lock_timeout_429_is_retried_by_the_sdk(connect_resource, post_event, run_worker, db, stripe_double,
                                                fast_sdk_retries):
    resource = connect_resource("subscription")
    stripe_double.fail_next(1, status=429, path_prefix="/v1/customers", code="lock_timeout")
    post_event(resource, "customer.subscription.created")
    run_worker()
    assert db.session.scalar(select(StripeEvent.status)) == "processed"
    assert len(customer_fetches(stripe_double)) == 2


def test_stripe_outage_fails_the_job_and_rq_retries_it(connect_resource, post_event, run_worker, db,
                                                       stripe_double, fast_sdk_retries):
    resource = connect_resource("subscription")
    stripe_double.fail_next(2, status=500, path_prefix="/v1/customers")  # more than the SDK's one retry
    post_event(resource, "customer.subscription.created")
    run_worker()  # attempt 1 fails, RQ retries at once (interval 0 in tests), attempt 2 succeeds
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.attempts, row.error) == ("processed", 2, None)
    first, second = logs(db)
    assert (first.outcome, first.attempt, second.outcome, second.attempt) == ("failed", 1, "created", 2)
    assert first.reason.startswith("Stripe API error 500") and first.reason.endswith("(will retry)")
    assert re.search(r"\b\w+/\w+\.py:\d+ in \w+", first.detail) and "sk_test_" not in first.detail
    assert count(db, RecurringPayment) == 1 and count(db, TriggerFired) == 2


def test_event_stays_failed_after_the_last_attempt_until_retried(app, connect_resource, post_event, run_worker, db,
                                                                 stripe_double, fast_sdk_retries):
    from webapp.stripe_sync.queue.sweep import sweep_unqueued

    resource = connect_resource("subscription")
    stripe_double.fail_next(100, status=503, path_prefix="/v1/customers")
    post_event(resource, "customer.subscription.created")
    run_worker()
    row = db.session.scalar(select(StripeEvent))
    row_id = row.id
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.error.startswith("Stripe API error 503")
    rows = logs(db)
    assert [r.outcome for r in rows] == ["failed"] * 3 and [r.attempt for r in rows] == [1, 2, 3]
    assert rows[-1].reason.endswith("(gave up after attempt 3)")
    assert dispatch.job_id_for(row_id) in FailedJobRegistry(queue=get_queue()).get_job_ids()
    assert count(db, Contact) == 0
    assert sweep_unqueued(0).changed == 0  # a failed event waits for the Retry button, not the sweep

    stripe_double.set_down(False)
    stripe_double._fail_rules.clear()
    assert dispatch.retry_event(row_id) is True
    run_worker()
    row = db.session.get(StripeEvent, row_id)
    assert (row.status, row.attempts, row.error) == ("processed", 4, None)
    assert logs(db)[-1].outcome == "created"
    assert dispatch.retry_event(row_id) is False


def test_persistent_rate_limit_gives_up_in_the_job_and_leaves_it_to_rq(connect_resource, post_event, run_worker,
                                                                       db, stripe_double):
    resource = connect_resource("subscription")
    stripe_double.fail_next(4, status=429, path_prefix="/v1/customers")  # 1 try + 3 in-job retries
    post_event(resource, "customer.subscription.created")
    run_worker()
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.attempts) == ("processed", 2)
    assert logs(db)[0].reason.startswith("Stripe API error 429")


def test_deleted_stripe_customer_falls_back_to_the_charge_details(connect_resource, post_event, run_worker, db):
    resource = connect_resource("charge")
    post_event(resource, event_bytes("charge.succeeded", object__customer="cus_Gone"))
    run_worker()
    contact = find_contact_by_email("ada@example.com")
    assert contact is not None and contact.full_name == "Ada Lovelace"  # billing_details.name
    assert db.session.scalar(select(StripeEvent.status)) == "processed"


def test_disconnected_account_key_uses_the_event_alone(connect_resource, post_event, run_worker, db, stripe_double):
    resource = connect_resource("invoice")
    db.session.get(StripeAccount, resource.account_id).secret_key_enc = None
    db.session.commit()
    post_event(resource, "invoice.payment_succeeded")
    run_worker()
    assert find_contact_by_email("ada@example.com").full_name == "Ada Lovelace"  # customer_name on the invoice
    assert customer_fetches(stripe_double) == []


def test_mapping_as_it_is_when_the_event_is_processed(connect_resource, post_event, run_worker, db):
    plan_key = create_field("Stripe customer", "text").key
    country = create_field("Country", "dropdown", "FR\nDE")
    country_key, country_id = country.key, country.id
    resource = connect_resource("customer", mapping=[("email", "email"), ("name", "first_name"),
                                                     ("id", plan_key), ("address.country", country_key)])
    post_event(resource, "customer.created")
    run_worker()
    contact = find_contact_by_email("ada@example.com")
    values = {v.field.key: v.value for v in contact.values}
    assert values == {plan_key: "cus_Visible1"}  # customer.created has no address yet
    assert contact.phone == ""

    # The marketer changes the mapping: later events use the new one, earlier contacts stay as they were.
    db.session.execute(FieldMapping.__table__.delete().where(FieldMapping.resource_id == resource.id))
    phone = db.session.scalar(select(ContactField).where(ContactField.key == "phone"))
    db.session.add_all([FieldMapping(resource_id=resource.id, position=0, stripe_field="phone", field_id=phone.id),
                        FieldMapping(resource_id=resource.id, position=1, stripe_field="address.country",
                                     field_id=country_id)])
    db.session.commit()
    post_event(resource, event_bytes("customer.updated", object__name="Someone Else"))
    run_worker()
    db.session.expire_all()
    contact = find_contact_by_email("ada@example.com")
    assert (contact.full_name, contact.phone) == ("Ada Lovelace", "+16175550142")
    log = logs(db)[-1]
    assert log.outcome == "updated" and "left out (value not allowed): Country" in log.reason


def test_refund_marks_the_known_order_and_totals_follow(connect_resource, post_event, run_worker, db):
    sessions = connect_resource("checkout_session")
    charges = connect_resource("charge")
    post_event(sessions, "checkout.session.async_payment_succeeded")
    run_worker()
    ec = db.session.scalar(select(EcommerceCustomer))
    assert (ec.total_orders, ec.total_revenue) == (1, 45000)
    refund = event_bytes("charge.refunded", object__payment_intent="pi_3UAtp8Lm3xVt9QeKKJJ9u8Kp",
                         object__amount=45000, object__amount_refunded=45000)
    post_event(charges, refund)
    run_worker()
    db.session.expire_all()
    order = db.session.scalar(select(Order))
    assert order.status == "refunded" and order.refunded_at is not None
    ec = db.session.scalar(select(EcommerceCustomer))
    assert (ec.total_orders, ec.total_revenue) == (0, 0)
    assert "marked refunded" in logs(db)[-1].reason


def test_unpaid_completed_session_updates_the_contact_only(connect_resource, post_event, run_worker, db):
    resource = connect_resource("checkout_session")
    post_event(resource, "checkout.session.completed")
    run_worker()
    assert count(db, Order) == 0 and count(db, EcommerceCustomer) == 0
    assert "not paid (no_payment_required)" in logs(db)[0].reason


def test_processing_again_changes_nothing(connect_resource, post_event, run_worker, db, app):
    resource = connect_resource("subscription")
    post_event(resource, "customer.subscription.created")
    run_worker()
    row_id = db.session.scalar(select(StripeEvent.id))
    before = (count(db, SyncLog), count(db, TriggerFired), count(db, ContactTag))
    assert process_event(row_id) == "already done"
    dispatch.enqueue_event(row_id)  # a stray second job (e.g. the sweep racing a slow worker)
    run_worker()
    assert (count(db, SyncLog), count(db, TriggerFired), count(db, ContactTag)) == before
    assert db.session.scalar(select(StripeEvent.attempts)) == 1


def test_historical_events_fire_no_triggers_unless_asked(connect_resource, db, app):
    from webapp.stripe_sync.apply.contacts import ContactCache
    from webapp.stripe_sync.apply.triggers import fire_trigger, insert_firings

    quiet = connect_resource("customer")
    loud = connect_resource("customer", trigger_historical=True)
    contact = Contact(email="h@example.com")
    contact.refresh_keys()
    db.session.add(contact)
    rows = []
    for n, res in enumerate((quiet, loud)):
        rows.append(StripeEvent(account_id=res.account_id, resource_id=res.id, stripe_event_id=f"hist_{n}",
                                type="customer.created", created=1, payload="{}", historical=True))
    db.session.add_all(rows)
    db.session.commit()
    cache = ContactCache({res.id: db.session.get(StripeResource, res.id) for res in (quiet, loud)})
    assert fire_trigger(cache, "stripe_event_received", contact, rows[0]) is None
    fired = fire_trigger(cache, "stripe_event_received", contact, rows[1], {"x": 1})
    assert fired is not None and fired["historical"] is True
    fire_trigger(cache, "stripe_event_received", contact, rows[1])  # the same event and contact again
    insert_firings(cache.new_firings)
    db.session.commit()
    assert count(db, TriggerFired) == 1  # once per event and contact
    with pytest.raises(ValueError):
        fire_trigger(cache, "no_such_trigger", contact, rows[1])


def test_two_workers_racing_for_one_new_customer(app, connect_all, post_event, db):
    """Threads with their own sessions race for one new customer: one contact, one buyer, each tag once."""
    resources = connect_all()
    names = ["customer.subscription.created", "checkout.session.async_payment_succeeded", "customer.created",
             "invoice.created"]
    from tests.helpers import kind_for

    for name in names:
        assert post_event(resources[kind_for(name)], name).status_code == 200
    ids = list(db.session.scalars(select(StripeEvent.id).order_by(StripeEvent.id)))
    db.session.remove()
    barrier = threading.Barrier(len(ids))
    errors = []

    def work(row_id):
        with app.app_context():
            try:
                barrier.wait()
                process_event(row_id)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert count(db, Contact) == 1 and count(db, EcommerceCustomer) == 1
    contact = find_contact_by_email("ada@example.com")
    tag_rows = db.session.execute(select(ContactTag.tag_id, func.count()).where(ContactTag.contact_id == contact.id)
                                  .group_by(ContactTag.tag_id)).all()
    assert all(n == 1 for _tag, n in tag_rows) and len(tag_rows) == 1 + len(names) + 1
    assert count(db, Tag, Tag.name_lower == "stripe-integration") == 1
    assert set(db.session.scalars(select(StripeEvent.status))) == {"processed"}
    ec = db.session.scalar(select(EcommerceCustomer))
    assert (ec.total_orders, ec.total_revenue) == (1, 45000)


def test_contact_insert_race_is_absorbed(app, db, connect_resource, post_event, run_worker, monkeypatch):
    """The other worker's contact appears between our look-up and our insert: the batch replays and uses it."""
    from webapp.stripe_sync.apply import identity

    resource = connect_resource("customer")
    theirs = Contact(email="Ada@example.com")
    theirs.refresh_keys()
    db.session.add(theirs)
    db.session.commit()
    theirs_id = theirs.id
    assert post_event(resource, "customer.created").status_code == 200
    real = identity.contacts_query
    looked = []

    def blind_first_time(emails, contact_ids):
        looked.append(list(emails))
        return real(["nobody@example.com"] if len(looked) == 1 else emails, contact_ids)

    monkeypatch.setattr(identity, "contacts_query", blind_first_time)
    run_worker()
    event = db.session.scalar(select(StripeEvent))
    assert (event.status, event.contact_id, len(looked)) == ("processed", theirs_id, 2)
    assert [log.outcome for log in db.session.scalars(select(SyncLog))] == ["updated"]
    assert count(db, Contact) == 1


def test_unique_row_insert_race_is_absorbed(app, db, connect_resource, post_event, run_worker, monkeypatch):
    """The other worker's E-commerce Customer appears between our look-up and our insert: the flush
    fails on the unique key, the batch replays and uses their row."""
    resource = connect_resource("subscription")
    contact = Contact(email="ada@example.com")
    contact.refresh_keys()
    db.session.add(contact)
    db.session.flush()
    winner = EcommerceCustomer(account_id=resource.account_id, contact_id=contact.id)
    db.session.add(winner)
    db.session.commit()
    winner_id = winner.id
    assert post_event(resource, "customer.subscription.created").status_code == 200
    real_scalars = db.session.scalars
    lookups = []

    def first_lookup_misses(statement, *a, **kw):
        if "FROM ecommerce_customers" in str(statement):  # the buyer record's look-up
            lookups.append(statement)
            if len(lookups) == 1:
                return real_scalars(select(EcommerceCustomer).where(EcommerceCustomer.id == -1))
        return real_scalars(statement, *a, **kw)

    monkeypatch.setattr(db.session, "scalars", first_lookup_misses)
    run_worker()
    monkeypatch.undo()
    event = db.session.scalar(select(StripeEvent))
    assert (event.status, len(lookups)) == ("processed", 2)
    assert db.session.scalars(select(EcommerceCustomer.id)).all() == [winner_id]


@pytest.mark.parametrize("batch_size", [50, 1], ids=["drain batch", "own job"])
def test_locked_database_replays_the_transaction(app, connect_resource, post_event, run_worker, db, monkeypatch,
                                                 batch_size):
    from sqlalchemy.exc import OperationalError

    from webapp.stripe_sync.apply import batch as apply_batch

    app.config["EVENT_BATCH_SIZE"] = batch_size
    resource = connect_resource("customer")
    post_event(resource, "customer.created")
    real_apply = apply_batch._transaction
    tries = []

    def locked_once(*args, **kwargs):
        tries.append(1)
        if len(tries) == 1:
            real_apply(*args, **kwargs)  # do the work, then lose the commit race
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(apply_batch, "_transaction", locked_once)
    run_worker()
    assert len(tries) == 2
    row = db.session.scalar(select(StripeEvent))
    assert (row.status, row.attempts) == ("processed", 1)
    assert count(db, SyncLog) == 1 and count(db, Contact) == 1
