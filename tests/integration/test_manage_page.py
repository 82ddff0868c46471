"""The Stripe manage page: live log fragments, retry, mapping updates and disconnects."""
import re

from tests.helpers import (
    EVENTS_DIR, HX, choose, connect, event_bytes_with as event_bytes, field_id, finish, start_connect as start,
)
from webapp.crm import service
from webapp.stripe_sync.models import StripeAccount, StripeEvent, StripeResource, SyncLog

def deliver(auth_client, stripe_double, resource, payload: bytes):
    """Sign exactly these bytes with the endpoint's secret, as Stripe does, and post them."""
    [secret] = [e["secret"] for e in stripe_double.endpoints("acct_1EngineRoom") if e["id"] == resource.webhook_endpoint_id]
    header = stripe_double.sign(payload, secret)
    return auth_client.raw.post(f"/webhooks/stripe/{resource.token}", data=payload,
                                headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def test_manage_page_lists_account_resources_and_counts(auth_client, db, stripe_double, stripe_key, run_worker):
    res = connect(auth_client, db, stripe_key)
    assert deliver(auth_client, stripe_double, res, event_bytes("customer.created.json")).status_code == 200
    assert deliver(auth_client, stripe_double, res, (EVENTS_DIR / "edge" / "customer.created.json").read_bytes()).status_code == 200
    run_worker()
    html = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "owner@engineroom.test" in html and "Test mode" in html and "connected 20" in html
    row = re.search(r'(?s)<tr id="resource-%d".*?</tr>' % res.id, html).group(0)
    assert "Customer" in row and "Active" in row
    assert re.findall(r'class="(?:right )?(?:synced|skipped|failed)-count">(\d+)<', row) == ["1", "1", "0"]
    assert "Connect another account" in html and "Connect a new resource" in html and "Disconnect" in html


def test_log_poll_returns_only_newer_rows_and_keeps_filters(auth_client, db, stripe_double, stripe_key, run_worker):
    res = connect(auth_client, db, stripe_key)
    html = auth_client.get("/apps/stripe?outcome=skipped").get_data(as_text=True)
    poll = re.search(r'id="log-poller" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "outcome=skipped" in poll
    assert auth_client.get(poll, headers=HX).status_code == 204  # nothing new: one indexed query, no body

    deliver(auth_client, stripe_double, res, event_bytes("customer.created.json"))
    deliver(auth_client, stripe_double, res, (EVENTS_DIR / "edge" / "customer.created.json").read_bytes())
    run_worker()
    resp = auth_client.get(poll, headers=HX)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert body.count('<tr id="log-') == 1 and "customer.created" in body and "Skipped" in body
    new_poll = re.search(r'id="log-poller" hx-get="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert 'hx-swap-oob="true"' in body and "outcome=skipped" in new_poll and new_poll != poll
    assert auth_client.get(new_poll, headers=HX).status_code == 204


def test_older_rows_load_on_demand(auth_client, db, stripe_key):
    res = connect(auth_client, db, stripe_key)
    for i in range(60):
        db.session.add(SyncLog(account_id=res.account_id, resource_id=res.id, event_type="customer.updated",
                               outcome="updated", reason=f"row {i}"))
    db.session.commit()
    html = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert html.count('<tr id="log-') == 50
    older = re.search(r'hx-get="(/apps/stripe/log/older[^"]+)"', html).group(1).replace("&amp;", "&")
    body = auth_client.get(older, headers=HX).get_data(as_text=True)
    assert body.count('<tr id="log-') == 10 and "row 0" in body


def test_failed_event_retry_shows_a_new_attempt(app, auth_client, db, stripe_double, stripe_key, run_worker):
    res = connect(auth_client, db, stripe_key, kind="subscription")
    stripe_double.fail_next(10, status=500, path_prefix="/v1/customers")  # the linked customer cannot be fetched
    assert deliver(auth_client, stripe_double, res,
                   event_bytes("customer.subscription.created.json")).status_code == 200
    run_worker()
    failed = db.session.query(SyncLog).filter_by(outcome="failed").all()
    assert failed, "the event should have failed while Stripe answered 500"
    event = db.session.query(StripeEvent).one()
    db.session.refresh(event)
    if event.status != "failed":  # RQ may still hold scheduled retries; exhaust them for the test
        event.status = "failed"
        db.session.commit()
    stripe_double._fail_rules.clear()
    resp = auth_client.post(f"/apps/stripe/log/{failed[-1].id}/retry", htmx=True)
    assert resp.status_code == 200 and "Retry queued" in resp.get_data(as_text=True)
    run_worker()
    db.session.expire_all()
    assert db.session.get(StripeEvent, event.id).status == "processed"
    latest = db.session.query(SyncLog).order_by(SyncLog.id.desc()).first()
    assert latest.outcome in ("created", "updated") and latest.contact.email == "ada@example.com"
    again = auth_client.post(f"/apps/stripe/log/{failed[-1].id}/retry", htmx=True)
    assert again.status_code == 409 and "no longer failed" in again.get_data(as_text=True)


def test_log_detail_shows_payload_escaped(auth_client, db, stripe_double, stripe_key, run_worker):
    res = connect(auth_client, db, stripe_key)
    deliver(auth_client, stripe_double, res, (EVENTS_DIR / "edge" / "customer.updated.json").read_bytes())
    run_worker()
    row = db.session.query(SyncLog).one()
    body = auth_client.get(f"/apps/stripe/log/{row.id}", headers=HX).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body


def test_mapping_update_is_forward_only(auth_client, db, stripe_double, stripe_key, run_worker):
    notes = service.create_field("Notes", "text")
    res = connect(auth_client, db, stripe_key)
    deliver(auth_client, stripe_double, res, event_bytes("customer.created.json"))
    deliver(auth_client, stripe_double, res, event_bytes("customer.created.json", id="evt_bob", object_id="cus_bob", email="bob@example.com",
                                                        name="Bob Builder", description="Early adopter"))
    run_worker()
    editor = auth_client.get(f"/apps/stripe/resources/{res.id}/mapping", headers=HX).get_data(as_text=True)
    assert "Field mapping: Customer" in editor and re.search(r'<option value="name" selected>', editor)

    rows = {"row_role": ["email", "id", "extra"], "stripe_field": ["email", "id", "description"],
            "crm_field": [str(field_id(db, "email")), "", str(notes.id)]}
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/mapping", rows, htmx=True)
    assert resp.status_code == 204
    deliver(auth_client, stripe_double, res, event_bytes("customer.updated.json", name="Ada King",
                                                        description="Countess"))
    run_worker()
    db.session.expire_all()
    ada = service.find_contact_by_email("ada@example.com")
    bob = service.find_contact_by_email("bob@example.com")
    assert ada.first_name == "Ada" and service.custom_values(ada) == {notes.id: "Countess"}
    assert bob.first_name == "Bob" and service.custom_values(bob) == {}


def test_remove_resource_keeps_data_and_later_deliveries_get_410(auth_client, db, stripe_double, stripe_key, run_worker):
    res = connect(auth_client, db, stripe_key)
    deliver(auth_client, stripe_double, res, event_bytes("customer.created.json"))
    run_worker()
    secret_payload = event_bytes("customer.updated.json")
    [endpoint] = stripe_double.endpoints("acct_1EngineRoom")
    modal = auth_client.get(f"/apps/stripe/resources/{res.id}/remove", headers=HX).get_data(as_text=True)
    assert ">Remove</button>" in modal
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/remove", htmx=True)
    assert resp.status_code == 204
    assert stripe_double.endpoints("acct_1EngineRoom") == []
    db.session.expire_all()
    assert db.session.get(StripeResource, res.id).status == "disconnected"
    assert service.find_contact_by_email("ada@example.com") is not None
    assert db.session.query(SyncLog).count() == 1
    html = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert f'id="resource-{res.id}"' not in html and "was removed" in html
    header = stripe_double.sign(secret_payload, endpoint["secret"])
    late = auth_client.raw.post(f"/webhooks/stripe/{res.token}", data=secret_payload,
                                headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    assert late.status_code == 410
    second_tab = auth_client.post(f"/apps/stripe/resources/{res.id}/remove", htmx=True)
    assert second_tab.status_code == 409 and "already removed" in second_tab.get_data(as_text=True)
    body = auth_client.post(f"/apps/stripe/accounts/{res.account_id}/resources/new", htmx=True).get_data(as_text=True)
    assert '<option value="customer"' in body


def test_remove_while_stripe_is_down_says_so_and_can_retry(auth_client, db, stripe_double, stripe_key):
    res = connect(auth_client, db, stripe_key)
    stripe_double.set_down(True)
    resp = auth_client.post(f"/apps/stripe/resources/{res.id}/remove", htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 502 and "may still exist" in body
    db.session.expire_all()
    assert db.session.get(StripeResource, res.id).status == "disconnecting"
    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert f'id="resource-{res.id}"' in page and "Disconnecting" in page
    stripe_double.set_down(False)
    assert auth_client.post(f"/apps/stripe/resources/{res.id}/remove", htmx=True).status_code == 204
    assert stripe_double.endpoints("acct_1EngineRoom") == []


def test_disconnect_account_erases_key_and_reconnect_asks_for_mapping(auth_client, db, stripe_double, stripe_key):
    connect(auth_client, db, stripe_key)
    connect(auth_client, db, stripe_key, kind="invoice", extra=())
    assert len(stripe_double.endpoints("acct_1EngineRoom")) == 2
    account = db.session.query(StripeAccount).one()
    modal = auth_client.get(f"/apps/stripe/accounts/{account.id}/disconnect", headers=HX).get_data(as_text=True)
    assert "Disconnect Account" in modal
    assert auth_client.post(f"/apps/stripe/accounts/{account.id}/disconnect", htmx=True).status_code == 204
    db.session.expire_all()
    account = db.session.query(StripeAccount).one()
    assert account.secret_key_enc is None and account.status == "disconnected"
    assert stripe_double.endpoints("acct_1EngineRoom") == []
    connected = auth_client.get("/apps/connected").get_data(as_text=True)
    assert "No connected apps" in connected and 'data-app="stripe"' not in connected
    draft, resp = start(auth_client, stripe_key)
    assert "Choose Resource" in resp.get_data(as_text=True)
    assert "Add field mapping" in choose(auth_client, draft).get_data(as_text=True)
    assert finish(auth_client, draft, [("email", "email", field_id(db, "email"))]).status_code == 204
    assert db.session.query(StripeAccount).one().status == "connected"


def test_a_mapped_custom_field_cannot_be_deleted_until_the_mapping_changes(auth_client, db, stripe_key):
    notes = service.create_field("Notes", "text")
    res = connect(auth_client, db, stripe_key, extra=(("extra", "description", "custom_%d" % notes.id),))
    auth_client.get("/fields")
    resp = auth_client.post(f"/fields/{notes.id}/delete", {})
    page = auth_client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "is filled by the Stripe Customer field mapping" in page
    assert service.custom_fields() == [notes]
    rows = {"row_role": ["email"], "stripe_field": ["email"], "crm_field": [str(field_id(db, "email"))]}
    assert auth_client.post(f"/apps/stripe/resources/{res.id}/mapping", rows, htmx=True).status_code == 204
    auth_client.post(f"/fields/{notes.id}/delete", {})
    assert service.custom_fields() == []
