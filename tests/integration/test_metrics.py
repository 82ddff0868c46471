"""Prometheus metrics: counted where the work happens, readable by an admin or with the token."""
import pytest


@pytest.fixture
def parsed(auth_client):
    def get():
        text = auth_client.get("/metrics").get_data(as_text=True)
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values
    return get


def test_metrics_need_login_or_token(app, client):
    assert client.get("/metrics").status_code == 401
    app.config["METRICS_TOKEN"] = "scrape-me"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    resp = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert resp.status_code == 200 and "crm_queue_depth" in resp.get_data(as_text=True)


def test_received_processed_and_queue_depth(connect_resource, post_event, run_worker, parsed):
    res = connect_resource("customer")
    before = parsed()
    queued = 'crm_stripe_events_received_total{result="queued"}'
    assert post_event(res, "customer.created").status_code == 200
    assert post_event(res, "customer.created").status_code == 200  # a duplicate delivery
    mid = parsed()
    assert mid[queued] - before.get(queued, 0) == 1
    assert mid['crm_stripe_events_received_total{result="duplicate"}'] - before.get(
        'crm_stripe_events_received_total{result="duplicate"}', 0) == 1
    assert mid["crm_queue_depth"] == 1 and mid["crm_events_waiting"] == 1  # one drain job, one event for it
    run_worker()
    after = parsed()
    created = 'crm_stripe_events_processed_total{outcome="created"}'
    assert after[created] - mid.get(created, 0) == 1
    assert after["crm_queue_depth"] == 0 and after["crm_events_waiting"] == 0
    assert after["crm_oldest_unprocessed_event_age_seconds"] == 0
    assert after["crm_stripe_event_processing_seconds_count"] > mid.get("crm_stripe_event_processing_seconds_count", 0)
