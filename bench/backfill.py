"""Historical sync benchmark: import N generated customers from the Stripe double with one worker process.

    python bench/backfill.py                      # 10,000 then 100,000 customers, SQLite
    python bench/backfill.py --counts 1000 5000   # other sizes
    python bench/backfill.py --database-url postgresql://…/empty_db

For each size: a fresh SQLite database (migrated), an embedded Redis, the Stripe double in its own
process (rate limit off) holding N customers, one connected Customer resource (Email and Customer
Name mapped) and its import queued as connect.finish queues it. Then one RQ worker process
(SimpleWorker, burst, this file's `--worker` mode so the backfill limits can be raised) runs the
import to the end. Reported: records/s over the import (Backfill.started_at → finished_at) and over
the worker's whole life, the worker's peak RSS (the kernel's ru_maxrss for the child, so nothing
is missed between samples), and RSS sampled every 0.25 s to show whether memory grows with N.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.embedded_redis import RedisServer, free_port  # noqa: E402

log = logging.getLogger("bench.backfill")
ACCOUNT_ID = "acct_1BenchBackfill"
ENCRYPTION_KEY = "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="
WORKER_CONFIG = {"STRIPE_BUDGET_TEST": 0, "STRIPE_BUDGET_LIVE": 0}


def start_double(port: int) -> subprocess.Popen:
    """The Stripe double as a separate process, as another machine's Stripe would be."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.stripe_double", "--port", str(port), "--log-level",
                             "WARNING"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(base + "/_double/health", timeout=1).raise_for_status()
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the Stripe double did not start")


def seed_double(base: str, n: int) -> str:
    """An account with n generated customers (rate limit off); returns its secret key."""
    created = requests.post(base + "/_double/accounts", json={"email": "owner@bench.test", "id": ACCOUNT_ID},
                            timeout=10).json()
    requests.post(base + "/_double/rate_limit", json={"per_second": None}, timeout=10).raise_for_status()
    requests.post(f"{base}/_double/accounts/{ACCOUNT_ID}/customers/generate",
                  json={"n": n, "start_created": 1_700_000_000}, timeout=120).raise_for_status()
    return created["secret_key"]


def prepare_database(env: dict, instance: Path, secret_key: str) -> int:
    """Migrate, connect the Customer resource with history, and queue its import; returns the backfill id."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from webapp import create_app
    from webapp.crm.models import ContactField
    from webapp.crypto import encrypt
    from webapp.extensions import db
    from webapp.stripe_sync.history.importer import start_backfill
    from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeResource

    app = create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"],
                      "SECRET_KEY": "bench", "ENCRYPTION_KEY": ENCRYPTION_KEY, "INSTANCE_PATH": str(instance),
                      "STRIPE_API_BASE": env["STRIPE_API_BASE"]})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        account = StripeAccount(stripe_account_id=ACCOUNT_ID, email="owner@bench.test", livemode=False,
                                secret_key_enc=encrypt(secret_key), key_mask=secret_key[:8] + "…")
        resource = StripeResource(account=account, kind="customer", sync_type="historical",
                                  token="bench-" + os.urandom(12).hex(), webhook_endpoint_id="we_bench",
                                  webhook_url="https://crm.example.test/webhooks/stripe/x")
        fields = {f.key: f for f in db.session.scalars(select(ContactField))}
        resource.mappings.append(FieldMapping(position=0, stripe_field="email", field_id=fields["email"].id))
        resource.mappings.append(FieldMapping(position=1, stripe_field="name", field_id=fields["first_name"].id))
        db.session.add(resource)
        db.session.commit()
        backfill_id = start_backfill(resource).id
        db.session.remove()
        db.engine.dispose()
    return backfill_id


def read_result(env: dict, backfill_id: int) -> dict:
    """The import's final row."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_sqlalchemy_url(env["DATABASE_URL"]))
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT state, imported, skipped, failed, passed_over, pages, started_at, finished_at "
            "FROM stripe_backfills WHERE id = :id"), {"id": backfill_id}).mappings().one()
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar()
    engine.dispose()
    return dict(row) | {"contacts": contacts}


def _sqlalchemy_url(url: str) -> str:
    """psycopg 3 for PostgreSQL URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _rss_kb(pid: int) -> int | None:
    """Current resident set of a process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def run_worker_process(env: dict, profile: Path | None = None) -> tuple[float, int, list[tuple[float, int]]]:
    """One worker process until the queue is empty: (seconds, peak RSS KB, RSS samples)."""
    started = time.monotonic()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile)] + cmd[1:]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample():
        """RSS every 0.25 s, for the shape of the curve (the peak comes from the kernel)."""
        while not done.is_set():
            rss = _rss_kb(proc.pid)
            if rss:
                samples.append((time.monotonic() - started, rss))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"worker exited with {proc.returncode}")
    return seconds, usage.ru_maxrss, samples


def worker_main() -> None:
    """`--worker`: worker.py's burst mode, with the backfill's request limit off for the benchmark."""
    from rq import SimpleWorker

    from webapp import create_app
    from webapp.redis_queue import get_queue, get_redis

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(WORKER_CONFIG)
    with app.app_context():
        worker = SimpleWorker([get_queue()], connection=get_redis())
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")


def bench(n: int, database_url: str | None, profile: Path | None = None) -> dict:
    """One size, end to end; returns the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="crm-backfill-bench-"))
    redis = RedisServer(data_dir=tmp / "redis").start()
    port = free_port()
    double = start_double(port)
    try:
        base = f"http://127.0.0.1:{port}"
        key = seed_double(base, n)
        env = dict(os.environ, DATABASE_URL=database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
                   REDIS_URL=redis.url, STRIPE_API_BASE=base, SECRET_KEY="bench", ENCRYPTION_KEY=ENCRYPTION_KEY,
                   PUBLIC_BASE_URL="https://crm.example.test", PYTHONPATH=str(ROOT))
        backfill_id = prepare_database(env, tmp, key)
        seconds, peak_kb, samples = run_worker_process(env, profile)
        row = read_result(env, backfill_id)
    finally:
        double.terminate()
        double.wait(10)
        redis.stop()
    records = row["imported"] + row["skipped"] + row["failed"] + row["passed_over"]
    import_seconds = None
    if row["finished_at"] and row["started_at"]:
        started, finished = (datetime.fromisoformat(v) if isinstance(v, str) else v  # SQLite gives ISO text
                             for v in (row["started_at"], row["finished_at"]))
        import_seconds = (finished - started).total_seconds()
    half = [rss for t, rss in samples if t <= seconds / 2]
    return {
        "records": n, "state": row["state"], "imported": row["imported"], "contacts": row["contacts"],
        "pages": row["pages"], "import_seconds": round(import_seconds, 2),
        "records_per_second": round(records / import_seconds) if import_seconds else None,
        "worker_seconds": round(seconds, 2), "records_per_second_worker_life": round(records / seconds),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_mb_at_half": round(max(half) / 1024, 1) if half else None,
        "rss_mb_last_sample": round(samples[-1][1] / 1024, 1) if samples else None,
    }


def main(argv=None) -> None:
    """Run the sizes asked for and print a table plus JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database-url", default=None, help="an empty database instead of a fresh SQLite file")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the worker under cProfile, write the stats here and print the top functions")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = []
    for n in args.counts:
        log.info("Importing %s customers …", f"{n:,}")
        result = bench(n, args.database_url, args.profile)
        log.info("%s", result)
        results.append(result)
    print(f"{'records':>9} {'state':>9} {'import s':>9} {'rec/s':>7} {'worker s':>9} {'rec/s (life)':>13} "
          f"{'peak RSS MB':>12} {'RSS at half':>12}")
    for r in results:
        print(f"{r['records']:>9,} {r['state']:>9} {r['import_seconds']:>9} {r['records_per_second']:>7,} "
              f"{r['worker_seconds']:>9} {r['records_per_second_worker_life']:>13,} {r['peak_rss_mb']:>12} "
              f"{r['rss_mb_at_half']!s:>12}")
    print(json.dumps(results, default=str))
    if args.profile:
        import pstats
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
