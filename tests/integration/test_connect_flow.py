"""The Connect Account flow through Flask's client against the Stripe double."""
import logging
import re

import pytest
import stripe

from tests.helpers import HX, choose, field_id, finish, start_connect
from webapp.crm import service
from webapp.stripe_sync.models import ConnectDraft, StripeAccount, StripeResource, WebhookSecret

def test_whole_flow_creates_endpoint_and_connection(auth_client, db, stripe_double, stripe_key, caplog):
    caplog.set_level(logging.DEBUG)
    draft, resp = start_connect(auth_client, stripe_key)
    html = resp.get_data(as_text=True)
    assert "owner@engineroom.test" in html and "Test key" in html
    assert "Choose Resource" in html and "Sync new records only" in html
    assert stripe_key not in html and stripe_key[-4:] in html  # masked only

    resp = choose(auth_client, draft)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Add field mapping" in html and "Metadata: plan_tier" in html

    email, first = field_id(db, "email"), field_id(db, "first_name")
    resp = finish(auth_client, draft, [("email", "email", email), ("id", "id", ""), ("extra", "name", first)])
    assert resp.status_code == 204 and resp.headers["HX-Redirect"] == "/apps/stripe"

    account = db.session.query(StripeAccount).one()
    res = db.session.query(StripeResource).one()
    assert account.email == "owner@engineroom.test" and not account.livemode
    assert stripe_key not in account.secret_key_enc
    assert [(m.stripe_field, m.field.key) for m in res.mappings] == [("email", "email"), ("name", "first_name")]
    [endpoint] = stripe_double.endpoints("acct_1EngineRoom")
    assert endpoint["url"] == f"https://crm.example.test/webhooks/stripe/{res.token}"
    assert sorted(endpoint["enabled_events"]) == ["customer.created", "customer.updated"]
    assert endpoint["metadata"] == {"app": "engine-crm", "resource": "customer"}
    assert "Customer" in endpoint["description"]
    secret = db.session.query(WebhookSecret).one()
    assert endpoint["secret"] not in secret.secret_enc
    assert db.session.query(ConnectDraft).count() == 0

    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "Stripe is connected" in page and "owner@engineroom.test" in page
    connected = auth_client.get("/apps/connected").get_data(as_text=True)
    assert "owner@engineroom.test" in connected
    for url in ("/apps/stripe", "/apps/connected", "/settings/", "/contacts"):
        assert stripe_key not in auth_client.get(url).get_data(as_text=True)
    assert stripe_key not in caplog.text and endpoint["secret"] not in caplog.text


@pytest.mark.parametrize("raw,message", [
    ("", "Enter your Stripe Secret Key."),
    ("pk_test_51H8abcdefghijklmnop", "publishable key"),
    ("hello world", "doesn&#39;t look like a Stripe secret key"),
    ("sk_test_unknownKey1234567890", "Stripe rejected this key"),
])
def test_bad_keys_get_a_message_next_to_the_field(auth_client, db, stripe_key, raw, message):
    auth_client.get("/apps/stripe")
    resp = auth_client.post("/apps/stripe/connect", {"secret_key": raw}, htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and message in body
    assert "HX-Retarget" not in resp.headers  # only the message slot is swapped; the typed key stays
    if raw:
        assert raw not in body
    assert db.session.query(ConnectDraft).count() == 0


def test_restricted_key_without_webhook_permission_names_it(auth_client, db, stripe_double, stripe_key):
    rk = stripe_double.add_restricted_key("acct_1EngineRoom", {"customers": "read", "webhook_endpoints": "none",
                                                               "account": "read"})
    auth_client.get("/apps/stripe")
    resp = auth_client.post("/apps/stripe/connect", {"secret_key": rk}, htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "restricted key" in body and "rak_webhook" in body
    assert rk not in body


def test_stripe_unreachable(auth_client, db, stripe_double, stripe_key):
    stripe_double.set_down(True)
    auth_client.get("/apps/stripe")
    resp = auth_client.post("/apps/stripe/connect", {"secret_key": stripe_key}, htmx=True)
    assert resp.status_code == 422 and "could not be reached" in resp.get_data(as_text=True)


def test_same_account_twice_offers_its_page(auth_client, db, stripe_key):
    draft, _ = start_connect(auth_client, stripe_key)
    choose(auth_client, draft)
    assert finish(auth_client, draft, [("email", "email", field_id(db, "email"))]).status_code == 204
    resp = auth_client.post("/apps/stripe/connect", {"secret_key": stripe_key}, htmx=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "already connected" in body and "Open its page" in body


def test_mapping_errors_keep_every_choice(auth_client, db, stripe_double, stripe_key):
    age = service.create_field("Age", "number")
    draft, _ = start_connect(auth_client, stripe_key)
    choose(auth_client, draft)
    first, last = field_id(db, "first_name"), field_id(db, "last_name")
    resp = finish(auth_client, draft, [("email", "", field_id(db, "email")), ("id", "id", ""),
                                       ("extra", "name", first), ("extra", "phone", last),
                                       ("extra", "email", age.id), ("extra", "metadata.plan_tier", "")])
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Email is required" in body
    assert "is already filled by another row" in body  # Customer Name fills First and Last Name
    assert "cannot be stored in the number field" in body
    assert "Choose both a Stripe field and a CRM field" in body
    assert re.search(r'<option value="phone" selected>', body) and re.search(rf'<option value="{age.id}" selected>', body)
    assert stripe_double.endpoints("acct_1EngineRoom") == []
    assert db.session.query(StripeResource).count() == 0


def _fill_endpoints(key, stripe_double, ours, foreign):
    client = stripe.StripeClient(key, base_addresses={"api": stripe_double.url})
    for i in range(foreign):
        client.v1.webhook_endpoints.create(params={"url": f"https://other{i}.example/hook",
                                                   "enabled_events": ["charge.succeeded"]})
    for i in range(ours):
        client.v1.webhook_endpoints.create(params={"url": f"https://crm.example.test/webhooks/stripe/old{i}",
                                                   "enabled_events": ["customer.created"]})


def test_endpoint_limit_lists_endpoints_and_recovers(auth_client, db, stripe_double, stripe_key):
    _fill_endpoints(stripe_key, stripe_double, ours=2, foreign=14)
    draft, _ = start_connect(auth_client, stripe_key)
    choose(auth_client, draft)
    rows = [("email", "email", field_id(db, "email")), ("id", "id", field_id(db, "last_name"))]
    resp = finish(auth_client, draft, rows)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "There was an error saving your connection" in body and "16 webhook endpoints" in body
    assert body.count("https://other") == 14 and body.count("This app</span>") == 2
    assert body.count(">Remove</button>") == 2
    assert re.search(r"<option value=\"%d\" selected>Last Name" % field_id(db, "last_name"), body)

    leftover = next(e for e in stripe_double.endpoints("acct_1EngineRoom") if "old0" in e["url"])
    other = next(e for e in stripe_double.endpoints("acct_1EngineRoom") if "other0" in e["url"])
    refused = auth_client.post(f"/apps/stripe/connect/endpoints/{other['id']}/delete", {"draft": draft}, htmx=True)
    assert refused.status_code == 422 and "Only endpoints left over from this app" in refused.get_data(as_text=True)
    removed = auth_client.post(f"/apps/stripe/connect/endpoints/{leftover['id']}/delete", {"draft": draft}, htmx=True)
    assert removed.status_code == 200 and len(stripe_double.endpoints("acct_1EngineRoom")) == 15

    assert finish(auth_client, draft, rows).status_code == 204
    assert len(stripe_double.endpoints("acct_1EngineRoom")) == 16


def test_stripe_refusal_after_the_count_check_is_handled(app, db, stripe_double, stripe_key, monkeypatch):
    """Another app may add an endpoint between our count and our create: Stripe's refusal is caught."""
    from webapp.stripe_sync.connect import endpoints
    from webapp.stripe_sync.client import make_client

    _fill_endpoints(stripe_key, stripe_double, ours=0, foreign=16)
    real_list = endpoints.list_endpoints
    calls = []

    def stale_list(client):
        calls.append(1)
        return [] if len(calls) == 1 else real_list(client)

    monkeypatch.setattr(endpoints, "list_endpoints", stale_list)
    with pytest.raises(endpoints.EndpointLimitReached) as exc:
        endpoints.create_endpoint(make_client(stripe_key), "customer", "https://crm.example.test/webhooks/stripe/x",
                                 livemode=False)
    assert "maximum of 16 test webhook endpoints" in str(exc.value)
    assert len(exc.value.endpoints) == 16


def test_no_public_base_url_warns_but_finishes(app, auth_client, db, stripe_double, stripe_key):
    app.config["PUBLIC_BASE_URL"] = None
    draft, _ = start_connect(auth_client, stripe_key)
    body = choose(auth_client, draft).get_data(as_text=True)
    assert "Stripe cannot deliver events to http://localhost" in body and "stripe listen --forward-to" in body
    assert finish(auth_client, draft, [("email", "email", field_id(db, "email"))]).status_code == 204
    # Stripe refuses private addresses, so no endpoint exists; the resource says why and what to do.
    assert stripe_double.endpoints("acct_1EngineRoom") == []
    res = db.session.query(StripeResource).one()
    assert res.status == "needs_attention" and res.webhook_url.startswith("http://localhost/webhooks/stripe/")
    page = auth_client.get("/apps/stripe").get_data(as_text=True)
    assert "Stripe cannot deliver" in page and "PUBLIC_BASE_URL" in page
    # The flash tells the truth: connected, but nothing can arrive yet, and where the fix is.
    assert "Stripe is connected, but Customer events from owner@engineroom.test cannot reach this app yet" in page
    assert "now sync into your contacts" not in page
    assert "Recreate endpoint</button>" in page
    # The developer's advice lives in Settings, not in a banner on the Stripe page (whose resource offers the
    # stripe listen route itself: its forwarding command and a field for the secret).
    assert "Stripe cannot deliver events to" not in page
    assert "Signing secret from stripe listen" in page
    settings = auth_client.get("/settings/").get_data(as_text=True)
    assert "stripe listen --forward-to http://localhost/webhooks/stripe/&lt;token&gt;" in settings


def test_failed_store_removes_the_endpoint_again(auth_client, db, stripe_double, stripe_key, monkeypatch):
    from webapp.stripe_sync.connect import flow as connect

    draft, _ = start_connect(auth_client, stripe_key)
    choose(auth_client, draft)

    def boom(**_kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(connect, "WebhookSecret", boom)
    resp = finish(auth_client, draft, [("email", "email", field_id(db, "email"))])
    assert resp.status_code == 422 and "Nothing was saved" in resp.get_data(as_text=True)
    assert stripe_double.endpoints("acct_1EngineRoom") == []
    assert db.session.query(StripeAccount).count() == 0


def test_mapping_row_fragment_shows_name_note(auth_client, db, stripe_key):
    draft, _ = start_connect(auth_client, stripe_key)
    body = auth_client.get(f"/apps/stripe/mapping-row?draft={draft}&row_role=extra&stripe_field=name",
                           headers=HX).get_data(as_text=True)
    assert body.lstrip().startswith('<div class="mapping-row') and "split into First Name and Last Name" in body


def test_mapping_note_fragment_follows_the_stripe_field(auth_client, db, stripe_key):
    auth_client.get("/apps/stripe")
    name = auth_client.get("/apps/stripe/mapping-row?part=note&stripe_field=name", headers=HX).get_data(as_text=True)
    phone = auth_client.get("/apps/stripe/mapping-row?part=note&stripe_field=phone", headers=HX).get_data(as_text=True)
    assert name.startswith('<div class="note-slot') and "split into First Name and Last Name" in name
    assert phone.startswith('<div class="note-slot') and "split" not in phone


def test_stripe_timing_out(app, auth_client, db, stripe_double, stripe_key):
    app.config.update(STRIPE_TIMEOUT=0.5, STRIPE_MAX_NETWORK_RETRIES=0)
    stripe_double.set_latency(2)
    auth_client.get("/apps/stripe")
    resp = auth_client.post("/apps/stripe/connect", {"secret_key": stripe_key}, htmx=True)
    stripe_double.set_latency(0)
    assert resp.status_code == 422 and "timed out" in resp.get_data(as_text=True)
    assert db.session.query(ConnectDraft).count() == 0


def test_a_full_account_of_foreign_endpoints_is_told_to_delete_one(auth_client, db, stripe_double, stripe_key):
    """A disabled endpoint still counts towards Stripe's 16, so the advice is to delete one, not disable it."""
    _fill_endpoints(stripe_key, stripe_double, ours=0, foreign=16)
    draft, _ = start_connect(auth_client, stripe_key)
    choose(auth_client, draft)
    body = finish(auth_client, draft, [("email", "email", field_id(db, "email"))]).get_data(as_text=True)
    assert "Delete one in the Stripe Dashboard (Developers → Webhooks), then press Finish again." in body
    assert "a disabled endpoint still counts towards the limit" in body and "disable one" not in body
    urls = re.findall(r'<td class="url">(https://other\d+\.example/hook)', body)
    made = sorted(stripe_double.endpoints("acct_1EngineRoom"), key=lambda e: (e["created"], e["url"]))
    assert urls == [e["url"] for e in made]  # oldest first; those made in the same second by URL, never shuffled


def test_a_resource_stripe_could_not_reach_gets_its_endpoint_from_the_page(app, auth_client, db, stripe_double,
                                                                           stripe_key):
    app.config["PUBLIC_BASE_URL"] = None
    draft, _ = start_connect(auth_client, stripe_key)
    choose(auth_client, draft)
    assert finish(auth_client, draft, [("email", "email", field_id(db, "email"))]).status_code == 204
    res = db.session.query(StripeResource).one()
    assert res.status == "needs_attention" and res.webhook_endpoint_id is None

    refused = auth_client.post(f"/apps/stripe/resources/{res.id}/endpoint/recreate", htmx=True)
    assert refused.status_code == 409 and "not a public address" in refused.get_data(as_text=True)
    app.config["PUBLIC_BASE_URL"] = "https://crm.example.test"  # the operator set the public address
    made = auth_client.post(f"/apps/stripe/resources/{res.id}/endpoint/recreate", htmx=True)
    assert made.status_code == 200 and "A new endpoint was created in Stripe." in made.get_data(as_text=True)
    db.session.expire_all()
    res = db.session.get(StripeResource, res.id)
    [endpoint] = stripe_double.endpoints("acct_1EngineRoom")
    assert res.status == "active" and res.webhook_endpoint_id == endpoint["id"]
    assert endpoint["url"] == f"https://crm.example.test/webhooks/stripe/{res.token}"
