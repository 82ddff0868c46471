"""Connected Stripe resources made straight in the database (their API calls go to the root
conftest's Stripe double), and a helper that signs and posts event files exactly as Stripe does."""
import hashlib
import hmac
import json
import os
import secrets as secrets_module
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import EVENTS_DIR
from webapp.config import ROOT

def worker_env(app, redis_url: str, stripe_double, **extra) -> dict:
    """A worker process's environment: this test's database, Redis and Stripe double."""
    return {**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": redis_url,
            "STRIPE_API_BASE": stripe_double.url, "ENCRYPTION_KEY": app.config["ENCRYPTION_KEY"],
            "SECRET_KEY": "test", **extra}


def start_worker(env: dict, name: str | None = None, burst: bool = True, sweep: bool = False,
                 stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """worker.py in a process (and session) of its own, so a test can SIGKILL it like an OOM killer."""
    args = [sys.executable, "worker.py"] + (["--name", name] if name else [])
    args += ([] if sweep else ["--no-sweep"]) + (["--burst"] if burst else [])
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True)


ACCOUNT_ID = "acct_1EngineRoom"
DEFAULT_MAPPING = (("email", "email"), ("name", "first_name"))
DEFAULT_SECRET = "whsec_test_engine_room_0001"
FAST_SETTINGS = {
    "EVENT_RETRY_INTERVALS": [0, 0],   # RQ retries at once, inside the same burst
    "STRIPE_RATE_LIMIT_BACKOFF": 0.01,
    "WEBHOOK_CACHE_SECONDS": 0,        # every request reads the resource, so tests can change it
}


@dataclass
class Connected:
    """What a test needs of a connected resource, detached from any session."""

    id: int
    account_id: int
    kind: str
    token: str
    secrets: list

    @property
    def url(self) -> str:
        """The webhook URL Stripe would be given."""
        return f"/webhooks/stripe/{self.token}"


@pytest.fixture
def connect_resource(app, db, stripe_double, stripe_key):
    """Connected resources without the connect flow, on the double's Engine Room account (Ada is cus_Visible1)."""
    from webapp.crm.models import ContactField
    from webapp.crypto import encrypt
    from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeResource, WebhookSecret

    assert app.config["STRIPE_API_BASE"] == stripe_double.url
    app.config.update(FAST_SETTINGS)
    key = stripe_key

    def connect(kind, mapping=DEFAULT_MAPPING, secrets=(DEFAULT_SECRET,), trigger_historical=False):
        account = db.session.scalar(select(StripeAccount).where(StripeAccount.stripe_account_id == ACCOUNT_ID))
        if account is None:
            account = StripeAccount(stripe_account_id=ACCOUNT_ID, email="owner@engineroom.test",
                                    display_name="Engine Room Software", livemode=False,
                                    secret_key_enc=encrypt(key), key_mask=key[:8] + "…" + key[-4:])
            db.session.add(account)
        token = secrets_module.token_urlsafe(32)
        resource = StripeResource(account=account, kind=kind, token=token, trigger_historical=trigger_historical,
                                  webhook_endpoint_id=f"we_test_{kind}",
                                  webhook_url=f"https://crm.example.test/webhooks/stripe/{token}")
        db.session.add(resource)
        for secret in secrets:
            resource.secrets.append(WebhookSecret(secret_enc=encrypt(secret)))
        for position, (stripe_field, field_key) in enumerate(mapping):
            field = db.session.scalar(select(ContactField).where(ContactField.key == field_key))
            assert field is not None, f"no CRM field {field_key!r}"
            resource.mappings.append(FieldMapping(position=position, stripe_field=stripe_field, field_id=field.id))
        db.session.commit()
        return Connected(resource.id, account.id, kind, token, list(secrets))

    return connect


def event_path(name) -> Path:
    """A fixture file by name, e.g. "charge.succeeded" or "edge/customer.created"."""
    name = str(name)
    return EVENTS_DIR / (name if name.endswith(".json") else name + ".json")


def event_bytes(name, **changes) -> bytes:
    """The file's exact bytes, or with top-level / data.object changes re-serialised like Stripe."""
    raw = event_path(name).read_bytes()
    if not changes:
        return raw
    event = json.loads(raw)
    for key, value in changes.items():
        if key.startswith("object__"):
            event["data"]["object"][key[len("object__"):]] = value
        else:
            event[key] = value
    return json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")


def sign(payload: bytes, secret: str, timestamp=None) -> str:
    """The Stripe-Signature header for exactly these bytes."""
    t = int(time.time() if timestamp is None else timestamp)
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={sig}"


@pytest.fixture
def post_event(app):
    """post_event(resource, name_or_bytes, secret=None, timestamp=None) → the Flask response."""
    flask_client = app.test_client()

    def post(resource, path_or_bytes, secret=None, timestamp=None, signature=None):
        payload = path_or_bytes if isinstance(path_or_bytes, bytes) else event_path(path_or_bytes).read_bytes()
        header = signature if signature is not None else sign(payload, secret or resource.secrets[0], timestamp)
        return flask_client.post(resource.url, data=payload,
                                 headers={"Stripe-Signature": header, "Content-Type": "application/json"})

    return post


def kind_for(name) -> str:
    """The resource kind whose endpoint receives this event file."""
    from webapp.stripe_sync.events import resource_for_event

    return resource_for_event(json.loads(event_path(name).read_bytes())["type"]).kind


def story_files() -> list[str]:
    """Ada's story, in the order Stripe created the events."""
    files = [p for p in EVENTS_DIR.glob("*.json")]
    files.sort(key=lambda p: json.loads(p.read_bytes())["created"])
    return [p.stem for p in files]


@pytest.fixture
def connect_all(connect_resource):
    """One connected resource per kind, as a marketer connecting everything would have."""
    from webapp.stripe_sync.events import RESOURCE_KINDS

    def connect(**kw):
        return {kind: connect_resource(kind, **kw) for kind in RESOURCE_KINDS}

    return connect


@pytest.fixture
def get_page(auth_client):
    """A page as the admin after a worker ended the shared session (drops the user Flask-Login cached on g)."""
    from flask import g

    def get(url):
        g.pop("_login_user", None)
        resp = auth_client.get(url)
        assert resp.status_code == 200, resp.status_code
        return resp.get_data(as_text=True)

    return get


@pytest.fixture
def app_logs(caplog):
    """caplog for webapp loggers, which Alembic's fileConfig disabled when the test database was migrated."""
    import logging

    disabled = [lg for name, lg in logging.Logger.manager.loggerDict.items()
                if name.startswith("webapp") and isinstance(lg, logging.Logger) and lg.disabled]
    for lg in disabled:
        lg.disabled = False
    caplog.set_level(logging.INFO, logger="webapp")
    yield caplog
    for lg in disabled:
        lg.disabled = True
