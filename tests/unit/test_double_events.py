"""The double's Events API, outages and endpoint changes must behave like Stripe's, or tests of recovering
undelivered events prove nothing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe

from tests.stripe_double import StripeDouble
from tests.stripe_double.store import Collection
from tests.stripe_double.versions import render_in_version

DAY = 24 * 60 * 60
OLD_VERSION = "2024-06-20"
CURRENT = "2026-07-29.dahlia"


@pytest.fixture
def double():
    d = StripeDouble(seed=11)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def account(double):
    return double.add_account(email="owner@engineroom.test", business_name="Engine Room Software")


@pytest.fixture
def sc(double, account):
    """A StripeClient on a test secret key (the SDK sends its own pinned Stripe-Version)."""
    return stripe.StripeClient(double.add_secret_key(account["id"]), base_addresses={"api": double.url},
                               max_network_retries=0)


class Receiver:
    """A loopback webhook receiver that records each POST's headers and body."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True).start()

    def events(self, secret: str) -> list:
        """Every received body, verified against the endpoint secret as a real handler would."""
        return [stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
                for _, headers, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(double):
    r = Receiver()
    double.map_webhook_host("crm.example.test", r.url)
    yield r
    r.close()


def customer(i: int, **extra) -> dict:
    return {"id": f"cus_ev{i:05d}", "object": "customer", "created": 1_790_000_000 + i, "email": f"c{i}@example.test",
            "livemode": False, "metadata": {}, "name": f"Customer {i}", **extra}


def subscription(sub_id: str = "sub_ev1") -> dict:
    """A dahlia-shaped subscription: the billing period lives on its item."""
    item = {"id": "si_ev1", "object": "subscription_item", "created": 1_790_000_000,
            "current_period_end": 1_792_600_000, "current_period_start": 1_790_000_000, "quantity": 1,
            "subscription": sub_id}
    return {"id": sub_id, "object": "subscription", "created": 1_790_000_000, "customer": "cus_ev00001",
            "items": {"object": "list", "data": [item], "has_more": False, "total_count": 1,
                      "url": f"/v1/subscription_items?subscription={sub_id}"},
            "livemode": False, "metadata": {}, "status": "active"}


def invoice(status: str = "paid") -> dict:
    return {"id": "in_ev1", "object": "invoice", "created": 1_790_000_000, "customer": "cus_ev00001",
            "livemode": False, "status": status,
            "parent": {"quote_details": None, "type": "subscription_details",
                       "subscription_details": {"metadata": {}, "subscription": "sub_ev1"}}}


def endpoint(sc, path: str, events: list[str], **params):
    return sc.v1.webhook_endpoints.create(params={"url": f"https://crm.example.test{path}",
                                                  "enabled_events": events, **params})


def _get(double, key, path, **params):
    return requests.get(double.url + path, params=params, headers={"Authorization": f"Bearer {key}"})


def test_types_type_wildcard_and_their_errors(double, account, sc):
    now = int(time.time())
    kinds = ["customer.created", "customer.updated", "customer.subscription.created", "charge.succeeded",
             "invoice.paid"]
    objects = [customer(1), customer(1, email="new@example.test"), subscription(),
               {"id": "ch_ev1", "object": "charge", "created": now, "livemode": False}, invoice()]
    for i, (kind, obj) in enumerate(zip(kinds, objects)):
        double.emit(account["id"], kind, obj, created=now - 10 + i)

    def types(**params):
        return [e.type for e in sc.v1.events.list(params=params).data]

    assert types() == list(reversed(kinds))
    assert types(types=["charge.succeeded", "customer.created"]) == ["charge.succeeded", "customer.created"]
    assert types(type="customer.*") == ["customer.subscription.created", "customer.updated", "customer.created"]
    assert types(type="customer.subscription.*") == ["customer.subscription.created"]
    assert types(type="invoice.paid") == ["invoice.paid"]
    assert types(type="payout.*") == []
    assert types(delivery_success=False, limit=2) == ["invoice.paid", "charge.succeeded"]  # accepted, ignored

    key = double.add_secret_key(account["id"])
    brackets = _get(double, key, "/v1/events", **{"types[]": ["invoice.paid", "customer.updated"]})
    assert [e["type"] for e in brackets.json()["data"]] == ["invoice.paid", "customer.updated"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.list(params={"type": "customer.*", "types": ["customer.created"]})
    assert exc.value.http_status == 400
    assert exc.value.user_message == "You may only specify one of these parameters: type, types."
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.list(params={"types": [f"customer.t{i}" for i in range(21)]})
    assert exc.value.param == "types"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.list(params={"colour": "blue"})
    assert exc.value.param == "colour"


def test_created_filters_and_retrieve(double, account, sc):
    base = int(time.time()) - 100
    ids = [double.emit(account["id"], "customer.created", customer(i), created=base + i)["id"] for i in range(10)]

    def created(**params):
        return [e.created for e in sc.v1.events.list(params={"limit": 100, **params}).data]

    assert created(created={"gte": base + 7}) == [base + 9, base + 8, base + 7]
    assert created(created={"gt": base + 7}) == [base + 9, base + 8]
    assert created(created={"gte": base + 2, "lt": base + 4}) == [base + 3, base + 2]
    assert created(created={"lte": base + 1}) == [base + 1, base]
    assert created(created=base + 5) == [base + 5]
    got = sc.v1.events.retrieve(ids[3])
    assert got.id == ids[3] and got.object == "event" and got.type == "customer.created"
    assert got.data.object.email == "c3@example.test" and got.request.id is None and got.livemode is False
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.retrieve("evt_1Missing")
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    assert exc.value.user_message == "No such event: 'evt_1Missing'"


def test_pagination_both_directions_across_many_events(double, account, sc):
    now = int(time.time())
    items = [("customer.created", customer(i), {"created": now - 300 + i // 3}) for i in range(250)]  # ties
    emitted = double.emit_many(account["id"], items)
    assert len(emitted) == 250 and len(set(emitted)) == 250
    double.clear_requests()

    newest_first = list(sc.v1.events.list(params={"limit": 100}).auto_paging_iter())
    ids = [e.id for e in newest_first]
    assert len(ids) == 250 and set(ids) == set(emitted)
    assert [(e.created, e.id) for e in newest_first] == sorted(((e.created, e.id) for e in newest_first),
                                                                reverse=True)
    assert [r.params.get("starting_after") for r in double.requests] == [None, ids[99], ids[199]]

    page = sc.v1.events.list(params={"limit": 100, "ending_before": ids[150]})
    assert [e.id for e in page.data] == ids[50:150] and page.has_more is True
    page = sc.v1.events.list(params={"limit": 100, "ending_before": ids[40]})
    assert [e.id for e in page.data] == ids[:40] and page.has_more is False
    # The SDK walks backwards from the oldest with ending_before, oldest first.
    backwards = [e.id for e in sc.v1.events.list(params={"limit": 100, "ending_before": ids[-1]})
                 .auto_paging_iter()]
    assert backwards == list(reversed(ids[:-1]))
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.list(params={"starting_after": "evt_1Nope"})
    assert exc.value.http_status == 404 and exc.value.param == "starting_after"


def test_events_older_than_30_days_are_gone(double, account, sc):
    now = int(time.time())
    old = double.emit(account["id"], "customer.created", customer(1), created=now - 31 * DAY)
    edge = double.emit(account["id"], "customer.created", customer(2), created=now - 29 * DAY)
    fresh = double.emit(account["id"], "customer.created", customer(3))
    assert fresh["created"] >= now
    assert [e.id for e in sc.v1.events.list().data] == [fresh["id"], edge["id"]]
    assert [e.id for e in sc.v1.events.list(params={"created": {"gte": 0}}).data] == [fresh["id"], edge["id"]]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.retrieve(old["id"])
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.events.list(params={"ending_before": old["id"]})
    assert exc.value.param == "ending_before"
    # The double still remembers it, and its object is still served.
    assert [e["id"] for e in double.events(account["id"])] == [fresh["id"], edge["id"], old["id"]]
    assert sc.v1.customers.retrieve("cus_ev00001").email == "c1@example.test"


def test_events_render_in_their_own_version_while_the_api_serves_current_shapes(double, sc):
    pinned = double.add_account(email="old@example.test", api_version=OLD_VERSION)
    old_sc = stripe.StripeClient(double.add_secret_key(pinned["id"]), base_addresses={"api": double.url})
    event = double.emit(pinned["id"], "customer.subscription.updated", subscription(),
                        previous_attributes={"status": "past_due"})
    assert event["api_version"] == OLD_VERSION and event["data"]["previous_attributes"] == {"status": "past_due"}

    # Whatever Stripe-Version the SDK sends, the event comes back in the version it was recorded in.
    for got in (old_sc.v1.events.retrieve(event["id"]), old_sc.v1.events.list().data[0]):
        sub = got.data.object
        assert got.api_version == OLD_VERSION
        assert (sub.current_period_start, sub.current_period_end) == (1_790_000_000, 1_792_600_000)
        assert "current_period_end" not in sub["items"].data[0]
    current = old_sc.v1.subscriptions.retrieve("sub_ev1")
    assert "current_period_end" not in current and current["items"].data[0].current_period_end == 1_792_600_000

    override = double.emit(pinned["id"], "customer.subscription.updated", subscription(), api_version=CURRENT)
    assert "current_period_end" not in override["data"]["object"]
    paid = double.emit(pinned["id"], "invoice.paid", invoice())["data"]["object"]
    assert paid["subscription"] == "sub_ev1" and paid["paid"] is True and "parent" not in paid
    assert list(paid)[:2] == ["id", "object"] and list(paid)[2:] == sorted(list(paid)[2:])
    charge = double.emit(pinned["id"], "charge.succeeded", {"id": "ch_ev1", "object": "charge",
                                                            "created": 1_790_000_000})["data"]["object"]
    assert charge["invoice"] is None


def test_render_in_version_boundaries():
    sub = subscription()
    snapshot = json.dumps(sub)
    assert render_in_version(sub, "2025-03-31.basil") is sub
    assert render_in_version(sub, "2026-10-28.endive") is sub
    old = render_in_version(sub, "2025-03-01.dashboard")
    assert old["current_period_end"] == 1_792_600_000 and json.dumps(sub) == snapshot  # input untouched
    unpaid = render_in_version(invoice("open"), OLD_VERSION)
    assert unpaid["paid"] is False and unpaid["subscription"] == "sub_ev1"
    one_off = render_in_version({"id": "in_x", "object": "invoice", "status": "draft", "parent": None}, OLD_VERSION)
    assert one_off["subscription"] is None
    assert render_in_version({"id": "ch_x", "object": "charge", "invoice": "in_x"}, OLD_VERSION)["invoice"] == "in_x"
    with pytest.raises(ValueError):
        render_in_version(sub, "2024-13-01")


def test_each_endpoint_receives_its_own_api_version(double, account, sc, receiver):
    plain = endpoint(sc, "/plain", ["customer.subscription.created"])
    pinned = endpoint(sc, "/pinned", ["customer.subscription.created"], api_version=OLD_VERSION)
    event = double.emit(account["id"], "customer.subscription.created", subscription())
    assert event["api_version"] == CURRENT and event["pending_webhooks"] == 0  # both answered 2xx
    by_path = {path: (headers, body) for path, headers, body in receiver.received}
    got_plain = stripe.Webhook.construct_event(by_path["/plain"][1], by_path["/plain"][0]["Stripe-Signature"],
                                               plain.secret)
    got_pinned = stripe.Webhook.construct_event(by_path["/pinned"][1], by_path["/pinned"][0]["Stripe-Signature"],
                                                pinned.secret)
    assert got_plain.id == got_pinned.id == event["id"]
    assert got_plain.api_version == CURRENT and "current_period_end" not in got_plain.data.object
    assert got_pinned.api_version == OLD_VERSION and got_pinned.data.object.current_period_end == 1_792_600_000
    assert by_path["/plain"][1].startswith(b'{\n  "id": "evt_')  # Stripe's pretty-printed payload


def test_dropped_deliveries_are_recorded_and_redelivered(double, account, sc, receiver):
    hook = endpoint(sc, "/hooks", ["customer.created"])
    double.drop_deliveries()
    emitted = [double.emit(account["id"], "customer.created", customer(i)) for i in range(3)]
    assert receiver.received == []
    assert [(d["event_id"], d["status"], d["error"]) for d in double.deliveries] == [
        (e["id"], None, "dropped (simulated outage)") for e in emitted]
    listed = sc.v1.events.list(params={"type": "customer.created"}).data
    assert {e.id for e in listed} == {e["id"] for e in emitted}
    assert all(e.pending_webhooks == 1 for e in listed)
    assert double.redeliver(account["id"], emitted[0]["id"]) == [(hook.id, None)]  # still down
    assert receiver.received == []

    assert requests.post(double.url + "/_double/deliveries", json={"dropped": False}).json()["dropped"] is False
    for e in emitted:
        assert double.redeliver(account["id"], e["id"]) == [(hook.id, 200)]
    assert [e.id for e in receiver.events(hook.secret)] == [e["id"] for e in emitted]
    assert sc.v1.events.retrieve(emitted[0]["id"]).pending_webhooks == 0
    assert double.emit(account["id"], "customer.created", customer(9))["pending_webhooks"] == 0
    with pytest.raises(KeyError):
        double.redeliver(account["id"], "evt_1Unknown")


def test_disabled_and_deleted_endpoints_receive_nothing(double, account, sc, receiver):
    first = endpoint(sc, "/first", ["*"])
    second = endpoint(sc, "/second", ["customer.created"])
    disabled = double.disable_endpoint(account["id"], first.id)
    assert disabled["status"] == "disabled" and sc.v1.webhook_endpoints.retrieve(first.id).status == "disabled"
    event = double.emit(account["id"], "customer.created", customer(1))
    assert [path for path, _, _ in receiver.received] == ["/second"] and event["pending_webhooks"] == 0

    double.delete_endpoint(account["id"], second.id)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sc.v1.webhook_endpoints.retrieve(second.id)
    assert exc.value.http_status == 404
    sent = len(double.deliveries)
    assert double.emit(account["id"], "customer.created", customer(2))["pending_webhooks"] == 0
    assert double.redeliver(account["id"], event["id"]) == []
    assert len(double.deliveries) == sent and len(receiver.received) == 1
    with pytest.raises(KeyError):
        double.disable_endpoint(account["id"], second.id)
    with pytest.raises(KeyError):
        double.delete_endpoint(account["id"], "we_1Unknown")


def test_emit_upserts_objects_and_refuses_mistakes(double, account, sc):
    double.emit(account["id"], "customer.created", customer(1))
    assert sc.v1.customers.retrieve("cus_ev00001").email == "c1@example.test"
    double.emit(account["id"], "customer.updated", customer(1, email="moved@example.test"),
                previous_attributes={"email": "c1@example.test"})
    assert sc.v1.customers.retrieve("cus_ev00001").email == "moved@example.test"
    double.emit(account["id"], "customer.deleted", customer(1))
    assert sc.v1.customers.retrieve("cus_ev00001").deleted is True
    upcoming = double.emit(account["id"], "invoice.upcoming", {"object": "invoice", "status": "draft"})
    assert upcoming["data"]["object"]["object"] == "invoice" and sc.v1.invoices.list().data == []
    session = {"id": "cs_test_ev1", "object": "checkout.session", "created": 1_790_000_000, "status": "complete"}
    double.emit(account["id"], "checkout.session.completed", session, event_id="evt_1Chosen")
    assert sc.v1.checkout.sessions.retrieve("cs_test_ev1").status == "complete"
    assert sc.v1.events.retrieve("evt_1Chosen").data.object.id == "cs_test_ev1"
    with pytest.raises(ValueError, match="already recorded"):
        double.emit(account["id"], "checkout.session.completed", session, event_id="evt_1Chosen")
    with pytest.raises(ValueError, match="unknown Stripe event type"):
        double.emit(account["id"], "customer.exploded", customer(2))
    with pytest.raises(ValueError, match="unknown Stripe API version"):
        double.emit(account["id"], "customer.created", customer(2), api_version="2020-01-01")
    with pytest.raises(TypeError):
        double.emit_many(account["id"], [{"type": "customer.created", "object": customer(2), "colour": "red"}])
    assert double.get_object(account["id"], "customers", "cus_ev00002") is None  # nothing half-stored


def test_live_events_stay_in_live_mode(double, account, sc):
    live_key = double.add_secret_key(account["id"], livemode=True)
    live = stripe.StripeClient(live_key, base_addresses={"api": double.url})
    event = double.emit(account["id"], "customer.created", customer(1, livemode=True))
    assert event["livemode"] is True and [e.id for e in live.v1.events.list().data] == [event["id"]]
    assert sc.v1.events.list().data == []
    with pytest.raises(stripe.InvalidRequestError, match="a similar object exists in live mode"):
        sc.v1.events.retrieve(event["id"])


def test_ten_thousand_events_page_from_both_ends(double, account, sc):
    now = int(time.time())
    items = [{"type": "charge.succeeded", "object": {"id": f"ch_ev{i:05d}", "object": "charge", "created": now,
                                                     "livemode": False}, "created": now - 10_000 + i}
             for i in range(10_000)]
    ids = double.emit_many(account["id"], items, deliver=False)
    first = sc.v1.events.list(params={"limit": 100})
    assert first.data[0].id == ids[-1] and first.has_more is True
    last = sc.v1.events.list(params={"limit": 100, "starting_after": ids[100]})
    assert [e.id for e in last.data] == list(reversed(ids[:100])) and last.has_more is False
    assert sc.v1.charges.retrieve("ch_ev09999").object == "charge"


def test_events_list_has_its_own_endpoint_rate_limit(double, account, sc):
    event = double.emit(account["id"], "customer.created", customer(1))
    key = double.add_secret_key(account["id"])
    double.set_rate_limit(None, list_per_second=1)
    assert _get(double, key, "/v1/events").status_code == 200
    limited = _get(double, key, "/v1/events", limit="5")
    assert limited.status_code == 429 and limited.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert limited.json()["error"]["code"] == "rate_limit"
    assert _get(double, key, f"/v1/events/{event['id']}").status_code == 200  # a retrieve is not a list call
    assert _get(double, key, "/v1/customers").status_code == 200  # another list endpoint, another budget


def test_restricted_keys_need_event_read(double, account):
    double.emit(account["id"], "customer.created", customer(1))
    allowed = double.add_restricted_key(account["id"], permissions={"events": "read"})
    refused = double.add_restricted_key(account["id"], permissions={"customers": "read"})
    assert len(stripe.StripeClient(allowed, base_addresses={"api": double.url}).v1.events.list().data) == 1
    with pytest.raises(stripe.PermissionError, match="rak_event_read"):
        stripe.StripeClient(refused, base_addresses={"api": double.url}).v1.events.list()


def test_control_routes(double, receiver):
    base = double.url + "/_double"
    made = requests.post(base + "/accounts", json={"email": "ctl@example.test", "api_version": OLD_VERSION}).json()
    acct, key = made["account"]["id"], made["secret_key"]
    sc = stripe.StripeClient(key, base_addresses={"api": double.url})
    hook = endpoint(sc, "/ctl", ["invoice.paid"])
    assert requests.post(base + "/deliveries", json={"dropped": True}).json() == {"ok": True, "dropped": True}
    event = requests.post(f"{base}/accounts/{acct}/events", json={"type": "invoice.paid", "object": invoice()}).json()
    assert event["api_version"] == OLD_VERSION and event["data"]["object"]["paid"] is True
    quiet = requests.post(f"{base}/accounts/{acct}/events",
                          json={"type": "invoice.paid", "object": invoice(), "deliver": False,
                                "created": int(time.time()) + 5, "api_version": CURRENT}).json()
    assert "parent" in quiet["data"]["object"]
    listed = requests.get(f"{base}/accounts/{acct}/events").json()["data"]
    assert [e["id"] for e in listed] == [quiet["id"], event["id"]]
    requests.post(base + "/deliveries", json={"dropped": False})
    redone = requests.post(f"{base}/accounts/{acct}/events/{event['id']}/redeliver").json()
    assert redone == {"results": [{"endpoint_id": hook.id, "status": 200}]}
    assert [e.id for e in receiver.events(hook.secret)] == [event["id"]]
    disabled = requests.post(f"{base}/accounts/{acct}/endpoints/{hook.id}/disable").json()
    assert disabled["status"] == "disabled"
    gone = requests.delete(f"{base}/accounts/{acct}/endpoints/{hook.id}")
    assert gone.json() == {"id": hook.id, "object": "webhook_endpoint", "deleted": True}
    assert requests.delete(f"{base}/accounts/{acct}/endpoints/{hook.id}").status_code == 400
    assert requests.post(f"{base}/accounts/{acct}/events", json={"type": "nope", "object": {}}).status_code == 400


def test_bulk_put_replacing_an_id_added_in_the_same_batch_keeps_one_entry():
    """A put() inside bulk_put once bisected the unsorted keys and left a duplicate behind."""
    coll = Collection()
    coll.bulk_put([("b", 5, "b1")])
    coll.page(limit=1)  # sorted and clean
    coll.bulk_put([("z", 1, "z1"), ("a", 9, "a1"), ("z", 1, "z2")])
    assert list(coll.newest_first()) == ["a1", "b1", "z2"] and len(coll) == 3
