"""Plain helpers the test layers share (fixtures live in the conftests). Domain modules are imported
inside the helpers that use them, so moving one breaks those helpers, not every test that imports this."""
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from webapp.config import ROOT

EVENTS_DIR = ROOT.parent / "shared" / "stripe-events"
PG_URL = os.environ.get("TEST_DATABASE_URL", "")  # a PostgreSQL server to test on; empty means SQLite
ACCOUNT_ID = "acct_1EngineRoom"  # the Stripe double's "Engine Room Software" account
HX = {"HX-Request": "true"}


# --- pages and the database ---------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


def csrf_from(html: str) -> str:
    """Pull a CSRF token out of a rendered page, as a browser form would submit it."""
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


def count(db, model, *where):
    """How many rows of model match the conditions."""
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


# --- Stripe event files ---------------------------------------------------------------------------

def event_path(name) -> Path:
    """A fixture file by name, e.g. "charge.succeeded" or "edge/customer.created"."""
    name = str(name)
    return EVENTS_DIR / (name if name.endswith(".json") else name + ".json")


def load_event(name) -> dict:
    """A fixture event parsed, by relative path, e.g. "edge/charge.succeeded.json"."""
    return json.loads(event_path(name).read_text(encoding="utf-8"))


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


def event_bytes_with(fixture, **changes) -> bytes:
    """A shared fixture event, optionally with a new id / created / data.object fields."""
    raw = (EVENTS_DIR / fixture).read_bytes()
    if not changes:
        return raw
    event = json.loads(raw)
    for key in ("id", "created"):
        if key in changes:
            event[key] = changes.pop(key)
    if "object_id" in changes:  # another Stripe customer (or object) than the fixture's
        changes["id"] = changes.pop("object_id")
    event["data"]["object"].update(changes)
    return json.dumps(event, indent=2, ensure_ascii=False).encode()


def customer_events(n, start=0, name="customer.updated", **extra) -> list[bytes]:
    """n distinct customer events for n/2 people."""
    template = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    out = []
    for i in range(start, start + n):
        ev = json.loads(json.dumps(template))
        ev["id"], ev["created"] = f"evt_fault_{i:05d}", 1_790_000_000 + i
        ev["data"]["object"].update(id=f"cus_fault_{i // 2:05d}", email=f"p{i // 2}@example.test",
                                    name=f"Person {i}", **extra)
        out.append(json.dumps(ev, indent=2).encode())
    return out


def sign(payload: bytes, secret: str, timestamp=None) -> str:
    """The Stripe-Signature header for exactly these bytes."""
    t = int(time.time() if timestamp is None else timestamp)
    sig = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={sig}"


def kind_for(name) -> str:
    """The resource kind whose endpoint receives this event file."""
    from webapp.stripe_sync.events import resource_for_event

    return resource_for_event(json.loads(event_path(name).read_bytes())["type"]).kind


def story_files() -> list[str]:
    """Ada's story, in the order Stripe created the events."""
    files = [p for p in EVENTS_DIR.glob("*.json")]
    files.sort(key=lambda p: json.loads(p.read_bytes())["created"])
    return [p.stem for p in files]


STORY = story_files()


# --- worker processes -----------------------------------------------------------------------------

def worker_env(app, redis_url: str, stripe_double, **extra) -> dict:
    """A worker process's environment: this test's database, Redis and Stripe double."""
    return {**os.environ, "DATABASE_URL": app.config["DATABASE_URL"], "REDIS_URL": redis_url,
            "STRIPE_API_BASE": stripe_double.url, "ENCRYPTION_KEY": app.config["ENCRYPTION_KEY"],
            "SECRET_KEY": "test", **extra}


def start_worker(env: dict, name: str | None = None, burst: bool = True, sweep: bool = False,
                 stderr=subprocess.DEVNULL, recovery: bool = False) -> subprocess.Popen:
    """worker.py in a process (and session) of its own, so a test can SIGKILL it like an OOM killer."""
    args = [sys.executable, "worker.py"] + (["--name", name] if name else [])
    args += ([] if sweep else ["--no-sweep"]) + (["--burst"] if burst else [])
    args += [] if recovery else ["--no-recovery"]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True)


# --- the connect flow over HTTP -------------------------------------------------------------------

def field_id(db, key):
    """The id of the CRM field with this key, as the mapping form posts it."""
    from webapp.crm.models import ContactField

    return db.session.query(ContactField).filter_by(key=key).one().id


def start_connect(auth_client, key):
    """Steps 1 and 2 up to the mapping rows; returns the draft id."""
    auth_client.get("/apps/stripe")
    resp = auth_client.post("/apps/stripe/connect", {"secret_key": key}, htmx=True)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    draft = re.search(r'name="draft" value="([^"]+)"', resp.get_data(as_text=True)).group(1)
    return draft, resp


def choose(auth_client, draft, kind="customer", sync_type="new_only"):
    """Step 3: the resource and sync type, as the modal posts them."""
    return auth_client.post("/apps/stripe/connect/resource", {"draft": draft, "kind": kind, "sync_type": sync_type},
                            htmx=True)


def finish(auth_client, draft, rows):
    """Step 4: the mapping rows (role, Stripe field, CRM field id) and Finish."""
    data = {"draft": draft, "row_role": [r[0] for r in rows], "stripe_field": [r[1] for r in rows],
            "crm_field": [str(r[2] or "") for r in rows]}
    return auth_client.post("/apps/stripe/connect/finish", data, htmx=True)


def connect(auth_client, db, key, kind="customer", extra=(("extra", "name", "first_name"),)):
    """Run the connect flow (or "Connect a new resource" for a connected account); returns the resource."""
    from webapp.stripe_sync.models import StripeAccount, StripeResource

    account = db.session.query(StripeAccount).filter_by(status="connected").first()
    if account is None:
        draft, _ = start_connect(auth_client, key)
    else:
        auth_client.get("/apps/stripe")  # the page whose button posts, and its CSRF token
        body = auth_client.post(f"/apps/stripe/accounts/{account.id}/resources/new", htmx=True).get_data(as_text=True)
        draft = re.search(r'name="draft" value="([^"]+)"', body).group(1)
    assert choose(auth_client, draft, kind).status_code == 200
    rows = [("email", "email", field_id(db, "email"))] + [(r, s, field_id(db, f)) for r, s, f in extra]
    assert finish(auth_client, draft, rows).status_code == 204
    return db.session.query(StripeResource).filter_by(kind=kind).one()


def add_mapping_row(dialog):
    """"Add field mapping"; returns the new row once htmx has wired it up. A row is in the page before
    htmx processes it (it carries `htmx-added` until then), and a choice made in that moment sends no
    request: no person is that quick, a test is."""
    import re

    from playwright.sync_api import expect

    rows = dialog.locator(".mapping-row")
    add = dialog.get_by_role("button", name="Add field mapping")
    expect(add).to_be_visible()  # the mapping step has arrived, its rows with it
    count = rows.count()
    add.click()
    expect(rows).to_have_count(count + 1)
    row = rows.nth(count)
    expect(row).not_to_have_class(re.compile(r"\bhtmx-added\b"))
    return row


def open_connect_modal(page):
    """Apps → search "Stripe" → Connect Account, as a marketer clicks it; returns the dialog."""
    from playwright.sync_api import expect

    page.goto("/apps/")
    page.get_by_label("Search apps").press_sequentially("Stripe", delay=20)
    page.locator("#app-list").get_by_text("Stripe", exact=True).click()
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Connect Account").click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    return dialog


# --- the historical import ------------------------------------------------------------------------

def start_import(db, connected) -> int:
    """Mark the resource as connected with history and queue its import, as connect.finish does."""
    from webapp.stripe_sync.history.importer import start_backfill
    from webapp.stripe_sync.models import StripeResource

    resource = db.session.get(StripeResource, connected.id)
    resource.sync_type = "historical"
    db.session.commit()
    return start_backfill(resource).id


def backfill(db, backfill_id):
    """The import's row as a worker left it, read afresh."""
    from webapp.stripe_sync.models import Backfill

    db.session.expire_all()
    return db.session.get(Backfill, backfill_id)


# --- automations ----------------------------------------------------------------------------------

# Automation steps and their emails retry at once, inside the same worker burst.
FAST = {"AUTOMATION_RETRY_INTERVALS": [0, 0], "SMTP_RETRY_INTERVALS": [0, 0]}
DUNNING_BODY = ('<p>Hi %FIRSTNAME%,</p><p>Your payment of %STRIPE_AMOUNT% for %STRIPE_PRODUCT_NAME% failed.</p>'
                '<p><a href="%STRIPE_INVOICE_URL%">Update your card</a></p>')
INVOICE_URL = ("https://invoice.stripe.com/i/acct_1Ovd2aLm3xVt9QeK/"
               "test_YWNjdF8xT3ZkMmFMbTN4VnQ5UWVLLF9sTFc5Y2FQaTlNTmdXeGJBUEVWS3JiVHosODEwODczNzU102002BsDPJTw?s=ap")


def make_automation(name, trigger, config, actions, event_types=(), active=True):
    """An automation built through the domain functions the pages call."""
    from webapp.automations import service

    automation = service.create(name)
    service.set_trigger(automation, trigger, config, list(event_types))
    for kind, settings in actions:
        service.add_step(automation, kind, settings)
    if active:
        service.activate(automation)
    return automation
