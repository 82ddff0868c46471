"""A throwaway deployment for benchmarks: Redis, a migrated database, one connected resource,
gunicorn serving the app, and RQ worker processes, all on loopback and stopped afterwards."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.embedded_redis import RedisServer, free_port  # noqa: E402

log = logging.getLogger("bench")
SECRET = "whsec_bench_secret_0001"
ENCRYPTION_KEY = "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="


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
    afterwards. Without it, a fresh SQLite file in the Stack's temporary folder."""

    def __init__(self, database_url: str | None = None, web_workers: int = 2, wsgi: str = "app:app",
                 kind: str = "customer", extra_env: dict | None = None):
        self.tmp = Path(tempfile.mkdtemp(prefix="crm-bench-"))
        self.pg_server = database_url
        self.pg_name = "crm_bench_" + os.urandom(5).hex() if database_url else None
        self.database_url = (with_database(database_url, self.pg_name) if database_url
                             else f"sqlite:///{self.tmp / 'bench.sqlite3'}")
        self.web_workers = web_workers
        self.wsgi = wsgi
        self.kind = kind
        self.redis = RedisServer(data_dir=self.tmp / "redis")
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.extra_env = extra_env or {}
        self.token = None

    @property
    def env(self) -> dict:
        """Environment for the app, gunicorn and workers."""
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url, "SECRET_KEY": "bench",
                    "ENCRYPTION_KEY": ENCRYPTION_KEY, "PUBLIC_BASE_URL": "https://crm.example.test",
                    "PYTHONPATH": str(ROOT)})
        env.update(self.extra_env)
        return env

    def __enter__(self) -> "Stack":
        if self.pg_server:
            pg_admin(self.pg_server, f"CREATE DATABASE {self.pg_name}")
        self.redis.start()
        os.environ.update({k: v for k, v in self.env.items() if k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY",
                                                                      "ENCRYPTION_KEY", "PUBLIC_BASE_URL")})
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
        if self.pg_server:
            pg_admin(self.pg_server, f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _prepare_database(self) -> None:
        """Migrate and connect one resource whose signing secret we know."""
        from flask_migrate import upgrade

        from webapp import create_app
        from webapp.crm.models import ContactField
        from webapp.crypto import encrypt
        from webapp.extensions import db
        from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeResource, WebhookSecret

        app = create_app({"INSTANCE_PATH": str(self.tmp)})
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"), revision="heads")
            account = StripeAccount(stripe_account_id="acct_bench", email="bench@example.test", livemode=False,
                                    secret_key_enc=encrypt("sk_test_bench0000000000"), key_mask="sk_test_…0000")
            self.token = "bench-" + os.urandom(16).hex()
            res = StripeResource(account=account, kind=self.kind, sync_type="new_only", token=self.token,
                                 webhook_endpoint_id="we_bench", webhook_url="https://crm.example.test/x")
            res.secrets.append(WebhookSecret(secret_enc=encrypt(SECRET)))
            fields = {f.key: f for f in db.session.query(ContactField)}
            res.mappings.append(FieldMapping(position=0, stripe_field="email", field_id=fields["email"].id))
            res.mappings.append(FieldMapping(position=1, stripe_field="name", field_id=fields["first_name"].id))
            db.session.add(res)
            db.session.commit()
            db.engine.dispose()

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

    def count_done(self) -> int:
        """Events that reached a final state."""
        from sqlalchemy import create_engine, text
        engine = getattr(self, "_engine", None) or create_engine(_sqlalchemy_url(self.database_url))
        self._engine = engine
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT count(*) FROM stripe_events WHERE status IN ('processed', 'skipped', 'ignored', 'failed')"
            )).scalar()


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
