"""The Stripe double must look like Stripe to the official SDK, or tests built on it prove nothing."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe
from stripe._http_client import HTTPClient

from tests.stripe_double import StripeDouble

FIXTURES = pathlib.Path("/work/shared/stripe-events")


@pytest.fixture
def double():
    d = StripeDouble(seed=7)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def account(double):
    return double.add_account(email="owner@engineroom.test", business_name="Engine Room Software")


@pytest.fixture
def sc(double, account):
    """A StripeClient on a test secret key; named sc so it does not shadow the Flask `client` fixture."""
    return stripe.StripeClient(double.add_secret_key(account["id"]), base_addresses={"api": double.url})


@pytest.fixture
def fast_retries(monkeypatch):
    """The SDK sleeps >= 0.5 s between retries; shrink that so retry tests stay fast."""
    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(HTTPClient, "MAX_DELAY", 0.02)


def fixture_object(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} not available")
    return json.loads(path.read_text(encoding="utf-8"))["data"]["object"]


class _Receiver:
    """A loopback webhook receiver recording what Stripe (the double) sent."""

    def __init__(self, status: int = 200) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_account_retrieve(sc, account):
    acct = sc.v1.accounts.retrieve_current()
    assert acct.id == account["id"] and acct.id.startswith("acct_")
    assert acct.object == "account" and acct.type == "standard"
    assert acct.email == "owner@engineroom.test"
    assert acct.business_profile.name == "Engine Room Software"
    assert acct.settings.dashboard.display_name == "Engine Room Software"
    assert acct.last_response.headers["Request-Id"].startswith("req_")


def test_bad_missing_and_publishable_keys(double, account):
    bogus = "sk_test_" + "x" * 20 + "abcd"
    with pytest.raises(stripe.AuthenticationError) as exc:
        stripe.StripeClient(bogus, base_addresses={"api": double.url}).v1.customers.list()
    assert exc.value.http_status == 401
    assert exc.value.user_message == "Invalid API Key provided: sk_test_" + "*" * 20 + "abcd"
    assert bogus not in str(exc.value.json_body)

    r = requests.get(double.url + "/v1/customers")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="Stripe"'
    assert r.json()["error"]["message"].startswith("You did not provide an API key.")

    pk = double.add_publishable_key(account["id"])
    with pytest.raises(stripe.AuthenticationError) as exc:
        stripe.StripeClient(pk, base_addresses={"api": double.url}).v1.customers.list()
    assert exc.value.user_message.startswith("This API call cannot be made with a publishable API key.")

    secret = double.add_secret_key(account["id"])
    double.revoke_key(secret)
    with pytest.raises(stripe.AuthenticationError, match="Expired API Key provided"):
        stripe.StripeClient(secret, base_addresses={"api": double.url}).v1.customers.list()
    assert {r.key_prefix for r in double.requests} == {"sk_test_", "pk_test_", None}


def test_restricted_key_permissions(double, account):
    rk = double.add_restricted_key(account["id"], permissions={"customers": "read", "webhook_endpoints": "read",
                                                               "account": "read"})
    assert rk.startswith("rk_test_")
    sc = stripe.StripeClient(rk, base_addresses={"api": double.url})
    sc.v1.accounts.retrieve_current()
    sc.v1.customers.list()
    sc.v1.webhook_endpoints.list()
    with pytest.raises(stripe.PermissionError) as exc:
        sc.v1.webhook_endpoints.create(params={"url": "https://crm.example.test/hooks",
                                               "enabled_events": ["customer.created"]})
    assert exc.value.http_status == 403
    message = exc.value.user_message
    assert "'rak_webhook_write' permission would allow this request to continue" in message
    assert f"on account '{account['id']}'" in message and rk not in message and rk[-4:] in message
    with pytest.raises(stripe.PermissionError, match="rak_charge_read"):
        sc.v1.charges.list()


def test_customer_pagination_newest_first_exactly_once(double, account, sc):
    double.generate_customers(account["id"], 240, start_created=1_700_000_000)
    for i in range(10):  # same-second ties are ordered too
        double.add_customer(account["id"], email=f"tie{i}@example.test", created=1_700_000_100)
    double.clear_requests()
    seen = [c for c in sc.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    ids = [c.id for c in seen]
    assert len(ids) == 250 and len(set(ids)) == 250
    created = [c.created for c in seen]
    assert created == sorted(created, reverse=True)
    assert [r.params.get("starting_after") for r in double.requests] == [None, ids[99], ids[199]]
    assert seen[-1].email == "customer0@example.test" and seen[-1].object == "customer"

    page = sc.v1.customers.list(params={"limit": 5, "ending_before": ids[20]})
    assert [c.id for c in page.data] == ids[15:20] and page.has_more is True
    page = sc.v1.customers.list(params={"limit": 100, "starting_after": ids[199]})
    assert [c.id for c in page.data] == ids[200:] and page.has_more is False
    assert page.url == "/v1/customers"
    window = sc.v1.customers.list(params={"created": {"gte": 1_700_000_010, "lt": 1_700_000_020}})
    assert sorted(c.created for c in window.data) == list(range(1_700_000_010, 1_700_000_020))


def test_list_param_errors(sc):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.customers.list(params={"limit": 101})
    assert exc.value.param == "limit" and exc.value.code == "parameter_invalid_integer"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.customers.list(params={"colour": "blue"})
    assert exc.value.param == "colour" and exc.value.user_message == "Received unknown parameter: colour"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.customers.list(params={"starting_after": "cus_nope"})
    assert exc.value.http_status == 404 and exc.value.param == "starting_after"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.subscriptions.list(params={"status": "sleeping"})
    assert exc.value.param == "status"


def test_customer_retrieve_create_delete(double, account, sc):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.customers.retrieve("cus_x")
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    assert exc.value.user_message == "No such customer: 'cus_x'"
    created = sc.v1.customers.create(params={"email": "new@example.test", "name": "New Person",
                                             "metadata": {"app_user_id": "u1"},
                                             "address": {"city": "Boston", "country": "US"}})
    assert created.id.startswith("cus_") and created.metadata["app_user_id"] == "u1"
    assert created.address.to_dict() == {"city": "Boston", "country": "US", "line1": None, "line2": None,
                                         "postal_code": None, "state": None}
    assert sc.v1.customers.retrieve(created.id).email == "new@example.test"
    sc.v1.customers.delete(created.id)
    gone = sc.v1.customers.retrieve(created.id)
    assert gone.deleted is True and gone.id == created.id
    assert created.id not in [c.id for c in sc.v1.customers.list().data]


def test_objects_statuses_and_expand(double, account, sc):
    customer = double.add_customer(account["id"], id="cus_Visible1", email="ada@example.com", name="Ada Lovelace",
                                   created=1785748502)
    sub = fixture_object("customer.subscription.deleted.json")
    double.add_object(account["id"], "subscriptions", sub)
    active = dict(sub, id="sub_active1", status="active", created=sub["created"] + 1)
    double.add_object(account["id"], "subscriptions", active)
    assert [s.id for s in sc.v1.subscriptions.list().data] == ["sub_active1"]
    assert {s.id for s in sc.v1.subscriptions.list(params={"status": "all"}).data} == {sub["id"], "sub_active1"}

    session = fixture_object("checkout.session.completed.json")
    double.add_object(account["id"], "checkout_sessions", session,
                      line_items=[{"id": "li_1", "object": "item", "description": "Notebook Pro"}])
    open_session = dict(session, id="cs_test_open", status="open", created=session["created"] + 5)
    double.add_object(account["id"], "checkout_sessions", open_session)
    assert [s.id for s in sc.v1.checkout.sessions.list(params={"status": "complete"}).data] == [session["id"]]
    got = sc.v1.checkout.sessions.retrieve(session["id"], params={"expand": ["customer", "line_items"]})
    assert got.customer.email == customer["email"] and got.line_items.data[0].id == "li_1"
    assert "line_items" not in sc.v1.checkout.sessions.retrieve(session["id"])
    items = sc.v1.checkout.sessions.line_items.list(session["id"])
    assert [i.id for i in items.data] == ["li_1"]

    charge = fixture_object("charge.refunded.json")
    double.add_object(account["id"], "charges", charge)
    listed = sc.v1.charges.list(params={"customer": "cus_Visible1", "expand": ["data.customer"]})
    assert listed.data[0].amount_refunded == 2900 and listed.data[0].customer.name == "Ada Lovelace"
    invoice = fixture_object("invoice.payment_succeeded.json")
    double.add_object(account["id"], "invoices", invoice)
    assert sc.v1.invoices.retrieve(invoice["id"]).status == "paid"
    with pytest.raises(stripe.InvalidRequestError, match="No such charge: 'ch_missing'"):
        sc.v1.charges.retrieve("ch_missing")


def test_webhook_endpoint_crud(double, account, sc):
    created = sc.v1.webhook_endpoints.create(params={
        "url": "https://crm.example.test/webhooks/stripe", "enabled_events": ["customer.created", "charge.refunded"],
        "description": "CRM sync", "metadata": {"workspace": "w1"}})
    assert created.id.startswith("we_") and created.secret.startswith("whsec_")
    assert created.status == "enabled" and created.livemode is False and created.api_version is None
    assert double.endpoints(account["id"])[0]["secret"] == created.secret

    listed = sc.v1.webhook_endpoints.list()
    assert listed.url == "/v1/webhook_endpoints" and [e.id for e in listed.data] == [created.id]
    fetched = sc.v1.webhook_endpoints.retrieve(created.id)
    assert "secret" not in fetched and fetched.enabled_events == ["customer.created", "charge.refunded"]

    updated = sc.v1.webhook_endpoints.update(created.id, params={"disabled": True, "enabled_events": ["*"],
                                                                 "metadata": {"workspace": ""}})
    assert updated.status == "disabled" and updated.enabled_events == ["*"] and updated.metadata.to_dict() == {}

    deleted = sc.v1.webhook_endpoints.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.webhook_endpoints.retrieve(created.id)
    assert exc.value.http_status == 404 and exc.value.user_message == f"No such webhook endpoint: '{created.id}'"


def test_webhook_endpoint_validation(sc):
    def create(**params):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            sc.v1.webhook_endpoints.create(params=params)
        return exc.value

    assert create(enabled_events=["*"]).param == "url"
    assert create(url="https://crm.example.test/h").code == "parameter_missing"
    bad = create(url="https://crm.example.test/h", enabled_events=["customer.created", "customer.exploded"])
    assert bad.param == "enabled_events[1]" and "must be one of" in bad.user_message
    local = create(url="http://127.0.0.1:5000/webhooks", enabled_events=["*"])
    assert local.param == "url" and "publicly accessible" in local.user_message
    assert "explicit scheme" in create(url="crm.example.test/h", enabled_events=["*"]).user_message
    # Test mode accepts plain http for a public host, as Stripe does.
    assert sc.v1.webhook_endpoints.create(params={"url": "http://crm.example.test/h",
                                                  "enabled_events": ["*"]}).url.startswith("http://")


def test_seventeenth_endpoint_refused_per_mode(double, account, sc):
    for i in range(16):
        sc.v1.webhook_endpoints.create(params={"url": f"https://crm.example.test/h/{i}", "enabled_events": ["*"]})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.webhook_endpoints.create(params={"url": "https://crm.example.test/h/16", "enabled_events": ["*"]})
    assert exc.value.http_status == 400 and exc.value.code is None
    assert exc.value.user_message == "You have reached the maximum of 16 test webhook endpoints."
    assert len(sc.v1.webhook_endpoints.list(params={"limit": 100}).data) == 16

    live = stripe.StripeClient(double.add_secret_key(account["id"], livemode=True), base_addresses={"api": double.url})
    with pytest.raises(stripe.InvalidRequestError, match='URLs in livemode must begin with "https://"'):
        live.v1.webhook_endpoints.create(params={"url": "http://crm.example.test/h", "enabled_events": ["*"]})
    for i in range(16):
        assert live.v1.webhook_endpoints.create(params={"url": f"https://crm.example.test/l/{i}",
                                                        "enabled_events": ["*"]}).livemode is True
    with pytest.raises(stripe.InvalidRequestError, match="You have reached the maximum of 16 live webhook endpoints."):
        live.v1.webhook_endpoints.create(params={"url": "https://crm.example.test/l/x", "enabled_events": ["*"]})


def test_rate_limit_is_not_retried_but_lock_timeout_and_500_are(double, account, fast_retries):
    sc = stripe.StripeClient(double.add_secret_key(account["id"]), base_addresses={"api": double.url},
                             max_network_retries=2)
    double.fail_next(1, 429)
    with pytest.raises(stripe.RateLimitError) as exc:
        sc.v1.customers.list()
    # Real rate limits are not retried by the SDK (no Stripe-Should-Retry), so exactly one request was made.
    assert exc.value.json_body["error"]["code"] == "rate_limit" and len(double.requests) == 1
    assert "Stripe-Should-Retry" not in exc.value.headers
    double.clear_requests()

    double.fail_next(2, 429, code="lock_timeout")
    assert sc.v1.customers.list().object == "list"
    assert len(double.requests) == 3

    double.clear_requests()
    double.fail_next(2, 500, path_prefix="/v1/account")
    assert sc.v1.accounts.retrieve_current().id == account["id"]
    assert [r.path for r in double.requests] == ["/v1/account"] * 3
    double.fail_next(3, 503)
    with pytest.raises(stripe.APIError):
        sc.v1.accounts.retrieve_current()


def test_injected_429_consumed_on_first_request(double, account, sc):
    double.fail_next(2, 429)
    with pytest.raises(stripe.RateLimitError):
        sc.v1.customers.list()
    with pytest.raises(stripe.RateLimitError):
        sc.v1.customers.list()
    assert sc.v1.customers.list().object == "list"


def test_token_bucket_rate_limit(double, sc):
    double.set_rate_limit(3)
    statuses = []
    for _ in range(5):
        try:
            sc.v1.customers.list()
            statuses.append(200)
        except stripe.RateLimitError:
            statuses.append(429)
    assert statuses.count(429) >= 1 and statuses[:3] == [200, 200, 200]
    double.set_rate_limit(None)
    sc.v1.customers.list()


def test_down_and_latency(double, sc):
    sc.v1.customers.list()  # open a keep-alive connection first
    double.set_down(True)
    with pytest.raises(stripe.APIConnectionError):
        sc.v1.customers.list()
    assert requests.get(double.url + "/_double/health").json() == {"ok": True}
    double.set_down(False)
    double.set_latency(0.2)
    start = time.monotonic()
    sc.v1.customers.list()
    assert time.monotonic() - start >= 0.2


def test_idempotent_replay(double, account):
    key = double.add_secret_key(account["id"])
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "k1"}
    form = {"url": "https://crm.example.test/h", "enabled_events[0]": "*"}
    first = requests.post(double.url + "/v1/webhook_endpoints", data=form, headers=headers)
    again = requests.post(double.url + "/v1/webhook_endpoints", data=form, headers=headers)
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = requests.post(double.url + "/v1/webhook_endpoints", data=dict(form, description="x"), headers=headers)
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    assert len(double.endpoints(account["id"])) == 1


def test_deliver_signs_exact_bytes(double, account, sc):
    receiver = _Receiver()
    try:
        double.map_webhook_host("crm.example.test", receiver.url)
        endpoint = sc.v1.webhook_endpoints.create(params={
            "url": "https://crm.example.test/webhooks/stripe?ws=1", "enabled_events": ["customer.created"]})
        sc.v1.webhook_endpoints.create(params={"url": "https://crm.example.test/other",
                                               "enabled_events": ["charge.succeeded"]})
        path = FIXTURES / "customer.created.json"
        payload = path.read_bytes() if path.exists() else json.dumps(
            {"id": "evt_1", "object": "event", "type": "customer.created", "livemode": False,
             "data": {"object": {"id": "cus_1", "object": "customer"}}}, indent=2).encode()
        assert double.deliver(account["id"], payload) == [(endpoint.id, 200)]
        assert len(receiver.received) == 1
        got_path, headers, body = receiver.received[0]
        assert got_path == "/webhooks/stripe?ws=1" and body == payload
        assert headers["Content-Type"].startswith("application/json")
        event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], endpoint.secret)
        assert event.type == "customer.created"
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body + b" ", headers["Stripe-Signature"], endpoint.secret)
        sc.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
        assert double.deliver(account["id"], payload) == []
    finally:
        receiver.close()


def test_control_http_endpoints(double):
    base = double.url + "/_double"
    made = requests.post(base + "/accounts", json={"email": "x@example.test", "business_name": "X"}).json()
    acct, key = made["account"]["id"], made["secret_key"]
    assert requests.post(f"{base}/accounts/{acct}/customers/generate", json={"n": 30}).json() == {"generated": 30}
    sc = stripe.StripeClient(key, base_addresses={"api": double.url})
    assert len(sc.v1.customers.list(params={"limit": 100}).data) == 30
    requests.post(base + "/fail_next", json={"n": 1, "status": 429})
    with pytest.raises(stripe.RateLimitError):
        sc.v1.customers.list()
    rk = requests.post(f"{base}/accounts/{acct}/restricted_keys", json={"permissions": {"customers": "read"}}).json()
    assert rk["key"].startswith("rk_test_")
    assert requests.get(f"{base}/accounts/{acct}/endpoints").json() == {"data": []}
    logged = requests.get(base + "/requests").json()["data"]
    assert all(key not in json.dumps(r) for r in logged)


def test_hundred_thousand_customers_list_newest_first(double, account, sc):
    """How fast the double builds them is bench/backfill.py's to measure, not a timed unit test's."""
    double.generate_customers(account["id"], 100_000, start_created=1_600_000_000)
    page = sc.v1.customers.list(params={"limit": 100})
    deep = sc.v1.customers.list(params={"limit": 100, "starting_after": page.data[-1].id})
    assert page.data[0].email == "customer99999@example.test" and deep.data[0].email == "customer99899@example.test"


def test_max_per_second_over_a_known_sequence(double):
    """Sliding windows are half-open, [t, t + window), over the time each request reached the double."""
    from tests.stripe_double import RequestRecord

    times = [100.0, 100.2, 100.4, 100.99, 101.0, 101.5, 103.0, 103.1]
    paths = ["/v1/customers/cus_1", "/v1/customers/cus_2", "/v1/account", "/v1/customers/cus_3",
             "/v1/customers/cus_4", "/v1/customers/cus_5", "/v1/customers/cus_6", "/v1/account"]
    with double._lock:
        double._requests.extend(RequestRecord("GET", p, "sk_test_", {}, t, 200) for p, t in zip(paths, times))
    assert double.max_per_second() == 4  # 100.0 .. 100.99 (101.0 starts the next window)
    assert double.max_per_second("/v1/customers") == 3  # 100.0, 100.2, 100.99
    assert double.max_per_second("/v1/account") == 1
    assert double.max_per_second(window=2.0) == 6  # 100.0 .. 101.5
    assert double.max_per_second(window=0.25) == 2
    assert double.max_per_second("/v1/charges") == 0
    double.clear_requests()
    assert double.max_per_second() == 0


def test_records_carry_arrival_time_and_status(double, account, sc):
    double.set_latency(0.2)
    before = time.time()
    sc.v1.customers.list()
    after = time.time()
    (record,) = double.requests
    assert before <= record.at <= after - 0.2  # stamped on arrival, before the simulated latency
    assert record.status == 200
    double.set_latency(0)
    with pytest.raises(stripe.InvalidRequestError):
        sc.v1.customers.retrieve("cus_missing")
    assert double.requests[-1].status == 404


def test_stats_endpoint_counts_requests_rate_and_429s(double):
    base = double.url + "/_double"
    made = requests.post(base + "/accounts", json={"email": "live@example.test", "livemode": True}).json()
    acct, key = made["account"]["id"], made["secret_key"]
    assert key.startswith("sk_live_")
    generated = requests.post(f"{base}/accounts/{acct}/customers/generate",
                              json={"n": 5, "id_prefix": "cus_bench_", "metadata": {"plan": "plan-{i}"}})
    assert generated.json() == {"generated": 5}
    assert requests.post(base + "/latency", json={"seconds": 0.05}).json() == {"ok": True}
    assert requests.post(base + "/rate_limit", json={"per_second": 3}).json() == {"ok": True}
    sc = stripe.StripeClient(key, base_addresses={"api": double.url}, max_network_retries=0)
    customer = sc.v1.customers.retrieve("cus_bench_000002")
    assert customer.livemode is True and customer.email == "customer2@example.test"
    assert customer.metadata.to_dict() == {"plan": "plan-2"}
    statuses = []
    for i in range(6):
        try:
            sc.v1.customers.retrieve(f"cus_bench_00000{i % 5}")
            statuses.append(200)
        except stripe.RateLimitError:
            statuses.append(429)
    time.sleep(1.1)  # refill the bucket
    sc.v1.accounts.retrieve_current()
    limited = statuses.count(429)
    assert limited >= 1
    stats = requests.get(base + "/stats", params={"path_prefix": "/v1/customers"}).json()
    assert stats == {"requests": 7, "max_per_second": double.max_per_second("/v1/customers"),
                     "rate_limited": limited}
    assert stats["max_per_second"] >= 3
    everything = requests.get(base + "/stats").json()
    assert everything["requests"] == 8 and everything["rate_limited"] == limited
    # The test-mode side of the account has none of the live customers.
    test_key = requests.post(f"{base}/accounts/{acct}/secret_keys", json={"livemode": False}).json()["key"]
    with pytest.raises(stripe.InvalidRequestError):
        stripe.StripeClient(test_key, base_addresses={"api": double.url}).v1.customers.retrieve("cus_bench_000002")


def _get(double, key, path, **params):
    return requests.get(double.url + path, params=params, headers={"Authorization": f"Bearer {key}"})


def test_list_endpoint_rate_limit_names_endpoint_rate(double, account):
    key = double.add_secret_key(account["id"])
    double.add_customer(account["id"], id="cus_limited1", email="l@example.test")
    # Only the per-list-endpoint limit, through the control plane: one list call per second per endpoint.
    assert requests.post(double.url + "/_double/rate_limit",
                         json={"per_second": None, "list_per_second": 1}).json() == {"ok": True}
    assert _get(double, key, "/v1/customers").status_code == 200
    limited = _get(double, key, "/v1/customers", limit="5")
    assert limited.status_code == 429
    assert limited.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert limited.json()["error"]["code"] == "rate_limit" and "Stripe-Should-Retry" not in limited.headers
    # Another list endpoint has its own budget; retrieves are not list calls and the global limit is off.
    assert _get(double, key, "/v1/charges").status_code == 200
    for _ in range(5):
        ok = _get(double, key, "/v1/customers/cus_limited1")
        assert ok.status_code == 200 and "Stripe-Rate-Limited-Reason" not in ok.headers
    assert _get(double, key, "/v1/account").status_code == 200
    # The SDK surfaces the header on its RateLimitError.
    sc = stripe.StripeClient(key, base_addresses={"api": double.url}, max_network_retries=0)
    with pytest.raises(stripe.RateLimitError) as exc:
        sc.v1.charges.list()
    assert exc.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    double.set_rate_limit(None)  # the one-argument call still works and turns both limits off
    assert [_get(double, key, "/v1/customers").status_code for _ in range(3)] == [200, 200, 200]


def test_global_rate_limit_names_global_rate(double, account):
    key = double.add_secret_key(account["id"])
    double.set_rate_limit(2, list_per_second=25)
    assert _get(double, key, "/v1/account").status_code == 200
    assert _get(double, key, "/v1/customers").status_code == 200
    limited = _get(double, key, "/v1/customers")
    assert limited.status_code == 429 and limited.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert limited.json()["error"]["code"] == "rate_limit"
    assert _get(double, key, "/v1/account").headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert double.stats()["rate_limited"] == 2


@pytest.mark.parametrize("kind,prefix,path,extra", [
    ("charges", "ch_", "/v1/charges", {}),
    ("invoices", "in_", "/v1/invoices", {}),
    ("subscriptions", "sub_", "/v1/subscriptions", {"status": "active"}),
    ("checkout_sessions", "cs_test_", "/v1/checkout/sessions", {}),
])
def test_created_filters_on_other_lists(double, account, kind, prefix, path, extra):
    key = double.add_secret_key(account["id"])
    object_name = {"charges": "charge", "invoices": "invoice", "subscriptions": "subscription",
                   "checkout_sessions": "checkout.session"}[kind]
    base = 1_700_000_000
    for i in range(10):  # created base+0 .. base+9, plus a tie at base+5
        double.add_object(account["id"], kind, {"id": f"{prefix}{i:02d}", "object": object_name,
                                                "created": base + i, "livemode": False, **extra})
    double.add_object(account["id"], kind, {"id": f"{prefix}tie", "object": object_name, "created": base + 5,
                                            "livemode": False, **extra})

    def created(**params):
        body = _get(double, key, path, limit="100", **params).json()
        return [o["created"] for o in body["data"]]

    assert created() == sorted(created(), reverse=True) and len(created()) == 11
    assert created(**{"created[gt]": str(base + 7)}) == [base + 9, base + 8]
    assert created(**{"created[gte]": str(base + 7)}) == [base + 9, base + 8, base + 7]
    assert created(**{"created[lt]": str(base + 2)}) == [base + 1, base]
    assert created(**{"created[lte]": str(base + 2)}) == [base + 2, base + 1, base]
    assert created(**{"created[gte]": str(base + 4), "created[lt]": str(base + 7)}) == [
        base + 6, base + 5, base + 5, base + 4]
    assert created(created=str(base + 5)) == [base + 5, base + 5]
    assert created(created=str(base + 50)) == []
    # Newest first, paged with starting_after inside the window, each object exactly once.
    seen, after = [], None
    while True:
        params = {"created[gte]": str(base + 2), "created[lte]": str(base + 8), "limit": "2"}
        if after:
            params["starting_after"] = after
        body = _get(double, key, path, **params).json()
        seen.extend(body["data"])
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    assert [o["created"] for o in seen] == [base + 8, base + 7, base + 6, base + 5, base + 5, base + 4, base + 3,
                                           base + 2]
    assert len({o["id"] for o in seen}) == len(seen)
    bad = _get(double, key, path, **{"created[gt]": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "created[gt]"
