"""/healthz answers without login and reports the backlog; Redis down makes it 503."""
from webapp.embedded_redis import RedisServer


def test_healthz_ok_without_login(client):
    resp = client.get("/healthz")
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["database"] == "ok" and body["redis"] == "ok" and body["queue_depth"] == 0
    assert body["events_waiting_for_a_drain"] == 0
    assert body["oldest_unprocessed_event_age_seconds"] is None


def test_healthz_reports_redis_down(app, client):
    server = RedisServer().start()
    app.config["REDIS_URL"] = server.url
    app.extensions.pop("redis", None)
    server.stop()
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["redis"] == "unreachable"


def test_healthz_and_metrics_report_endpoints_stripe_disabled_or_lost(app, db, connect_resource, client,
                                                                      auth_client):
    import time

    from webapp.stripe_sync.models import StripeAccount, StripeResource

    body = client.get("/healthz").get_json()
    assert body["stripe_accounts_with_disabled_or_missing_endpoints"] == 0
    assert body["oldest_event_checkpoint_age_seconds"] is None
    customers, charges, invoices = (connect_resource(kind) for kind in ("customer", "charge", "invoice"))
    db.session.get(StripeResource, customers.id).endpoint_status = "disabled"
    db.session.get(StripeResource, charges.id).endpoint_status = "missing"
    db.session.get(StripeResource, invoices.id).endpoint_status = "enabled"
    db.session.get(StripeAccount, customers.account_id).events_checkpoint = int(time.time()) - 3600
    db.session.commit()

    resp = client.get("/healthz")
    body = resp.get_json()
    assert resp.status_code == 200  # the process is fine; recovery keeps bringing events in meanwhile
    assert body["stripe_accounts_with_disabled_or_missing_endpoints"] == 1
    assert (body["stripe_endpoints_disabled"], body["stripe_endpoints_missing"]) == (1, 1)
    assert 3600 <= body["oldest_event_checkpoint_age_seconds"] < 3700
    metrics = auth_client.get("/metrics").get_data(as_text=True)
    assert 'crm_stripe_endpoints_unhealthy{state="disabled"} 1.0' in metrics
    assert 'crm_stripe_endpoints_unhealthy{state="missing"} 1.0' in metrics
    assert "crm_stripe_accounts_with_endpoint_problems 1.0" in metrics
    assert "crm_stripe_oldest_event_checkpoint_age_seconds 36" in metrics
