""""Send a test event" for every resource kind: a sample signed with the resource's own secret goes through
intake, the queue and the worker like any delivery, and lands in the CRM without a failure."""
from sqlalchemy import select

from webapp.crm.models import Contact
from webapp.stripe_sync.models import StripeEvent, StripeResource, SyncLog


def test_each_resource_kind_takes_a_test_event_end_to_end(app, db, connect_all, auth_client, run_worker):
    resources = connect_all()
    for res in resources.values():
        resp = auth_client.post(f"/apps/stripe/resources/{res.id}/test-event", htmx=True)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert "Test event sent as Test Event (test.event@example.com)" in resp.get_data(as_text=True)
    run_worker()
    events = db.session.scalars(select(StripeEvent)).all()
    assert sorted(e.type for e in events) == sorted(
        ["customer.created", "charge.succeeded", "customer.subscription.created", "invoice.created",
         "checkout.session.async_payment_succeeded"])
    assert {e.status for e in events} == {"processed"}
    assert not db.session.scalars(select(SyncLog).where(SyncLog.outcome == "failed")).all()
    [contact] = db.session.scalars(select(Contact)).all()
    assert (contact.email, contact.first_name) == ("test.event@example.com", "Test")

    again = auth_client.post(f"/apps/stripe/resources/{resources['customer'].id}/test-event", htmx=True)
    assert again.status_code == 200  # a new event each time, not a duplicate
    assert len(db.session.scalars(select(StripeEvent)).all()) == 6


def test_a_resource_without_a_signing_secret_says_what_to_do(app, db, connect_resource, auth_client):
    res = connect_resource("customer", secrets=())
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/test-event", htmx=True)
    assert resp.status_code == 409
    assert "no signing secret yet" in resp.get_data(as_text=True)
    assert db.session.scalars(select(StripeEvent)).all() == []
    assert auth_client.post("/apps/stripe/resources/9999/test-event", htmx=True).status_code == 404
    assert db.session.get(StripeResource, res.id) is not None
