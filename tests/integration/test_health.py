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
