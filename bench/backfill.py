"""Historical sync benchmark: import N generated customers (or charges) from the Stripe double.

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

At Stripe's speed and limits (any of --latency-ms, --workers, --sequential, --live/--no-live):

    python bench/backfill.py --counts 100000 --latency-ms 0 300 600 --workers 1 2 4
    python bench/backfill.py --counts 100000 --kind charge --latency-ms 300 --workers 2 --json runs.jsonl
    python bench/backfill.py --counts 100000 --latency-ms 300 --workers 2 --sequential   # the old reader

Every combination of --counts × --latency-ms × --workers is one run with everything fresh: the
double answers every API request after the latency and enforces Stripe's limits for the mode (live,
the default: 100/s per account and 25/s per list endpoint, with an sk_live_ key; --no-live: 25/25),
and the import runs with the app's own budgets (STRIPE_BUDGET_LIVE 80/s, STRIPE_BUDGET_LIST 20/s,
BACKFILL_BUDGET_SHARE 0.75) in `--workers` real `worker.py` processes (not burst: lanes are queued
while the import runs), stopped once the Backfill row is finished, failed or cancelled. The import
may use min(BACKFILL_LANES, workers - 1, at least 1) lanes. --kind charge imports succeeded charges
with their customers expanded (each charge paid by a customer of its own), into a Charge resource.
--sequential sets BACKFILL_SPLIT_AFTER_PAGES=1000000000 and BACKFILL_WINDOWS_PER_LANE=1: one
window, one cursor, one request at a time, as the import read before windows. Each run prints a
markdown table row (and, with --json, appends a JSON line): records/s over the import, final
state, windows, lanes, peak RSS per worker, and from the double the most requests in any one
second (all, and on the list endpoint) and the 429s it answered. With --database-url (a PostgreSQL
server) each of these runs gets a database of its own on it, dropped afterwards.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
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
START_CREATED = 1_700_000_000
# Stripe's requests per second for the mode: (per account, per list endpoint); docs.stripe.com/rate-limits
STRIPE_LIMITS = {True: (100, 25), False: (25, 25)}
# The reader before windows: one window never cut, one request in flight.
SEQUENTIAL = {"BACKFILL_SPLIT_AFTER_PAGES": "1000000000", "BACKFILL_WINDOWS_PER_LANE": "1"}
FINAL_STATES = ("finished", "failed", "cancelled")
LIST_PATHS = {"customer": "/v1/customers", "charge": "/v1/charges"}


def start_double(port: int, latency_ms: float | None = None, limits: tuple[float, float] | None = None
                 ) -> subprocess.Popen:
    """The Stripe double as a separate process, as another machine's Stripe would be; `latency_ms` delays
    every API answer, `limits` = (per account, per list endpoint) requests/s before a 429 (None: off)."""
    cmd = [sys.executable, "-m", "tests.stripe_double", "--port", str(port), "--log-level", "WARNING"]
    if latency_ms:
        cmd += ["--latency-ms", str(latency_ms)]
    if limits is not None:
        cmd += ["--rate-limit", str(limits[0]), "--list-rate-limit", str(limits[1])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def seed_double(base: str, n: int, kind: str = "customer", livemode: bool = False, limits_off: bool = True) -> str:
    """An account (in live mode when asked) with n generated customers, or n charges each paid by a customer
    of its own; the rate limit off unless told otherwise. Returns its secret key (sk_live_ in live mode)."""
    created = requests.post(base + "/_double/accounts", json={"email": "owner@bench.test", "id": ACCOUNT_ID,
                                                              "livemode": livemode}, timeout=10).json()
    if limits_off:
        requests.post(base + "/_double/rate_limit", json={"per_second": None}, timeout=10).raise_for_status()
    what = {"customer": "customers", "charge": "charges"}[kind]
    requests.post(f"{base}/_double/accounts/{ACCOUNT_ID}/{what}/generate",
                  json={"n": n, "start_created": START_CREATED}, timeout=300).raise_for_status()
    return created["secret_key"]


def _app(env: dict, instance: Path, extra: dict | None = None):
    """The app as the benchmark process uses it (migrations, queueing the import)."""
    from webapp import create_app

    return create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"],
                       "SECRET_KEY": "bench", "ENCRYPTION_KEY": ENCRYPTION_KEY, "INSTANCE_PATH": str(instance),
                       "STRIPE_API_BASE": env["STRIPE_API_BASE"], **(extra or {})})


def prepare_database(env: dict, instance: Path, secret_key: str, kind: str = "customer", livemode: bool = False,
                     start: bool = True) -> int:
    """Migrate and connect the resource of `kind` with history (Email and Customer Name → First Name
    mapped); with `start`, queue its import and return the backfill id, else return the resource id."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from webapp.crm.models import ContactField
    from webapp.crypto import encrypt
    from webapp.extensions import db
    from webapp.stripe_sync.history.importer import start_backfill
    from webapp.stripe_sync.models import FieldMapping, StripeAccount, StripeResource

    app = _app(env, instance)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        account = StripeAccount(stripe_account_id=ACCOUNT_ID, email="owner@bench.test", livemode=livemode,
                                secret_key_enc=encrypt(secret_key), key_mask=secret_key[:8] + "…")
        resource = StripeResource(account=account, kind=kind, sync_type="historical",
                                  token="bench-" + os.urandom(12).hex(), webhook_endpoint_id="we_bench",
                                  webhook_url="https://crm.example.test/webhooks/stripe/x")
        fields = {f.key: f for f in db.session.scalars(select(ContactField))}
        resource.mappings.append(FieldMapping(position=0, stripe_field="email", field_id=fields["email"].id))
        resource.mappings.append(FieldMapping(position=1, stripe_field="name", field_id=fields["first_name"].id))
        db.session.add(resource)
        db.session.commit()
        result = start_backfill(resource).id if start else resource.id
        db.session.remove()
        db.engine.dispose()
    return result


def queue_backfill(env: dict, instance: Path, resource_id: int) -> int:
    """Queue the resource's import as connect.finish does; returns the backfill id."""
    from webapp.extensions import db
    from webapp.stripe_sync.history.importer import start_backfill
    from webapp.stripe_sync.models import StripeResource

    app = _app(env, instance, {k: v for k, v in env.items() if k.startswith("BACKFILL_")})
    with app.app_context():
        backfill_id = start_backfill(db.session.get(StripeResource, resource_id)).id
        db.session.remove()
        db.engine.dispose()
    return backfill_id


def read_result(env: dict, backfill_id: int) -> dict:
    """The import's final row."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_sqlalchemy_url(env["DATABASE_URL"]))
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT state, imported, skipped, failed, passed_over, pages, rate_limited, error, started_at, "
            "finished_at FROM stripe_backfills WHERE id = :id"), {"id": backfill_id}).mappings().one()
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar()
        windows, lanes_used = conn.execute(text(
            "SELECT count(*), count(DISTINCT lane) FROM stripe_backfill_windows WHERE backfill_id = :id"),
            {"id": backfill_id}).one()
    engine.dispose()
    return dict(row) | {"contacts": contacts, "windows": windows, "lanes_used": lanes_used}


def _sqlalchemy_url(url: str) -> str:
    """psycopg 3 for PostgreSQL URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _import_seconds(row: dict) -> float | None:
    """Backfill.started_at → finished_at, in seconds."""
    if not (row["finished_at"] and row["started_at"]):
        return None
    started, finished = (datetime.fromisoformat(v) if isinstance(v, str) else v  # SQLite gives ISO text
                         for v in (row["started_at"], row["finished_at"]))
    return (finished - started).total_seconds()


def _rss_kb(pid: int) -> int | None:
    """Current resident set of a process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a running process has used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
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


def bench(n: int, database_url: str | None, profile: Path | None = None, kind: str = "customer") -> dict:
    """One size, end to end, with one burst worker and the request budgets off; returns the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="crm-backfill-bench-"))
    redis = RedisServer(data_dir=tmp / "redis").start()
    port = free_port()
    double = start_double(port)
    try:
        base = f"http://127.0.0.1:{port}"
        key = seed_double(base, n, kind)
        env = dict(os.environ, DATABASE_URL=database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
                   REDIS_URL=redis.url, STRIPE_API_BASE=base, SECRET_KEY="bench", ENCRYPTION_KEY=ENCRYPTION_KEY,
                   PUBLIC_BASE_URL="https://crm.example.test", PYTHONPATH=str(ROOT))
        backfill_id = prepare_database(env, tmp, key, kind)
        seconds, peak_kb, samples = run_worker_process(env, profile)
        row = read_result(env, backfill_id)
    finally:
        double.terminate()
        double.wait(10)
        redis.stop()
    records = row["imported"] + row["skipped"] + row["failed"] + row["passed_over"]
    import_seconds = _import_seconds(row)
    half = [rss for t, rss in samples if t <= seconds / 2]
    return {
        "kind": kind, "records": n, "state": row["state"], "imported": row["imported"], "contacts": row["contacts"],
        "pages": row["pages"], "import_seconds": round(import_seconds, 2),
        "records_per_second": round(records / import_seconds) if import_seconds else None,
        "worker_seconds": round(seconds, 2), "records_per_second_worker_life": round(records / seconds),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_mb_at_half": round(max(half) / 1024, 1) if half else None,
        "rss_mb_last_sample": round(samples[-1][1] / 1024, 1) if samples else None,
    }


# --- at Stripe's speed: latency, live limits, the app's budgets, several worker.py processes ------------


class Workers:
    """`n` worker.py processes (not burst), each logging to its own file; RSS sampled every 0.25 s, and
    each one's ru_maxrss and CPU time from os.wait4 once stopped."""

    def __init__(self, env: dict, n: int, log_dir: Path) -> None:
        self.env, self.n, self.log_dir = env, n, log_dir
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.sampled_kb: dict[int, int] = {}
        self.usage: dict[int, tuple[int, float, int]] = {}  # pid -> (ru_maxrss KB, CPU s, exit code)
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        """Start them and return once all have registered with Redis (start-up is not what is measured)."""
        for i in range(self.n):
            path = self.log_dir / f"worker-{i}.log"
            with path.open("wb") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "worker.py"), "--name", f"bench-backfill-{i}"],
                    cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT))
            self.logs.append(path)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        from redis import Redis
        from rq import Worker

        conn = Redis.from_url(self.env["REDIS_URL"])
        deadline = time.monotonic() + 120
        while Worker.count(connection=conn) < self.n:
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"{self.n} workers did not register; see {self.log_dir}")
            time.sleep(0.1)
        conn.close()
        time.sleep(1.0)  # the first sweeps run right after registering

    def _sample(self) -> None:
        while not self._done.is_set():
            for proc in self.procs:
                rss = _rss_kb(proc.pid)
                if rss:
                    self.sampled_kb[proc.pid] = max(self.sampled_kb.get(proc.pid, 0), rss)
            self._done.wait(0.25)

    def alive(self) -> int:
        """How many are still running."""
        return sum(1 for proc in self.procs if proc.poll() is None and proc.pid not in self.usage)

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM: a job in progress finishes), then SIGKILL after `timeout`; reaps each
        with os.wait4 for its peak RSS and CPU time."""
        for proc in self.procs:
            if proc.pid not in self.usage and proc.returncode is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            if proc.pid in self.usage:
                continue
            while True:
                try:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                except ChildProcessError:  # already reaped (by Popen.poll)
                    self.usage[proc.pid] = (0, 0.0, proc.returncode if proc.returncode is not None else -1)
                    break
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    self.usage[proc.pid] = (usage.ru_maxrss, usage.ru_utime + usage.ru_stime, proc.returncode)
                    break
                if time.monotonic() > deadline:
                    log.warning("worker %s did not stop in %s s; killing it", proc.pid, timeout)
                    proc.kill()
                    deadline = time.monotonic() + 10
                time.sleep(0.05)
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()

    def peaks_mb(self) -> list[float]:
        """Each worker's peak RSS: the kernel's ru_maxrss, or the highest sample if it was not reaped here."""
        return [round(max(self.usage.get(p.pid, (0,))[0], self.sampled_kb.get(p.pid, 0)) / 1024, 1)
                for p in self.procs]

    def problem_lines(self, limit: int = 40) -> list[str]:
        """Warnings, errors and tracebacks from the workers' logs (worker number first)."""
        out = []
        for i, path in enumerate(self.logs):
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            for j, line in enumerate(lines):
                if " WARNING " in line or " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    out.append(f"[worker {i}] {line}")
                    if line.startswith("Traceback"):
                        out.extend(f"[worker {i}] {more}" for more in lines[j + 1:j + 30])
        return out[:limit] if len(out) <= limit else out[:limit] + [f"… {len(out) - limit} more lines"]


def allowed_lanes(workers: int) -> int:
    """Lanes the import may run at once: BACKFILL_LANES, never more than the workers less one, at least 1."""
    from webapp.tunables import DEFAULTS

    lanes = int(float(os.environ.get("BACKFILL_LANES") or DEFAULTS["BACKFILL_LANES"]))
    return max(1, min(lanes, workers - 1))


def watch(env: dict, backfill_id: int, workers: Workers, timeout: float) -> dict:
    """Poll the Backfill row until a final state, every worker gone, or the timeout; also the most lanes
    that had a job at once."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_sqlalchemy_url(env["DATABASE_URL"]))
    started = time.monotonic()
    last_log = started
    lanes_peak, state, outcome = 0, None, "final"
    try:
        while True:
            with engine.connect() as conn:
                state, processed = conn.execute(text(
                    "SELECT state, imported + skipped + failed + passed_over FROM stripe_backfills WHERE id = :id"),
                    {"id": backfill_id}).one()
                lanes = conn.execute(text(
                    "SELECT count(*) FROM stripe_backfill_lanes WHERE backfill_id = :id AND job_id IS NOT NULL"),
                    {"id": backfill_id}).scalar()
            lanes_peak = max(lanes_peak, lanes)
            if state in FINAL_STATES:
                break
            now = time.monotonic()
            if not workers.alive():
                outcome = "workers died"
                break
            if now - started > timeout:
                outcome = "timeout"
                break
            if now - last_log >= 10:
                log.info("… %s, %s records, %s lanes with a job", state, f"{processed:,}", lanes)
                last_log = now
            time.sleep(0.25)
    finally:
        engine.dispose()
    return {"outcome": outcome, "state": state, "lanes_peak": lanes_peak}


def run_at_speed(n: int, kind: str, latency_ms: float, workers: int, sequential: bool, live: bool,
                 database_url: str | None, timeout: float, keep: bool = False) -> dict:
    """One run with the Stripe double at `latency_ms`, Stripe's limits for the mode and the app's own
    budgets, `workers` worker.py processes; returns the report row."""
    tmp = Path(tempfile.mkdtemp(prefix="crm-backfill-bench-"))
    redis = RedisServer(data_dir=tmp / "redis").start()
    port = free_port()
    limits = STRIPE_LIMITS[live]
    double = start_double(port, latency_ms, limits)
    base = f"http://127.0.0.1:{port}"
    pg_name = None
    pool: Workers | None = None
    row: dict = {"kind": kind, "records": n, "latency_ms": latency_ms, "workers": workers,
                 "lanes": allowed_lanes(workers), "mode": "sequential" if sequential else "windows",
                 "livemode": live, "stripe_limits": {"account": limits[0], "list": limits[1]},
                 "database": "postgresql" if database_url else "sqlite"}
    log.info("Run: %s", row)
    try:
        key = seed_double(base, n, kind, live, limits_off=False)
        if database_url:
            from bench.stack import pg_admin, with_database
            pg_name = "crm_backfill_" + os.urandom(5).hex()
            pg_admin(database_url, f"CREATE DATABASE {pg_name}")
            url = with_database(database_url, pg_name)
        else:
            url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis.url, STRIPE_API_BASE=base, SECRET_KEY="bench",
                   ENCRYPTION_KEY=ENCRYPTION_KEY, PUBLIC_BASE_URL="https://crm.example.test", PYTHONPATH=str(ROOT))
        if sequential:
            env.update(SEQUENTIAL)
        resource_id = prepare_database(env, tmp, key, kind, live, start=False)
        pool = Workers(env, workers, tmp)
        pool.start()
        cpu_before = _cpu_seconds(double.pid) or 0.0
        backfill_id = queue_backfill(env, tmp, resource_id)
        seen = watch(env, backfill_id, pool, timeout)
        pool.stop()
        double_cpu = (_cpu_seconds(double.pid) or 0.0) - cpu_before
        result = read_result(env, backfill_id)
        path = LIST_PATHS[kind]
        everything = requests.get(base + "/_double/stats", timeout=60).json()
        listing = requests.get(base + "/_double/stats", params={"path_prefix": path}, timeout=60).json()
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
    seconds = _import_seconds(result)
    processed = result["imported"] + result["skipped"] + result["failed"] + result["passed_over"]
    state = result["state"] if seen["outcome"] == "final" else f"{result['state']} ({seen['outcome']})"
    usage = [pool.usage.get(p.pid, (0, 0.0, None)) for p in pool.procs]
    row.update({
        "state": state, "error": result["error"], "records_per_second": round(processed / seconds) if seconds else None,
        "import_seconds": round(seconds, 2) if seconds is not None else None, "processed": processed,
        "imported": result["imported"], "skipped": result["skipped"], "failed": result["failed"],
        "passed_over": result["passed_over"], "contacts": result["contacts"], "pages": result["pages"],
        "windows": result["windows"], "lanes_used": result["lanes_used"], "lanes_peak": seen["lanes_peak"],
        "peak_rss_mb": max(pool.peaks_mb(), default=None), "peak_rss_mb_each": pool.peaks_mb(),
        "worker_cpu_s": round(sum(u[1] for u in usage), 1), "worker_exit_codes": [u[2] for u in usage],
        "double_cpu_s": round(double_cpu, 1),
        "requests": everything["requests"], "list_requests": listing["requests"],
        "list_requests_per_second": round(listing["requests"] / seconds, 1) if seconds else None,
        "max_requests_per_second": everything["max_per_second"],
        "max_list_requests_per_second": listing["max_per_second"],
        "double_429s": everything["rate_limited"], "import_saw_429s": result["rate_limited"],
        "worker_problem_lines": len(problems),
    })
    if state != "finished" or problems:
        keep = True
        log.warning("Run %s/%s/%s ms/%s workers: %s; the workers' warnings and errors:\n%s", kind, n, latency_ms,
                    workers, state, "\n".join(problems) or "(none)")
    return keep_or_clean(row, tmp, keep)


def keep_or_clean(row: dict, tmp: Path, keep: bool) -> dict:
    """A run's folder (logs, database) stays for a look when asked or when something went wrong; else it goes."""
    if keep:
        row["logs"] = str(tmp)
        log.info("Logs and database kept in %s", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


TABLE = ("| kind | N | latency ms | workers | lanes (allowed/used/peak) | mode | records/s | import s | state | "
         "windows | peak RSS MB / worker | max req/s all | max req/s list | 429s |\n"
         "|---|---:|---:|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|")


def table_row(r: dict) -> str:
    """One run as a markdown table row."""
    rate = f"{r['records_per_second']:,}" if r["records_per_second"] is not None else "—"
    return (f"| {r['kind']} | {r['records']:,} | {r['latency_ms']:g} | {r['workers']} | "
            f"{r['lanes']}/{r['lanes_used']}/{r['lanes_peak']} | {r['mode']} | {rate} | {r['import_seconds']} | "
            f"{r['state']} | {r['windows']} | {r['peak_rss_mb']} | {r['max_requests_per_second']} | "
            f"{r['max_list_requests_per_second']} | {r['double_429s']} |")


def _write_json(path: Path | None, row: dict) -> None:
    """Append one JSON line."""
    if path is not None:
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row, default=str) + "\n")


def main(argv=None) -> None:
    """Run the sizes asked for and print a table plus JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kind", choices=sorted(LIST_PATHS), default="customer",
                        help="what is imported: customers, or charges with their customers expanded")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=None,
                        help="the double answers every API request after this many ms (one run per value)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker.py processes (one run per value); the import may use workers - 1 lanes")
    parser.add_argument("--sequential", action="store_true",
                        help="the reader before windows: BACKFILL_SPLIT_AFTER_PAGES=1000000000, "
                             "BACKFILL_WINDOWS_PER_LANE=1")
    parser.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                        help="live mode (the default at Stripe's speed): sk_live_ key, the double limits 100/s "
                             "per account and 25/s per list endpoint; --no-live: test mode, 25/25")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one run at Stripe's speed may take")
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per run to this file")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (database, worker logs)")
    parser.add_argument("--database-url", default=None,
                        help="an empty database instead of a fresh SQLite file (at Stripe's speed: a PostgreSQL "
                             "server, each run gets a database of its own)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the worker under cProfile, write the stats here and print the top functions")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    at_speed = args.latency_ms is not None or args.workers is not None or args.sequential or args.live is not None
    if at_speed:
        if args.profile:
            parser.error("--profile goes with the one-burst-worker benchmark (without --latency-ms, --workers, "
                         "--sequential, --live)")
        rows = []
        print(TABLE, flush=True)
        for n in args.counts:
            for latency in args.latency_ms if args.latency_ms is not None else [0.0]:
                for workers in args.workers or [2]:
                    row = run_at_speed(n, args.kind, latency, workers, args.sequential,
                                       args.live if args.live is not None else True, args.database_url,
                                       args.timeout, args.keep)
                    rows.append(row)
                    _write_json(args.json, row)
                    print(table_row(row), flush=True)
        print()
        print(TABLE)
        for row in rows:
            print(table_row(row))
        return
    results = []
    for n in args.counts:
        log.info("Importing %s %ss …", f"{n:,}", args.kind)
        result = bench(n, args.database_url, args.profile, args.kind)
        log.info("%s", result)
        results.append(result)
        _write_json(args.json, result)
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
