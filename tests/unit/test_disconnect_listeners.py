"""Whoever caches resources hears of a disconnect through the domain's listeners, never by being imported."""
from types import SimpleNamespace

from webapp.stripe_sync.connect import disconnect
from webapp.webhooks import fastlane, intake


def test_listeners_register_once_and_one_failing_does_not_stop_the_others(monkeypatch):
    monkeypatch.setattr(disconnect, "_listeners", [])
    heard = []

    def broken(token):
        raise RuntimeError("cache gone")

    disconnect.on_resource_disconnected(broken)
    disconnect.on_resource_disconnected(heard.append)
    disconnect.on_resource_disconnected(heard.append)
    disconnect._announce_disconnected("tok_1")
    assert heard == ["tok_1"]


def test_installing_the_fast_lane_makes_intake_forget_disconnected_resources(monkeypatch):
    monkeypatch.setattr(disconnect, "_listeners", [])
    app = SimpleNamespace(wsgi_app=object())
    inner = app.wsgi_app
    fastlane.install(app)
    fastlane.install(SimpleNamespace(wsgi_app=object()))
    assert disconnect._listeners == [intake.forget]
    assert isinstance(app.wsgi_app, fastlane.WebhookFastLane) and app.wsgi_app.wsgi_app is inner


def test_the_fast_lane_takes_every_token_length_so_intake_answers_in_json():
    assert fastlane.PATH_RE.match("/webhooks/stripe/" + "x" * 300)
    assert fastlane.PATH_RE.match("/webhooks/stripe/abc/")
    assert not fastlane.PATH_RE.match("/webhooks/stripe/")
    assert not fastlane.PATH_RE.match("/webhooks/stripe/a/b")
