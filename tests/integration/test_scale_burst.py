"""A burst of shuffled, partly duplicated events for many customers, processed by three worker
processes at once, ends exactly where a sequential replay of the same events ends."""
import json
import random
import subprocess

from sqlalchemy import delete, func, select

from tests.helpers import EVENTS_DIR, PG_URL, start_worker, worker_env
from webapp.redis_queue import get_queue
from webapp.stripe_sync.queue import pending
from webapp.crm.models import (
    Contact, ContactFieldStamp, ContactTag, EcommerceCustomer, Order, RecurringPayment, RecurringPaymentStatus,
    Tag, TriggerFired,
)
from webapp.stripe_sync.models import StripeEvent, SyncLog

# 2,000 events for 200 customers on PostgreSQL (the burst); a smaller one on SQLite,
# whose single writer makes the large burst slow without proving more.
CUSTOMERS = 200 if PG_URL else 60
T0 = 1_790_000_000


def _template(name):
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def burst_events() -> list[tuple[str, bytes]]:
    """(resource kind, payload) for every customer: created, six updates, a subscription's life,
    and a paid checkout for every third customer; `created` spaced so order is unambiguous."""
    out = []
    for i in range(CUSTOMERS):
        cid, email, sub = f"cus_burst_{i:04d}", f"buyer{i}@example.test", f"sub_burst_{i:04d}"
        t = T0 + i * 100

        def event(fixture, offset, kind, **obj):
            ev = _template(fixture)
            ev["id"] = f"evt_burst_{i:04d}_{offset:02d}"
            ev["created"] = t + offset
            ev["data"]["object"].update(obj)
            out.append((kind, json.dumps(ev, indent=2).encode()))

        event("customer.created", 0, "customer", id=cid, email=email, name=f"Buyer {i} v0", phone=None)
        for k in range(1, 7):
            event("customer.updated", k, "customer", id=cid, email=email, name=f"Buyer {i} v{k}",
                  phone=f"+1555000{k}{i:04d}")
        event("customer.subscription.created", 10, "subscription", id=sub, customer=cid, status="trialing")
        event("customer.subscription.updated", 11, "subscription", id=sub, customer=cid, status="active")
        if i % 5 == 0:
            event("customer.subscription.deleted", 12, "subscription", id=sub, customer=cid, status="canceled")
        if i % 3 == 0:
            event("checkout.session.completed", 20, "checkout_session", id=f"cs_burst_{i:04d}", customer=cid,
                  payment_status="paid", amount_total=1000 + i, status="complete",
                  customer_details={**_template("checkout.session.completed")["data"]["object"]["customer_details"],
                                    "email": email})
    return out


def snapshot(db) -> dict:
    """Everything a marketer would see of these customers."""
    db.session.expire_all()
    contacts = {c.email_lower: (c.first_name, c.last_name, c.phone) for c in db.session.scalars(select(Contact))}
    tags = sorted(db.session.execute(select(Contact.email_lower, Tag.name).join(ContactTag, ContactTag.contact_id == Contact.id)
                                     .join(Tag, Tag.id == ContactTag.tag_id)).all())
    orders = sorted(db.session.execute(select(Order.external_id, Order.amount_total, Order.status)).all())
    payments = sorted(db.session.execute(select(RecurringPayment.external_id, RecurringPayment.status)).all())
    customers = sorted(db.session.execute(select(EcommerceCustomer.contact_id.isnot(None), EcommerceCustomer.total_orders,
                                                 EcommerceCustomer.total_revenue)).all())
    return {"contacts": contacts, "tags": tags, "orders": orders, "payments": payments, "ecom": customers}


def wipe(db) -> None:
    """Forget every synced row (tags themselves stay), as if the burst hit a fresh CRM."""
    for model in (TriggerFired, SyncLog, RecurringPaymentStatus, RecurringPayment, Order, EcommerceCustomer,
                  ContactFieldStamp, ContactTag, StripeEvent, Contact):
        db.session.execute(delete(model))
    db.session.commit()


def test_burst_with_three_workers_matches_sequential_replay(app, db, connect_resource, post_event, run_worker,
                                                           stripe_double, redis_server):
    for i in range(CUSTOMERS):
        stripe_double.add_customer("acct_1EngineRoom", id=f"cus_burst_{i:04d}", email=f"buyer{i}@example.test",
                                   name=f"Buyer {i} v6")
    resources = {kind: connect_resource(kind) for kind in ("customer", "subscription", "checkout_session")}
    events = burst_events()

    def post_all(items):
        for kind, payload in items:
            res = resources[kind]
            assert post_event(res, payload).status_code == 200

    # Sequential replay: in Stripe's order, one worker, one event at a time.
    post_all(sorted(events, key=lambda e: json.loads(e[1])["created"]))
    run_worker()
    expected = snapshot(db)
    assert len(expected["contacts"]) == CUSTOMERS
    assert db.session.scalar(select(func.count()).select_from(SyncLog).where(SyncLog.outcome == "failed")) == 0
    wipe(db)

    # The burst: shuffled, 10% delivered twice, three worker processes at once, each draining its own
    # customers' shard in parallel (PostgreSQL; SQLite has one writer, so one shard).
    app.config["EVENT_DRAIN_SHARDS"] = 4
    rng = random.Random(1815)
    burst = events + rng.sample(events, len(events) // 10)
    rng.shuffle(burst)
    post_all(burst)
    assert get_queue().count == pending.shard_count()  # a drain job per shard, not one per event
    env = worker_env(app, redis_server.url, stripe_double)
    workers = [start_worker(env, f"burst-{n}", stderr=subprocess.PIPE) for n in range(3)]
    for w in workers:
        _, err = w.communicate(timeout=240)
        assert w.returncode == 0, err.decode()[-2000:]
    run_worker()  # anything a worker left for a retry
    failed = db.session.scalars(select(SyncLog).where(SyncLog.outcome == "failed")).all()
    assert not failed, [f.reason for f in failed][:5]
    statuses = dict(db.session.execute(select(StripeEvent.status, func.count()).group_by(StripeEvent.status)).all())
    assert statuses == {"processed": len(events)}, statuses
    assert snapshot(db) == expected
