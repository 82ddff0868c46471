"""dj-stripe's webhook view as the peer in issue 8's intake table: the same signed customer events, the
same load generator, gunicorn with 2 sync workers, processing inside the request, Stripe API calls
answered by our Stripe double on loopback; after each run the rows dj-stripe stored are counted.

    .venv/bin/python -m bench.peer                         # dj-stripe on SQLite, C=8 and 32, N=2000
    .venv/bin/python -m bench.peer --side-by-side          # plus verify-only and our intake/e2e, ratios
    .venv/bin/python -m bench.peer --database-url postgresql://postgres@127.0.0.1:5432/postgres

The dj-stripe venv (bench/.venv-djstripe) is made by bench/djstripe/setup.sh on first use.
"""
import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path


from bench.loadgen import closed_loop
from bench.stack import ROOT, SECRET, event_payloads, pg_admin, wait_for_http, with_database
from webapp.embedded_redis import free_port

log = logging.getLogger("bench.peer")
DJ_DIR = ROOT / "bench" / "djstripe"
DJ_PY = ROOT / "bench" / ".venv-djstripe" / "bin" / "python"
ACCOUNT_ID = "acct_1BenchDjStripe"
WARM_UP = 200


def ensure_venv() -> Path:
    """Run the idempotent setup script, so one command works on a fresh machine too."""
    subprocess.run(["bash", str(DJ_DIR / "setup.sh")], check=True, stdout=subprocess.DEVNULL)
    return DJ_PY


def djstripe_version() -> str:
    """The installed dj-stripe release, for the table's label."""
    out = subprocess.run([str(DJ_PY), "-c", "from importlib.metadata import version; print(version('dj-stripe'))"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def start_double(customers: int):
    """The Stripe double with one account, its secret key, and every customer the events name."""
    from tests.stripe_double import StripeDouble

    double = StripeDouble(seed=1815).start()
    double.add_account(email="owner@bench.test", business_name="Bench Peer", id=ACCOUNT_ID)
    key = double.add_secret_key(ACCOUNT_ID)
    for prefix in ("cus_bench_", "cus_warm__"):
        for i in range(customers):
            cid = f"{prefix}{i:05d}"
            # dj-stripe retrieves customers with expand=["default_source", "sources"]; real Stripe answers
            # `sources` as a list when asked, so the stored object carries an empty one.
            double.add_customer(ACCOUNT_ID, id=cid, email=f"customer{i}@example.test", name=f"Customer {i}",
                                created=1_790_000_000 + i,
                                sources={"object": "list", "data": [], "has_more": False, "total_count": 0,
                                         "url": f"/v1/customers/{cid}/sources"})
    return double, key


def warm_up_payloads(n: int) -> list[bytes]:
    """Distinct events for distinct customers (same byte lengths), so warm-up never pre-processes the run's."""
    return [p.replace(b'"evt_bench_', b'"evt_warm__').replace(b'"cus_bench_', b'"cus_warm__')
            for p in event_payloads(n)]


class DjStripePeer:
    """A fresh dj-stripe database, its endpoint, and gunicorn serving it; use as a context manager."""

    def __init__(self, stripe_api: str, stripe_key: str, database_url: str | None = None, web_workers: int = 2):
        self.tmp = Path(tempfile.mkdtemp(prefix="djstripe-bench-"))
        self.server_url = database_url
        self.pg_name = None
        if database_url:
            self.pg_name = "djstripe_bench_" + uuid.uuid4().hex[:10]
            self.database_url = with_database(database_url, self.pg_name)
        else:
            self.database_url = f"sqlite:///{self.tmp / 'djstripe.sqlite3'}"
        self.web_workers = web_workers
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.path = None
        self.env = dict(os.environ)
        self.env.pop("PYTHONPATH", None)
        self.env.update({"DJANGO_SETTINGS_MODULE": "settings", "DJSTRIPE_BENCH_DATABASE_URL": self.database_url,
                         "DJSTRIPE_BENCH_STRIPE_KEY": stripe_key, "DJSTRIPE_BENCH_STRIPE_API": stripe_api,
                         # Anything not aimed at the double would go to a dead proxy, never off the machine.
                         "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                         "NO_PROXY": "127.0.0.1,localhost"})

    def __enter__(self) -> "DjStripePeer":
        if self.pg_name:
            pg_admin(self.server_url, f"CREATE DATABASE {self.pg_name}")
        out = self._manage("setup", "--secret", SECRET)
        self.path = out["path"]
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "log_file", None) is not None:
            self.log_file.close()
        if self.pg_name:
            pg_admin(self.server_url, f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _manage(self, *argv: str) -> dict:
        """prepare.py in the dj-stripe venv; its last stdout line is JSON."""
        out = subprocess.run([str(DJ_PY), str(DJ_DIR / "prepare.py"), *argv], cwd=DJ_DIR, env=self.env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"prepare.py {argv[0]} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def start_web(self) -> str:
        """gunicorn (the dj-stripe venv's) with sync workers; returns the base URL."""
        cmd = [str(DJ_PY), "-m", "gunicorn", "--chdir", str(DJ_DIR), "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(self.web_workers), "--log-level", "warning", "wsgi:application"]
        self.log_file = open(self.tmp / "gunicorn.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=DJ_DIR, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}"
        if not wait_for_http(url + "/healthz"):
            raise RuntimeError("dj-stripe's gunicorn did not start: " + (self.tmp / "gunicorn.log").read_text()[-2000:])
        return url

    def counts(self) -> dict:
        """What dj-stripe stored: triggers, valid, processed, failed, events, customers."""
        return self._manage("count")

    def server_log_tail(self) -> str:
        """The end of gunicorn's log, for a failed run's report."""
        self.log_file.flush()
        return (self.tmp / "gunicorn.log").read_text()[-1500:]


def _api_calls(double) -> dict:
    """Stripe API calls dj-stripe made, by method and path shape."""
    calls = Counter()
    for rec in double.requests:
        parts = rec.path.strip("/").split("/")
        calls[f"{rec.method} /{'/'.join(parts[:2])}{'/{id}' if len(parts) > 2 else ''}"] += 1
    return dict(calls)


def run_djstripe(args, database_url: str | None, backend: str) -> list[dict]:
    """Closed-loop runs at each concurrency on a fresh dj-stripe database; each row carries the proof."""
    ensure_venv()
    label = f"dj-stripe {djstripe_version()} webhook view ({backend})"
    rows = []
    for c in args.concurrency:
        double, key = start_double(args.customers)
        try:
            with DjStripePeer(double.url, key, database_url) as peer:
                url = peer.start_web()
                closed_loop(url, peer.path, SECRET, warm_up_payloads(WARM_UP), c)
                double.clear_requests()
                before = peer.counts()
                result = closed_loop(url, peer.path, SECRET, event_payloads(args.n, customers=args.customers), c)
                after = peer.counts()
                calls = _api_calls(double)
                stored = {k: after[k] - before[k] for k in ("triggers", "valid", "processed", "with_exception",
                                                           "events", "customers")}
                row = {"stack": label, "concurrency": c, **result.summary(), "stored": stored,
                       "stripe_api_calls": calls,
                       "stripe_api_calls_per_event": round(sum(calls.values()) / max(1, args.n), 2)}
                ok = (stored["processed"] == args.n and stored["events"] == args.n and result.non_2xx == 0
                      and stored["with_exception"] == 0 and stored["customers"] == args.customers)
                row["all_processed"] = ok
                if not ok:
                    row["first_exception"] = after["first_exception"]
                    log.error("dj-stripe did not process every event: %s\n%s", row, peer.server_log_tail())
                rows.append(row)
                log.info("%s", row)
        finally:
            double.stop()
    return rows


def run_ours(args, database_url: str | None, backend: str) -> dict:
    """bench.intake's own scenarios (verify-only ceiling, our intake, e2e with 2 workers) in this sitting."""
    from bench import intake as ours

    # bench.intake hands one URL to every Stack it makes; on PostgreSQL each needs its own database.
    rows = ours.intake(argparse.Namespace(concurrency=args.concurrency, n=args.n, database_url=database_url))
    e2e = ours.end_to_end(argparse.Namespace(workers=[2], n=args.n, database_url=database_url))
    for row in rows + e2e:
        row["backend"] = backend
    return {"intake": rows, "end_to_end": e2e}


def ratios(peer_rows: list[dict], ours: dict) -> list[dict]:
    """Ours over dj-stripe at each concurrency, and end to end (2 workers) over dj-stripe at C=8."""
    out = []
    for row in peer_rows:
        for mine in ours["intake"]:
            if mine["concurrency"] == row["concurrency"]:
                out.append({"concurrency": row["concurrency"], "vs": mine["stack"],
                            "times_djstripe": round(mine["events_per_s"] / row["events_per_s"], 1)
                            if row["events_per_s"] else None})
    c8 = [r for r in peer_rows if r["concurrency"] == 8]
    if c8 and ours["end_to_end"] and c8[0]["events_per_s"]:
        out.append({"end_to_end_2_workers_over_djstripe_c8":
                    round(ours["end_to_end"][0]["events_per_s"] / c8[0]["events_per_s"], 1), "target": 8})
    return out


def main() -> None:
    """Run dj-stripe (and with --side-by-side ours) on SQLite and, if given, PostgreSQL; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL; each run gets its own throwaway database on it")
    parser.add_argument("--no-sqlite", action="store_true", help="with --database-url, skip the SQLite runs")
    parser.add_argument("--side-by-side", action="store_true",
                        help="also run bench.intake's verify-only, intake and 2-worker e2e, and report ratios")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)  # alembic's fileConfig (each Stack migrates) raises the root level to WARN
    backends = [] if (args.no_sqlite and args.database_url) else [("SQLite", None)]
    if args.database_url:
        backends.append(("PostgreSQL", args.database_url))
    report = {"n": args.n, "customers": args.customers, "web_workers": 2, "backends": {}}
    for backend, url in backends:
        section = {"djstripe": run_djstripe(args, url, backend)}
        if args.side_by_side:
            section["ours"] = run_ours(args, url, backend)
            section["ratios"] = ratios(section["djstripe"], section["ours"])
        report["backends"][backend] = section
    report["all_processed"] = all(r["all_processed"] for s in report["backends"].values() for r in s["djstripe"])
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["all_processed"] else 1)


if __name__ == "__main__":
    main()
