"""Fixtures every test layer shares: a migrated database, a real Redis, a real RQ worker, connected
Stripe resources and signed event posts, the app served on loopback, and a logged-in Chromium page.
Plain helpers live in tests/helpers.py."""
import base64
import hashlib
import os
import secrets as secrets_module
import shutil
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.helpers import ACCOUNT_ID, PG_URL, csrf_from, event_path, sign
from webapp import create_app
from webapp.config import HTMX_CDN_URL, HTMX_SRI, ROOT
from webapp.embedded_redis import RedisServer

CACHE = ROOT / "tests" / ".cache"
HTMX_FILE = CACHE / "htmx.min.js"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery"
# Where an app on the database alone sends Redis and Stripe calls: a closed port, so a stray one fails at once.
NO_REDIS = "redis://127.0.0.1:1/0"
NO_STRIPE = "http://127.0.0.1:1"


# --- Redis and database ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server per test process, on a free port."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def empty_redis(redis_server):
    """The process's redis-server emptied, so no test sees another's queue or rate limits."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server


# With TEST_DATABASE_URL (PG_URL, a PostgreSQL server, as scripts/test starts one) every test gets a
# fresh database cloned from a migrated template; without it, a copy of a migrated SQLite file.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_admin(sql: str) -> None:
    """Run one statement outside a transaction on the server's maintenance database."""
    import psycopg
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql)


def _pg_url(dbname: str) -> str:
    """The server URL pointed at another database."""
    return PG_URL.rsplit("/", 1)[0] + "/" + dbname


def _migrate(url: str, instance: Path) -> None:
    """Apply every migration to an empty database with Flask-Migrate."""
    from flask_migrate import upgrade

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "t", "ENCRYPTION_KEY": _fernet_key(),
                      "INSTANCE_PATH": str(instance), "REDIS_URL": NO_REDIS})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        from webapp.extensions import db
        db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    """A database migrated once; each test gets a copy (a file copy, or CREATE DATABASE … TEMPLATE)."""
    folder = tmp_path_factory.mktemp("template")
    if PG_URL:
        name = f"tpl_{WORKER}"
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _pg_admin(f"CREATE DATABASE {name}")
        _migrate(_pg_url(name), folder)
        yield name
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    path = folder / "template.sqlite3"
    _migrate(f"sqlite:///{path}", folder)
    yield path


@pytest.fixture
def database_url(tmp_path, migrated_template):
    """A fresh migrated database for one test."""
    if PG_URL:
        name = f"t_{WORKER}_{uuid.uuid4().hex[:10]}"
        _pg_admin(f"CREATE DATABASE {name} TEMPLATE {migrated_template}")
        yield _pg_url(name)
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    db_path = tmp_path / "crm.sqlite3"
    shutil.copy(migrated_template, db_path)
    yield f"sqlite:///{db_path}"


def _fernet_key() -> str:
    """A fixed test Fernet key."""
    return base64.urlsafe_b64encode(b"0" * 32).decode()


@pytest.fixture
def stripe_double():
    """Our Stripe double on loopback; app_config points STRIPE_API_BASE at it."""
    from tests.stripe_double import StripeDouble

    double = StripeDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture
def stripe_key(stripe_double):
    """A test-mode account in the double, "Engine Room Software", and its secret key."""
    try:
        stripe_double.add_account(email="owner@engineroom.test", business_name="Engine Room Software",
                                  id="acct_1EngineRoom")
    except ValueError:
        pass  # a narrower fixture seeded the same account already
    if stripe_double.get_object("acct_1EngineRoom", "customers", "cus_Visible1") is None:
        stripe_double.add_customer("acct_1EngineRoom", id="cus_Visible1", email="ada@example.com",
                                   name="Ada Lovelace", metadata={"plan_tier": "pro", "workspace_id": "ws_42"})
    stripe_double.add_customer("acct_1EngineRoom", email="grace@example.com", name="Grace Hopper",
                               metadata={"plan_tier": "pro", "workspace_id": "ws_42"})
    return stripe_double.add_secret_key("acct_1EngineRoom")


@pytest.fixture
def database_config(tmp_path, database_url):
    """The create_app mapping for an app on a fresh migrated database alone: no Redis, no Stripe double."""
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "REDIS_URL": NO_REDIS,
        "SECRET_KEY": "test-secret",
        "ENCRYPTION_KEY": _fernet_key(),
        "INSTANCE_PATH": str(tmp_path),
        "PUBLIC_BASE_URL": "https://crm.example.test",
        "RATELIMIT_STORAGE_URI": "memory://",
        "STRIPE_API_BASE": NO_STRIPE,
    }


@pytest.fixture
def app_config(database_config, empty_redis, stripe_double):
    """The database plus an emptied Redis and the Stripe double; tests may tweak it before the app fixture
    builds (tests/unit/conftest.py narrows it to the database alone)."""
    return {
        **database_config,
        "REDIS_URL": empty_redis.url,
        "RATELIMIT_STORAGE_URI": empty_redis.url,
        "STRIPE_API_BASE": stripe_double.url,
        "STRIPE_MAX_NETWORK_RETRIES": 1,
        "STRIPE_TIMEOUT": 5,
    }


@pytest.fixture
def app(app_config):
    """A fresh app on what app_config gives it."""
    application = create_app(app_config)
    with application.app_context():
        yield application
        from webapp.extensions import db
        db.session.remove()
        db.engine.dispose()
        if "intake_engine" in application.extensions:
            application.extensions["intake_engine"].dispose()


@pytest.fixture
def db(app):
    """The SQLAlchemy handle, inside an app context."""
    from webapp.extensions import db as _db
    return _db


# --- users and the Flask test client ----------------------------------------------------------

@pytest.fixture
def admin(app):
    """The first admin, created through the domain function."""
    from webapp.auth.service import create_user
    return create_user(ADMIN_EMAIL, ADMIN_PASSWORD)


class Client:
    """The Flask test client plus the page's CSRF token, so tests post as a browser would."""

    def __init__(self, flask_client):
        self.raw = flask_client
        self.token = None

    def get(self, url, **kw):
        resp = self.raw.get(url, **kw)
        text = resp.get_data(as_text=True)
        if resp.mimetype == "text/html" and ("csrf_token" in text or "X-CSRFToken" in text):
            self.token = csrf_from(text)
        return resp

    def post(self, url, data=None, htmx=False, **kw):
        if self.token is None:
            self.get("/login")
        data = dict(data or {})
        headers = dict(kw.pop("headers", {}) or {})
        if htmx:
            headers.update({"HX-Request": "true", "X-CSRFToken": self.token})
        else:
            data.setdefault("csrf_token", self.token)
        return self.raw.post(url, data=data, headers=headers, **kw)


@pytest.fixture
def client(app):
    """A browser-like client with no session."""
    return Client(app.test_client())


@pytest.fixture
def auth_client(app, admin):
    """A client logged in as the admin through the real login form."""
    c = Client(app.test_client())
    c.get("/login")
    resp = c.post("/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    c.get(resp.headers["Location"])  # as a browser follows the redirect: the new session's CSRF token
    return c


# --- RQ -----------------------------------------------------------------------------------------

@pytest.fixture
def run_worker(app):
    """Run a real RQ worker in burst mode until the queue is empty."""
    from rq import SimpleWorker

    from webapp.redis_queue import get_queue, get_redis

    def run():
        # A context of its own, as in worker.py: jobs get their own session and never detach the test's.
        with app.app_context():
            worker = SimpleWorker([get_queue()], connection=get_redis())
            worker.work(burst=True, with_scheduler=False)
        from webapp.extensions import db as _db
        _db.session.expire_all()
        return worker
    return run


# --- connected Stripe resources and signed events ------------------------------------------------

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


@pytest.fixture
def connect_all(connect_resource):
    """One connected resource per kind, as a marketer connecting everything would have."""
    from webapp.stripe_sync.events import RESOURCE_KINDS

    def connect(**kw):
        return {kind: connect_resource(kind, **kw) for kind in RESOURCE_KINDS}

    return connect


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


# --- live server and browser -------------------------------------------------------------------

class LiveServer:
    """The app served by a threaded WSGI server on a loopback port."""

    def __init__(self, application):
        self.server = make_server("127.0.0.1", 0, application, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server(app):
    """The app on loopback for the browser."""
    with LiveServer(app) as server:
        yield server


def _sri(data: bytes) -> str:
    """Subresource-integrity value of a file."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@pytest.fixture(scope="session")
def htmx_js():
    """The same htmx file the CDN serves, fetched from the npm registry by scripts/test."""
    if not HTMX_FILE.exists():
        pytest.fail(f"{HTMX_FILE} is missing: run scripts/test, which fetches htmx from the npm registry")
    data = HTMX_FILE.read_bytes()
    assert _sri(data) == HTMX_SRI, "the cached htmx file does not match the pinned SRI hash"
    return data


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; never a downloaded browser."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        pytest.fail("Debian's chromium is not installed: run scripts/test, which installs it")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def _offline_page(browser, live_server, htmx_js, **context_options):
    """A fresh page whose only reachable hosts are the live server and the (local) htmx CDN; fails the test
    on a JavaScript error or a request for the internet."""
    context = browser.new_context(base_url=live_server.url, **context_options)
    blocked = []

    def route(r):
        url = r.request.url
        if url == HTMX_CDN_URL:
            r.fulfill(status=200, body=htmx_js, headers={"Content-Type": "application/javascript",
                                                         "Access-Control-Allow-Origin": "*"})
        elif url.startswith(live_server.url):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not blocked, f"the page tried to reach the internet: {blocked}"


@pytest.fixture
def page(browser, live_server, htmx_js):
    """A fresh browser page whose only reachable hosts are the live server and the (local) htmx CDN."""
    with _offline_page(browser, live_server, htmx_js) as pg:
        yield pg


@pytest.fixture
def logged_in_page(page, admin):
    """A browser page after logging in through the form."""
    return log_in(page)


# --- accessibility (axe-core) ----------------------------------------------------------------------

AXE_VERSION = "4.14.1"  # the exact axe-core release scripts/test fetches from the npm registry
AXE_FILE = CACHE / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_RUN = """([selector, tags]) => axe.run(selector ? document.querySelector(selector) : document,
    {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
  .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                     targets: v.nodes.map(n => n.target.join(' '))})))"""


@pytest.fixture(scope="session")
def axe_js():
    """The axe-core file scripts/test fetched, checked to be the pinned release."""
    if not AXE_FILE.exists():
        pytest.fail(f"{AXE_FILE} is missing: run scripts/test, which fetches axe-core from the npm registry")
    text = AXE_FILE.read_text(encoding="utf-8")
    assert f"axe v{AXE_VERSION}" in text[:200], f"the cached axe-core file is not version {AXE_VERSION}"
    return text


class Axe:
    """Gathers every serious or critical violation of a test's audits, so one failure lists them all."""

    SERIOUS = ("serious", "critical")

    def __init__(self, page, source: str):
        self.page, self.source = page, source
        self.found: list[str] = []

    def violations(self, selector: str | None = None) -> list[dict]:
        """Serious and critical WCAG A/AA violations in the document, or in the element matching selector."""
        if not self.page.evaluate("typeof window.axe === 'object'"):
            self.page.add_script_tag(content=self.source)  # the context bypasses the CSP for this alone
        found = self.page.evaluate(AXE_RUN, [selector, WCAG_AA])
        return [v for v in found if v["impact"] in self.SERIOUS]

    def __call__(self, where: str, selector: str | None = None) -> list[dict]:
        """Audit what the page shows once htmx is idle; `where` names it in the failure message."""
        from playwright.sync_api import expect

        self.page.wait_for_load_state("load")
        busy = self.page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")
        expect(busy).to_have_count(0)  # no request in flight, nothing swapping or settling
        found = self.violations(selector)
        for v in found:
            targets = "\n      ".join(v["targets"][:6]) + ("\n      …" if len(v["targets"]) > 6 else "")
            self.found.append(f"{where}: {v['id']} ({v['impact']}, {len(v['targets'])}×) {v['help']}\n      {targets}")
        return found

    def assert_clean(self):
        """Fail listing every violation found since the test began."""
        assert not self.found, (f"axe-core {AXE_VERSION} found serious or critical WCAG A/AA violations:\n  "
                                + "\n  ".join(self.found))


@pytest.fixture
def axe_page(browser, live_server, htmx_js, axe_js):
    """A fresh page, not logged in, whose context bypasses the CSP so axe can be injected; page.axe audits it."""
    with _offline_page(browser, live_server, htmx_js, bypass_csp=True) as pg:
        pg.axe = Axe(pg, axe_js)
        yield pg


def log_in(page, email=ADMIN_EMAIL, password=ADMIN_PASSWORD):
    """Log in through the form, as logged_in_page does, on any page fixture."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/contacts")
    return page
