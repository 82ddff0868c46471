"""Re-sync existing records: Stripe history read again with the current mapping fills existing contacts,
forward-only; imported subscriptions get their history at Stripe's times."""
import json
from datetime import datetime, timezone

from sqlalchemy import select

from tests.helpers import ACCOUNT_ID, EVENTS_DIR, backfill, count, start_import
from webapp.crm import service
from webapp.crm.contact_commerce import status_transitions
from webapp.crm.models import Contact, RecurringPayment
from webapp.stripe_app.contact_sections import recent_activity
from webapp.stripe_sync.history import importer
from webapp.stripe_sync.models import FieldMapping, StripeEvent, StripeResource


def utc(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def by_email(db, email):
    db.session.expire_all()
    return db.session.scalar(select(Contact).where(Contact.email_lower == email))


def test_resync_fills_newly_mapped_fields_and_keeps_hand_edits(app, db, fast, connect_resource, stripe_double,
                                                               run_worker):
    for n, city in enumerate(("Boston", "Lisbon", "Kyoto")):
        stripe_double.add_customer(ACCOUNT_ID, id=f"cus_r{n}", email=f"r{n}@example.com", name=f"Reader {n}",
                                   address={"city": city, "country": "US", "line1": None, "line2": None,
                                            "postal_code": None, "state": None}, created=1_700_000_000 + n)
    resource = connect_resource("customer")  # Email and Customer Name only
    first = start_import(db, resource)
    run_worker()
    known = count(db, Contact)  # the double's own customers, and these three
    assert backfill(db, first).imported == known and by_email(db, "r2@example.com") is not None

    city = service.create_field("City", "text")
    stripe_id = service.create_field("Stripe customer", "text")
    service.save_contact(by_email(db, "r1@example.com"), {"email": "r1@example.com", "first_name": "Reader"},
                         {city.id: "Porto"})  # typed by hand after the import
    res = db.session.get(StripeResource, resource.id)
    res.mappings.append(FieldMapping(position=5, stripe_field="address.city", field_id=city.id))
    res.mappings.append(FieldMapping(position=6, stripe_field="id", field_id=stripe_id.id))
    db.session.commit()

    again = importer.resync(db.session.get(StripeResource, resource.id))
    assert importer.resync(db.session.get(StripeResource, resource.id)).id == again.id  # asked twice: one import
    run_worker()

    bf = backfill(db, again.id)
    assert (bf.state, bf.imported, bf.passed_over) == ("finished", known, 0)
    assert count(db, Contact) == known and count(db, StripeEvent) == known
    values = {c.email: service.custom_values(c) for c in (by_email(db, f"r{n}@example.com") for n in range(3))}
    assert values == {"r0@example.com": {city.id: "Boston", stripe_id.id: "cus_r0"},
                      "r1@example.com": {city.id: "Porto", stripe_id.id: "cus_r1"},  # the hand edit is newer
                      "r2@example.com": {city.id: "Kyoto", stripe_id.id: "cus_r2"}}


def test_an_imported_cancelled_subscription_starts_its_history_when_it_started(app, db, fast, connect_resource,
                                                                              stripe_double, run_worker):
    event = json.loads((EVENTS_DIR / "customer.subscription.deleted.json").read_bytes())
    sub = event["data"]["object"]  # trial from its creation, then active, cancelled on 2026-09-21
    stripe_double.add_customer(ACCOUNT_ID, id="cus_Visible1", email="ada@example.com", name="Ada Lovelace",
                               created=1785748502)
    stripe_double.add_object(ACCOUNT_ID, "subscriptions", sub)
    resource = connect_resource("subscription")
    start_import(db, resource)
    run_worker()

    payment = db.session.scalar(select(RecurringPayment))
    steps = [(t.status, t.stripe_status, t.since_at) for t in status_transitions(payment.history)]
    assert steps == [("ACTIVE", "trialing", utc(sub["trial_start"])), ("ACTIVE", "active", utc(sub["trial_end"])),
                     ("CANCELLED", "canceled", utc(sub["ended_at"]))]
    assert payment.status == "CANCELLED"
    start_import(db, resource)  # a re-sync adds no step twice
    run_worker()
    db.session.expire_all()
    assert len(db.session.scalar(select(RecurringPayment)).history) == 3

    ada = by_email(db, "ada@example.com")
    [imported] = recent_activity(ada.id)
    assert (imported.event_type, imported.outcome, imported.at) == (
        "customer.subscription.created", "imported", utc(sub["created"]))
