"""A throwaway deployment for benchmarks: Redis, a migrated database, one Stripe account with one or
more connected resources, gunicorn serving the app, and RQ worker processes, all on loopback and
stopped afterwards."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.embedded_redis import RedisServer, free_port  # noqa: E402

log = logging.getLogger("bench")
SECRET = "whsec_bench_secret_0001"
ENCRYPTION_KEY = "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="
# mapping name -> (Stripe field, CRM field key) rows; "plan" is the custom text field the Stack creates.
MAPPINGS = {
    # Every mapped value is on the invoice / charge / session itself (subscriptions carry none).
    "object": (("email", "email"), ("name", "first_name")),
    # Those plus a metadata key, which only the Stripe Customer has: the worker must retrieve it.
    "customer": (("email", "email"), ("name", "first_name"), ("metadata.plan", "plan")),
}
PLAN_FIELD_LABEL = "Plan"


def with_database(url: str, name: str) -> str:
    """The server URL pointed at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def pg_admin(url: str, sql: str) -> None:
    """One statement outside a transaction on the server's maintenance database."""
    import psycopg
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(sql)


def wait_for_http(url: str, timeout: float = 30) -> bool:
    """True once the URL answers at all (any status), False after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return True
        except requests.RequestException:
            time.sleep(0.1)
    return False


class Stack:
    """Everything one benchmark run needs; use as a context manager.

    `database_url` names a PostgreSQL *server*: each Stack gets a fresh database on it, dropped
    afterwards. Without it, a fresh SQLite file in the Stack's temporary folder.

    One StripeAccount (`account_id`, `livemode`, its `secret_key` stored encrypted as the connect
    flow stores it) with one StripeResource per kind in `kinds` (default: just `kind`), each with
    its own webhook token (`stack.tokens[kind]`, `stack.token` is the first one's) and the same
    signing secret `SECRET`. `mapping` picks the field mappings of every resource (MAPPINGS):
    "object" maps Customer Email and Customer Name, "customer" adds `metadata.plan` into a custom
    text field "Plan" the Stack creates (its key is `stack.plan_field_key`). `stripe_api_base`
    becomes STRIPE_API_BASE for the app, gunicorn and the workers (a Stripe double's address)."""

    def __init__(self, database_url: str | None = None, web_workers: int = 2, wsgi: str = "app:app",
                 kind: str = "customer", extra_env: dict | None = None, *, kinds: tuple[str, ...] | None = None,
                 livemode: bool = False, secret_key: str | None = None, stripe_api_base: str | None = None,
                 mapping: str = "object", account_id: str = "acct_bench", keep: bool = False):
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {sorted(MAPPINGS)}, not {mapping!r}")
        self.tmp = Path(tempfile.mkdtemp(prefix="crm-bench-"))
        self.pg_server = database_url
        self.pg_name = "crm_bench_" + os.urandom(5).hex() if database_url else None
        self.database_url = (with_database(database_url, self.pg_name) if database_url
                             else f"sqlite:///{self.tmp / 'bench.sqlite3'}")
        self.web_workers = web_workers
        self.wsgi = wsgi
        self.kinds = tuple(kinds) if kinds else (kind,)
        self.kind = self.kinds[0]
        self.livemode = livemode
        self.secret_key = secret_key or f"sk_{'live' if livemode else 'test'}_bench0000000000"
        self.stripe_api_base = stripe_api_base
        self.mapping = mapping
        self.account_id = account_id
        self.keep = keep  # leave the SQLite file (and the PostgreSQL database) for a look afterwards
        self.plan_field_key: str | None = None
        self.redis = RedisServer(data_dir=self.tmp / "redis")
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.extra_env = extra_env or {}
        self.tokens: dict[str, str] = {}
        self.token = None

    @property
    def env(self) -> dict:
        """Environment for the app, gunicorn and workers."""
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url, "SECRET_KEY": "bench",
                    "ENCRYPTION_KEY": ENCRYPTION_KEY, "PUBLIC_BASE_URL": "https://crm.example.test",
                    "PYTHONPATH": str(ROOT)})
        if self.stripe_api_base:
            env["STRIPE_API_BASE"] = self.stripe_api_base
        env.update(self.extra_env)
        return env

    def __enter__(self) -> "Stack":
        if self.pg_server:
            pg_admin(self.pg_server, f"CREATE DATABASE {self.pg_name}")
        self.redis.start()
        os.environ.update({k: v for k, v in self.env.items() if k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY",
                                                                      "ENCRYPTION_KEY", "PUBLIC_BASE_URL",
                                                                      "STRIPE_API_BASE")})
        self._prepare_database()
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.workers + self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers + self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.redis.stop()
        if getattr(self, "_engine", None) is not None:
            self._engine.dispose()
        if self.keep:
            return
        if self.pg_server:
            pg_admin(self.pg_server, f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _prepare_database(self) -> None:
        """Migrate and connect the account's resources, whose signing secret we know."""
        from flask_migrate import upgrade

        from webapp import create_app
        from webapp.crm.models import ContactField
        from webapp.crypto import encrypt
        from webapp.extensions import db
        from webapp.stripe_sync.events import resource
        from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeResource, WebhookSecret

        for kind in self.kinds:
            resource(kind)  # an unknown kind fails here, not as events nobody subscribes to
        app = create_app({"INSTANCE_PATH": str(self.tmp)})
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"), revision="heads")
            if "plan" in (crm for _, crm in MAPPINGS[self.mapping]):
                from webapp.crm.service import create_field
                self.plan_field_key = create_field(PLAN_FIELD_LABEL, "text").key
            account = StripeAccount(stripe_account_id=self.account_id, email="bench@example.test",
                                    livemode=self.livemode, secret_key_enc=encrypt(self.secret_key),
                                    key_mask=self.secret_key[:8] + "…" + self.secret_key[-4:])
            fields = {f.key: f for f in db.session.query(ContactField)}
            fields["plan"] = fields.get(self.plan_field_key)
            for kind in self.kinds:
                token = "bench-" + os.urandom(16).hex()
                self.tokens[kind] = token
                res = StripeResource(account=account, kind=kind, sync_type="new_only", token=token,
                                     webhook_endpoint_id=f"we_bench_{kind}",
                                     webhook_url=f"https://crm.example.test/webhooks/stripe/{token}")
                res.secrets.append(WebhookSecret(secret_enc=encrypt(SECRET)))
                for position, (stripe_field, crm_key) in enumerate(MAPPINGS[self.mapping]):
                    res.mappings.append(FieldMapping(position=position, stripe_field=stripe_field,
                                                     field_id=fields[crm_key].id))
                db.session.add(res)
            db.session.commit()
            db.engine.dispose()
        self.token = self.tokens[self.kind]

    def start_web(self, wsgi: str | None = None) -> str:
        """gunicorn with the configured number of sync workers; returns the base URL."""
        cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers",
               str(self.web_workers), "--log-level", "warning", wsgi or self.wsgi]
        self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=self.env))
        url = f"http://127.0.0.1:{self.port}"
        if not wait_for_http(url + "/healthz"):
            raise RuntimeError("gunicorn did not start")
        return url

    def start_workers(self, n: int, worker_class: str = "simple") -> None:
        """n worker.py processes, returning once all have registered with Redis (start-up, which
        builds the app and runs the first sweeps, is CPU-heavy and not what the figures measure)."""
        for i in range(n):
            self.workers.append(subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py"), "--worker-class", worker_class, "--name", f"bench-{i}"],
                cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from redis import Redis
        from rq import Worker

        conn = Redis.from_url(self.redis.url)
        deadline = time.monotonic() + 60
        while Worker.count(connection=conn) < len(self.workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the first sweeps run right after registering

    def stop_workers(self) -> None:
        """Stop the workers (warm shutdown)."""
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            proc.wait(timeout=30)
        self.workers.clear()

    def engine(self):
        """One SQLAlchemy engine on the Stack's database, for reading results."""
        from sqlalchemy import create_engine
        engine = getattr(self, "_engine", None) or create_engine(_sqlalchemy_url(self.database_url))
        self._engine = engine
        return engine

    def count_done(self) -> int:
        """Events that reached a final state."""
        from sqlalchemy import text
        with self.engine().connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM stripe_events WHERE status IN ('processed', 'skipped', 'ignored', 'failed')"
            )).scalar()

    def status_counts(self) -> dict[str, int]:
        """stripe_events rows by status."""
        from sqlalchemy import text
        with self.engine().connect() as conn:
            return {status: n for status, n in conn.execute(text(
                "SELECT status, count(*) FROM stripe_events GROUP BY status"))}

    def event_times(self) -> list[tuple[datetime, datetime]]:
        """(received_at, processed_at) of every stripe_events row with a processed_at, as naive UTC."""
        from sqlalchemy import text
        with self.engine().connect() as conn:
            rows = conn.execute(text(
                "SELECT received_at, processed_at FROM stripe_events WHERE processed_at IS NOT NULL")).all()
        return [(_as_datetime(r[0]), _as_datetime(r[1])) for r in rows]


def _as_datetime(value) -> datetime:
    """SQLite hands DateTime columns back as ISO text through plain SQL."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _sqlalchemy_url(url: str) -> str:
    """psycopg 3 for PostgreSQL URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def event_payloads(n: int, customers: int = 200, start: int = 1_800_000_000, prefix: str = "evt_bench"
                   ) -> list[bytes]:
    """n distinct customer events (created, then updates) spread over `customers` people."""
    template = json.loads((ROOT.parent / "shared" / "stripe-events" / "customer.updated.json").read_text())
    out = []
    for i in range(n):
        event = json.loads(json.dumps(template))
        event["id"] = f"{prefix}_{i:07d}"
        event["type"] = "customer.created" if i < customers else "customer.updated"
        event["created"] = start + i
        obj = event["data"]["object"]
        obj["id"] = f"cus_bench_{i % customers:05d}"
        obj["email"] = f"customer{i % customers}@example.test"
        obj["name"] = f"Customer {i % customers} v{i // customers}"
        out.append(json.dumps(event, indent=2).encode())
    return out
