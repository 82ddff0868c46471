"""Missed-events benchmark: how fast a backlog that webhooks never delivered is recovered from Stripe's
Events API and applied to the CRM.

    .venv/bin/python bench/recovery.py                                  # 10,000 events at 0 and 300 ms, SQLite
    .venv/bin/python bench/recovery.py --latency-ms 300 --events 2000   # one smaller run
    .venv/bin/python bench/recovery.py --database-url postgresql://postgres@127.0.0.1:PORT/postgres --json runs.jsonl
    .venv/bin/python bench/recovery.py --live                            # live mode: Stripe 100/s, budget 80/s

Why: when the CRM's webhook endpoint is down (an outage, a disabled endpoint, a deploy gone wrong),
Stripe keeps the events but stops delivering them, and the contacts go stale until the check for
missed events (webapp/stripe_sync/recovery/) has read them from GET /v1/events and the drain has
applied them. The figure a user feels is how long after the outage the CRM has caught up.

Per run (every --latency-ms × --workers combination), everything fresh:
- The Stripe double (tests/stripe_double) in a process of its own, answering every API request after
  --latency-ms and limiting as Stripe's test mode does: 25 requests/s per account and 25/s per list
  endpoint (429 beyond). One test-mode account, its sk_test_ key; webhook deliveries dropped (the outage).
  --live: a live-mode account, its sk_live_ key, 100/s per account (the app's STRIPE_BUDGET_LIVE 80/s).
- A fresh database (SQLite, or one of its own on the --database-url PostgreSQL server, dropped
  afterwards), migrated, and an embedded Redis.
- --workers real `worker.py` processes, started (and registered with Redis) before the account
  exists, so their start-up check finds nothing; their environment has the production defaults of
  every tunable (the account's request budget STRIPE_BUDGET_TEST 20/s, of which recovery, like the
  historical import, may use BACKFILL_BUDGET_SHARE 0.75; STRIPE_BUDGET_LIST 20/s) except
  RECOVERY_SETTLE=0 (nothing in the backlog is young enough for it to matter either way).
- One StripeAccount holding the double's key (encrypted, as the connect flow stores it) and all five
  resources (customer, charge, invoice, checkout session, subscription) connected a day ago, each with
  its real webhook endpoint made in the double by the app's connect code, mapping Email and Customer
  Name → First Name. The account's checkpoint (events_checkpoint) is one minute before the first
  missed event: everything before it was delivered.
- The backlog: --events events (10,000), created over the last hour (55 to 5 minutes ago), six per
  customer as a checkout with a subscription produces them: customer.created,
  customer.subscription.created (incomplete), charge.succeeded (29.00 USD), invoice.payment_succeeded
  (paid), customer.subscription.updated (active), checkout.session.completed (paid, 29.00 USD). So
  five in six are payment events. Objects are the shared fixtures' (/work/shared/stripe-events) with
  ids, customer, email, name, amounts and times changed. Six older events (90 minutes ago, delivered
  before the outage) give the reader the anchor a real account has.

Measured from `request_check(account)` (what the "Check for missed events" button and the worker's
schedule call) with a 0.1 s poll of the stripe_events rows marked recovered:
- read s: until all N rows are stored (the recovery job has read every page and queued it);
- applied s: until all N are in a final state (processed, skipped, ignored or failed);
- events/s over each; from the double: requests to GET /v1/events and customer retrieves (and the
  most in any second), 429s it answered, and how the requests split while the reader was still
  reading; each worker's peak RSS (VmHWM, read just before it is stopped) and CPU seconds.
Each run prints a markdown table row (and, with --json, appends a JSON line with every figure).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.backfill import (  # noqa: E402
    ENCRYPTION_KEY, Workers, _app, _cpu_seconds, _sqlalchemy_url, _write_json, keep_or_clean, start_double,
)
from webapp.embedded_redis import RedisServer, free_port  # noqa: E402

log = logging.getLogger("bench.recovery")
ACCOUNT_ID = "acct_1BenchRecovery"
# Stripe's requests per second for the mode: (per account, per list endpoint); docs.stripe.com/rate-limits
STRIPE_LIMITS = {True: (100, 25), False: (25, 25)}
KINDS = ("customer", "charge", "invoice", "checkout_session", "subscription")
FIXTURES = next((p for p in (ROOT.parent / "shared" / "stripe-events", Path("/work/shared/stripe-events"))
                 if p.is_dir()), Path("/work/shared/stripe-events"))
# One checkout with a subscription, in the order Stripe sends it: (event type, seconds after the customer)
SEQUENCE = (("customer.created", 0), ("customer.subscription.created", 1), ("charge.succeeded", 2),
            ("invoice.payment_succeeded", 2), ("customer.subscription.updated", 3),
            ("checkout.session.completed", 3))
AMOUNT = 2900
FINAL = ("processed", "skipped", "ignored", "failed")
BACKLOG_FROM, BACKLOG_TO = 55 * 60, 5 * 60  # the missed events' age: 55 to 5 minutes
BEFORE_OUTAGE = 90 * 60  # the delivered events that anchor the reader
EMIT_CHUNK = 1000


def _templates() -> dict[str, dict]:
    """The fixtures' objects, so the events have Stripe's real shapes."""
    return {t: json.loads((FIXTURES / f"{t}.json").read_text(encoding="utf-8"))["data"]["object"]
            for t, _ in SEQUENCE}


def checkout_events(c: int, at: int, templates: dict[str, dict], tag: str = "bench", live: bool = False
                    ) -> list[dict]:
    """Customer c's six events (emit_many items), created from `at` on: a paid checkout of a subscription."""
    cid, email, name = f"cus_{tag}_{c:06d}", f"customer{c}@example.test", f"Customer {c}"
    sub, invoice, charge = f"sub_{tag}_{c:06d}", f"in_{tag}_{c:06d}", f"ch_{tag}_{c:06d}"
    intent, session = f"pi_{tag}_{c:06d}", f"cs_{'live' if live else 'test'}_{tag}{c:07d}"
    out = []
    for event_type, offset in SEQUENCE:
        obj = copy.deepcopy(templates[event_type])
        obj["livemode"] = live
        item = {"type": event_type, "object": obj, "created": at + offset, "livemode": live}
        if event_type == "customer.created":
            obj.update(id=cid, email=email, name=name, created=at, metadata={"app_user_id": f"user_{c}"},
                       invoice_prefix=f"B{c:07X}")
        elif event_type.startswith("customer.subscription."):
            obj.update(id=sub, customer=cid, created=at + 1, start_date=at + 1, billing_cycle_anchor=at + 1,
                       latest_invoice=invoice, trial_start=None, trial_end=None,
                       status="incomplete" if event_type.endswith("created") else "active")
            if event_type.endswith("updated"):
                item["previous_attributes"] = {"status": "incomplete"}
        elif event_type == "charge.succeeded":
            obj.update(id=charge, customer=cid, created=at + 2, amount=AMOUNT, amount_captured=AMOUNT,
                       payment_intent=intent, receipt_email=email, description="Subscription creation",
                       billing_details=dict(obj.get("billing_details") or {}, email=email, name=name))
        elif event_type == "invoice.payment_succeeded":
            obj.update(id=invoice, customer=cid, created=at + 1, customer_email=email, customer_name=name,
                       status="paid", amount_due=AMOUNT, amount_paid=AMOUNT, subtotal=AMOUNT, total=AMOUNT,
                       billing_reason="subscription_create", number=f"B{c:07X}-0001", effective_at=at + 2)
            details = (obj.get("parent") or {}).get("subscription_details")
            if isinstance(details, dict):
                details["subscription"] = sub
        else:  # checkout.session.completed
            obj.update(id=session, customer=cid, created=at, expires_at=at + 86400, client_reference_id=f"user_{c}",
                       payment_status="paid", status="complete", amount_subtotal=AMOUNT, amount_total=AMOUNT,
                       subscription=sub, invoice=invoice,
                       customer_details=dict(obj.get("customer_details") or {}, email=email, name=name))
        out.append(item)
    return out


def backlog(n: int, now: int, live: bool = False) -> tuple[list[dict], list[dict], int]:
    """(missed events, delivered events before the outage, the outage's start): n events of ceil(n/6)
    customers spread over the last hour, ids increasing so events of one second list in Stripe's order."""
    templates = _templates()
    customers = -(-n // len(SEQUENCE))
    start, span = now - BACKLOG_FROM, BACKLOG_FROM - BACKLOG_TO
    missed = []
    for c in range(customers):
        missed.extend(checkout_events(c, start + c * span // max(1, customers), templates, live=live))
    missed = missed[:n]
    before = checkout_events(0, now - BEFORE_OUTAGE, templates, tag="before", live=live)
    for serial, item in enumerate(before + missed):
        item["event_id"] = f"evt_1Bench{serial:014d}"
    return missed, before, start - 60


def control(base: str, method: str, path: str, **kwargs) -> dict:
    """One request to the double's /_double/ control routes; raises on an error answer."""
    resp = requests.request(method, f"{base}/_double/{path}", timeout=300, **kwargs)
    resp.raise_for_status()
    return resp.json()


def emit(base: str, items: list[dict]) -> None:
    """Record the events in the double (deliveries are dropped), a thousand per call."""
    for i in range(0, len(items), EMIT_CHUNK):
        control(base, "POST", f"accounts/{ACCOUNT_ID}/events/many", json={"events": items[i:i + EMIT_CHUNK]})


def migrate(env: dict, instance: Path) -> None:
    """A migrated, empty database, before the workers start (their start-up check reads it)."""
    from flask_migrate import upgrade

    from webapp.extensions import db

    app = _app(env, instance)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        db.engine.dispose()


def connect_account(env: dict, instance: Path, secret_key: str, checkpoint: int, live: bool = False) -> int:
    """The account and its five resources, connected a day ago with real endpoints in the double, as the
    connect flow leaves them; the checkpoint where the outage began. Returns the account's id."""
    from sqlalchemy import select

    from webapp.crm.models import ContactField
    from webapp.crypto import encrypt
    from webapp.extensions import db
    from webapp.stripe_sync.client import client_for_account
    from webapp.stripe_sync.connect.endpoints import create_endpoint, webhook_url
    from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeResource, WebhookSecret
    from webapp.timeutil import utcnow

    app = _app(env, instance)
    with app.app_context():
        connected = utcnow() - timedelta(days=1)
        account = StripeAccount(stripe_account_id=ACCOUNT_ID, email="owner@bench.test", livemode=live,
                                secret_key_enc=encrypt(secret_key), key_mask=secret_key[:8] + "…",
                                connected_at=connected, created_at=connected, events_checkpoint=checkpoint)
        client = client_for_account(account)
        fields = {f.key: f for f in db.session.scalars(select(ContactField))}
        for kind in KINDS:
            token = "bench-" + os.urandom(16).hex()
            url = webhook_url(env["PUBLIC_BASE_URL"], token)
            endpoint_id, signing_secret = create_endpoint(client, kind, url, live)
            res = StripeResource(account=account, kind=kind, sync_type="new_only", token=token,
                                 webhook_endpoint_id=endpoint_id, webhook_url=url, created_at=connected)
            res.secrets.append(WebhookSecret(secret_enc=encrypt(signing_secret), created_at=connected))
            res.mappings.append(FieldMapping(position=0, stripe_field="email", field_id=fields["email"].id))
            res.mappings.append(FieldMapping(position=1, stripe_field="name", field_id=fields["first_name"].id))
            db.session.add(res)
        db.session.commit()
        account_id = account.id
        db.session.remove()
        db.engine.dispose()
    return account_id


def request_check(env: dict, instance: Path, account_id: int) -> None:
    """Queue the account's check as the "Check for missed events" button does."""
    from webapp.extensions import db
    from webapp.stripe_sync.recovery.schedule import request_check as queue_check

    app = _app(env, instance)
    with app.app_context():
        if not queue_check(account_id):
            raise RuntimeError("a check of the account was already queued or running")
        db.session.remove()
        db.engine.dispose()


def watch(env: dict, n: int, started: float, workers: Workers, timeout: float) -> dict:
    """Poll the recovered rows every 0.1 s until all n are applied, every worker is gone, or the timeout;
    returns when all were stored and when all were applied (seconds after `started`)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_sqlalchemy_url(env["DATABASE_URL"]))
    final = ", ".join(f"'{s}'" for s in FINAL)
    query = text(f"SELECT count(*), coalesce(sum(CASE WHEN status IN ({final}) THEN 1 ELSE 0 END), 0) "
                 "FROM stripe_events WHERE recovered")
    read_s = applied_s = None
    outcome, last_log = "complete", started
    try:
        while True:
            with engine.connect() as conn:
                stored, done = conn.execute(query).one()
            now = time.monotonic()
            if read_s is None and stored >= n:
                read_s = now - started
            if done >= n:
                applied_s = now - started
                break
            if not workers.alive():
                outcome = "workers died"
                break
            if now - started > timeout:
                outcome = "timeout"
                break
            if now - last_log >= 10:
                log.info("… %s stored, %s applied", f"{stored:,}", f"{done:,}")
                last_log = now
            time.sleep(0.1)
    finally:
        engine.dispose()
    return {"outcome": outcome, "read_s": read_s, "applied_s": applied_s}


def read_result(env: dict) -> dict:
    """What the database holds at the end, to show the backlog was applied: rows by status, contacts, orders."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_sqlalchemy_url(env["DATABASE_URL"]))
    with engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT status, count(*) FROM stripe_events WHERE recovered "
                                          "GROUP BY status")).all())
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar()
        orders = conn.execute(text("SELECT count(*) FROM orders")).scalar()
        recurring = conn.execute(text("SELECT count(*) FROM recurring_payments")).scalar()
        checkpoint, recovered, error = conn.execute(text(
            "SELECT events_checkpoint, events_recovered, events_error FROM stripe_accounts")).one()
    engine.dispose()
    return {"statuses": statuses, "contacts": contacts, "orders": orders, "recurring_payments": recurring,
            "checkpoint": checkpoint,
            "account_events_recovered": recovered, "account_events_error": error}


def _peak_rss_kb(pid: int) -> int | None:
    """A running process's own peak resident set (VmHWM). Not os.wait4's ru_maxrss: Linux carries the
    parent's high-water mark across exec, so a worker started by this (large) process would report
    this process's size."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def request_phases(records: list[dict], started_wall: float, read_s: float | None) -> dict:
    """API requests after the check, split at the moment every row was stored: how the account's
    budget went between the reader (GET /v1/events) and the drain's customer retrieves."""
    after = [r for r in records if r["at"] is not None and r["at"] >= started_wall]
    end = started_wall + (read_s or 0)
    reading = [r for r in after if r["at"] <= end]
    return {"api_requests_per_s": round(len(after) / (max(r["at"] for r in after) - started_wall), 1)
            if after else None,
            "while_reading": {"events_requests": sum(1 for r in reading if r["path"] == "/v1/events"),
                              "customer_retrieves": sum(1 for r in reading if r["path"].startswith("/v1/customers/")),
                              "requests_per_s": round(len(reading) / read_s, 1) if read_s else None}}


def job_figures(redis_url: str, account_id: int) -> dict:
    """The recovery job's own account: its report line and how long it ran."""
    from redis import Redis
    from rq.job import Job

    from webapp.stripe_sync.recovery.schedule import job_id

    conn = Redis.from_url(redis_url)
    try:
        job = Job.fetch(job_id(account_id), connection=conn)
        seconds = (job.ended_at - job.started_at).total_seconds() if job.ended_at and job.started_at else None
        return {"job_status": job.get_status(), "job_seconds": round(seconds, 2) if seconds else None,
                "job_report": job.return_value()}
    finally:
        conn.close()


def run(n: int, latency_ms: float, workers: int, database_url: str | None, timeout: float,
        keep: bool = False, live: bool = False) -> dict:
    """One run end to end; returns the report row."""
    tmp = Path(tempfile.mkdtemp(prefix="crm-recovery-bench-"))
    redis = RedisServer(data_dir=tmp / "redis").start()
    port = free_port()
    limits = STRIPE_LIMITS[live]
    double = start_double(port, latency_ms, limits)
    base = f"http://127.0.0.1:{port}"
    pg_name = None
    pool: Workers | None = None
    row: dict = {"events": n, "latency_ms": latency_ms, "workers": workers,
                 "database": "postgresql" if database_url else "sqlite", "livemode": live,
                 "stripe_limits": {"account": limits[0], "list": limits[1]}}
    log.info("Run: %s", row)
    try:
        key = control(base, "POST", "accounts", json={"email": "owner@bench.test", "id": ACCOUNT_ID,
                                                      "livemode": live})["secret_key"]
        control(base, "POST", "deliveries", json={"dropped": True})
        if database_url:
            from bench.stack import pg_admin, with_database
            pg_name = "crm_recovery_" + os.urandom(5).hex()
            pg_admin(database_url, f"CREATE DATABASE {pg_name}")
            url = with_database(database_url, pg_name)
        else:
            url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis.url, STRIPE_API_BASE=base, SECRET_KEY="bench",
                   ENCRYPTION_KEY=ENCRYPTION_KEY, PUBLIC_BASE_URL="https://crm.example.test", PYTHONPATH=str(ROOT),
                   RECOVERY_SETTLE="0")
        migrate(env, tmp)
        pool = Workers(env, workers, tmp)
        pool.start()
        missed, before, checkpoint = backlog(n, int(time.time()), live)
        account_id = connect_account(env, tmp, key, checkpoint, live)
        emit(base, before + missed)
        row.update(customers=-(-n // len(SEQUENCE)),
                   payment_events=sum(1 for e in missed if e["type"] != "customer.created"),
                   oldest_event_age_s=int(time.time()) - missed[0]["created"],
                   newest_event_age_s=int(time.time()) - missed[-1]["created"])
        events_before = control(base, "GET", "stats", params={"path_prefix": "/v1/events"})
        all_before = control(base, "GET", "stats")
        cpu_before = _cpu_seconds(double.pid) or 0.0
        started, started_wall = time.monotonic(), time.time()
        request_check(env, tmp, account_id)
        seen = watch(env, n, started, pool, timeout)
        peaks_kb = [_peak_rss_kb(proc.pid) for proc in pool.procs]
        pool.stop()
        double_cpu = (_cpu_seconds(double.pid) or 0.0) - cpu_before
        result = read_result(env)
        job = job_figures(redis.url, account_id)
        listing = control(base, "GET", "stats", params={"path_prefix": "/v1/events"})
        retrieves = control(base, "GET", "stats", params={"path_prefix": "/v1/customers/"})
        everything = control(base, "GET", "stats")
        deliveries = control(base, "GET", "deliveries")["data"]
        phases = request_phases(control(base, "GET", "requests")["data"], started_wall, seen["read_s"])
        problems = pool.problem_lines()
    finally:
        if pool is not None and pool.alive():
            pool.stop()
        double.terminate()
        double.wait(10)
        redis.stop()
        if pg_name:
            from bench.stack import pg_admin
            pg_admin(database_url, f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
    read_s, applied_s = seen["read_s"], seen["applied_s"]
    usage = [pool.usage.get(p.pid, (0, 0.0, None)) for p in pool.procs]
    failed = result["statuses"].get("failed", 0)
    state = seen["outcome"] + (f", {failed} failed" if failed else "")
    row.update({
        "state": state,
        "read_s": round(read_s, 2) if read_s else None,
        "read_events_per_s": round(n / read_s) if read_s else None,
        "applied_s": round(applied_s, 2) if applied_s else None,
        "applied_events_per_s": round(n / applied_s) if applied_s else None,
        **job, **result,
        "events_requests": listing["requests"] - events_before["requests"],
        "events_429s": listing["rate_limited"] - events_before["rate_limited"],
        "max_events_requests_per_s": listing["max_per_second"],
        "customer_retrieves": retrieves["requests"], "max_retrieves_per_s": retrieves["max_per_second"],
        "requests": everything["requests"] - all_before["requests"],
        "double_429s": everything["rate_limited"] - all_before["rate_limited"],
        "max_requests_per_s": everything["max_per_second"],
        **phases,
        "deliveries_dropped": sum(1 for d in deliveries if d["status"] is None),
        "deliveries_answered": sum(1 for d in deliveries if d["status"] is not None),
        "peak_rss_mb": round(max(peaks_kb) / 1024, 1) if all(peaks_kb) else None,
        "peak_rss_mb_each": [round(kb / 1024, 1) if kb else None for kb in peaks_kb],
        "worker_cpu_s": round(sum(u[1] for u in usage), 1), "worker_exit_codes": [u[2] for u in usage],
        "double_cpu_s": round(double_cpu, 1), "worker_problem_lines": len(problems),
    })
    if seen["outcome"] != "complete" or problems:
        keep = True
        log.warning("Run at %s ms with %s workers: %s; the workers' warnings and errors:\n%s", latency_ms, workers,
                    seen["outcome"], "\n".join(problems) or "(none)")
    return keep_or_clean(row, tmp, keep)


TABLE = ("| mode | latency ms | events | workers | database | read s | read events/s | applied s | applied events/s | "
         "/v1/events requests | customer retrieves | 429s | peak RSS MB / worker | state |\n"
         "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def table_row(r: dict) -> str:
    """One run as a markdown table row."""
    def num(value) -> str:
        """Thousands separated; a dash for a figure the run did not reach."""
        return "—" if value is None else f"{value:,}"
    mode = "live" if r["livemode"] else "test"
    return (f"| {mode} | {r['latency_ms']:g} | {r['events']:,} | {r['workers']} | {r['database']} | "
            f"{num(r['read_s'])} | {num(r['read_events_per_s'])} | {num(r['applied_s'])} | "
            f"{num(r['applied_events_per_s'])} | {r['events_requests']} | {r['customer_retrieves']:,} | "
            f"{r['double_429s']} | {r['peak_rss_mb']} | {r['state']} |")


def main(argv=None) -> None:
    """Run every --latency-ms × --workers combination and print the table (plus JSON lines with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 300.0],
                        help="the double answers every API request after this many ms (one run per value)")
    parser.add_argument("--events", type=int, default=10_000, help="missed events in the backlog")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="worker.py processes (one run per value)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server; each run gets a database of its own on it, dropped afterwards")
    parser.add_argument("--live", action="store_true",
                        help="live mode: sk_live_ key, the double limits 100/s per account and 25/s per list "
                             "endpoint, the app's budget STRIPE_BUDGET_LIVE (80/s) applies")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take after the check")
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per run to this file")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (database, worker logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)  # alembic's logging set-up raises the root level; keep our progress lines
    rows = []
    print(TABLE, flush=True)
    for latency in args.latency_ms:
        for workers in args.workers:
            row = run(args.events, latency, workers, args.database_url, args.timeout, args.keep, args.live)
            rows.append(row)
            _write_json(args.json, row)
            print(table_row(row), flush=True)
    print()
    print(TABLE)
    for row in rows:
        print(table_row(row))


if __name__ == "__main__":
    main()
