"""Payment-events benchmark (issue 14): invoice, charge, checkout-session and subscription events that
name their customer by id, so the worker retrieves that Customer from Stripe before writing the
contact, with Stripe answering in ~300 ms and rate limiting as it does.

    .venv/bin/python -m bench.payments                          # scenarios a b c d e, SQLite
    .venv/bin/python -m bench.payments --scenario a b           # some of them
    .venv/bin/python -m bench.payments --scenario c --events 2000          # a shorter (c)
    .venv/bin/python -m bench.payments --scenario a --latency 0.1 --rate 50 --mapping customer --live
    .venv/bin/python -m bench.payments --database-url postgresql://postgres@127.0.0.1:5432/postgres

Scenarios (each flag below overrides every scenario run):
  a  300 ms Stripe, open loop at 20 events/s, 300 events over 200 customers
  b  300 ms Stripe, open loop at 200 events/s, 2,000 events over 200 customers
  c  300 ms Stripe, 20,000 events, every one a different customer, closed loop (as fast as intake
     takes them, 16 in flight), mapping "customer", live mode
  d  (c) with mapping "object", and only the events whose own details serve it (invoice, charge,
     session: a subscription carries none, so it always needs its Customer)
  e  (a) and (b) with Stripe answering at once (0 ms), reported as "e/a" and "e/b"
Scenarios a, b and e use mapping "object" in test mode.

Per scenario: the Stripe double (tests/stripe_double) in a process of its own, with one account in
the scenario's mode, its secret key, and N generated customers `cus_bench_000000`… with
customer{i}@example.test, "Customer {i}" and metadata.plan "plan-{i}". Every API request waits
`--latency` seconds and Stripe's rate limit is on at the real value for the mode (100/s live, 25/s
test; `--stripe-rate-limit` changes it, 0 turns it off), so a 429 is possible. Then bench.stack.Stack:
a fresh database (SQLite unless `--database-url` names a PostgreSQL server), gunicorn with 2 web
workers, 2 worker.py processes, one StripeAccount holding the double's key (encrypted) and four
resources (invoice, charge, checkout_session, subscription), each with its own webhook token.
Mapping "object" maps Customer Email → Email and Customer Name → First Name (the invoice, charge and
session carry both); "customer" also maps metadata.plan → a custom text field "Plan", which only
the Stripe Customer holds.

Events are the shared fixtures (/work/shared/stripe-events) invoice.payment_succeeded,
charge.succeeded, checkout.session.completed and customer.subscription.created/updated, in turn,
each naming one seeded customer by id (a string `customer`) and carrying that customer's email and
name where Stripe puts them (invoice customer_email/customer_name, charge billing_details and
receipt_email, session customer_details; subscriptions carry none). Unique event ids, `created`
increasing by one second per event, `livemode` as the account's. Each is signed and POSTed to its
kind's `/webhooks/stripe/<token>` (bench/loadgen.py).

With --backlog every event is delivered before the workers start, so `processing_events_per_s`
(events applied per second between the first and the last one applied) is the workers' own rate
rather than the intake's; on a 2-core machine the web processes answering 16 deliveries at a time
take ~240 a second, which caps the end-to-end figure of c and d below what the workers do.

Report (JSON on stdout, one row per scenario; progress goes to the log on stderr):
  sent, non_2xx, intake_events_per_s   deliveries POSTed, those not answered 2xx, POSTs answered/s
  applied                 stripe_events rows in a final state (processed, skipped, ignored, failed)
  statuses, failed        rows by status at the end; how many of them failed
  complete                every accepted delivery reached a final state before `--timeout`
  seconds                 first delivery sent → the last event applied (commit seen by a 0.1 s poll)
  events_per_s            applied / seconds
  drain_after_last_delivery_s  last delivery answered → the last event applied
  freshness_ms            p50/p95/p99/max of processed_at − received_at over the rows. received_at
                          is intake's insert; processed_at is stamped when the apply transaction
                          claims the row (apply/batch.py), just before its writes and commit, so
                          it understates the commit time by that transaction's duration
  stripe.customer_retrieves            API requests to /v1/customers/… the double received
  stripe.max_requests_in_1s            most API requests (all paths) reaching the double in any
                                       sliding 1 s window, by arrival time
  stripe.max_retrieves_in_1s           the same for customer retrieves only
  stripe.rate_limited_429              429s the double answered
  contacts, plan_values_correct        contacts in the CRM; (mapping "customer") contacts whose Plan
                                       field holds their own customer's metadata.plan
On a timeout (`--timeout`, default 15 min after the first delivery) the row holds what was applied
so far, with complete false and seconds measured to the timeout.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Result, closed_loop, open_loop  # noqa: E402
from bench.stack import SECRET, Stack  # noqa: E402
from webapp.embedded_redis import free_port  # noqa: E402

log = logging.getLogger("bench.payments")

# The shared fixtures sit beside the checkout (/work/shared); a worktree elsewhere finds them there.
FIXTURES = next((p for p in (ROOT.parent / "shared" / "stripe-events", Path("/work/shared/stripe-events"))
                 if p.is_dir()), ROOT.parent / "shared" / "stripe-events")
ACCOUNT_ID = "acct_1BenchPayments"
CUSTOMER_PREFIX = "cus_bench_"
KINDS = ("invoice", "charge", "checkout_session", "subscription")
# event type -> resource kind whose endpoint Stripe delivers it to
EVENT_TYPES = {
    "invoice.payment_succeeded": "invoice",
    "charge.succeeded": "charge",
    "checkout.session.completed": "checkout_session",
    "customer.subscription.created": "subscription",
    "customer.subscription.updated": "subscription",
}
FINAL = ("processed", "skipped", "ignored", "failed")
STRIPE_RATE_LIMIT = {True: 100, False: 25}  # Stripe's requests per second, live and test mode

OBJECT_SERVED = ("invoice.payment_succeeded", "charge.succeeded", "checkout.session.completed")

SCENARIOS = {
    "a": dict(latency=0.3, rate=20, customers=200, events=300, mapping="object", live=False),
    "b": dict(latency=0.3, rate=200, customers=200, events=2000, mapping="object", live=False),
    # customers None: one customer per event
    "c": dict(latency=0.3, rate=None, customers=None, events=20_000, mapping="customer", live=True),
    # the events whose own details can serve a mapping (a subscription's never can)
    "d": dict(latency=0.3, rate=None, customers=None, events=20_000, mapping="object", live=True,
              types=OBJECT_SERVED),
    "e/a": dict(latency=0.0, rate=20, customers=200, events=300, mapping="object", live=False),
    "e/b": dict(latency=0.0, rate=200, customers=200, events=2000, mapping="object", live=False),
}


def customer_id(i: int) -> str:
    """The id of the i-th seeded customer (the double's `id_prefix` naming)."""
    return f"{CUSTOMER_PREFIX}{i:06d}"


def payment_events(n: int, customers: int, livemode: bool = False, start: int = 1_800_000_000,
                   prefix: str = "evt_pay", types: tuple[str, ...] | None = None) -> list[tuple[str, bytes]]:
    """n (resource kind, event bytes): the event types (default all five) in turn, event i about customer
    i % customers (the type rotates per round, so every customer sees every type), pretty-printed as
    Stripe sends."""
    templates = {t: json.loads((FIXTURES / f"{t}.json").read_text(encoding="utf-8")) for t in EVENT_TYPES}
    types = list(types or EVENT_TYPES)
    mode = "live" if livemode else "test"
    out = []
    for i in range(n):
        c = i % customers
        event_type = types[(i + i // customers) % len(types)]
        event = copy.deepcopy(templates[event_type])
        event["id"] = f"{prefix}_{i:07d}"
        event["created"] = start + i
        event["livemode"] = livemode
        obj = event["data"]["object"]
        obj["livemode"] = livemode
        obj["customer"] = customer_id(c)
        email, name = f"customer{c}@example.test", f"Customer {c}"
        subscription = f"sub_bench_{c:06d}"
        if event_type.startswith("invoice."):
            obj["id"] = f"in_bench_{i:07d}"
            obj["customer_email"], obj["customer_name"] = email, name
            details = (obj.get("parent") or {}).get("subscription_details")
            if isinstance(details, dict):
                details["subscription"] = subscription
        elif event_type.startswith("charge."):
            obj["id"] = f"ch_bench_{i:07d}"
            obj["receipt_email"] = email
            obj["billing_details"] = dict(obj.get("billing_details") or {}, email=email, name=name)
        elif event_type.startswith("checkout.session."):
            obj["id"] = f"cs_{mode}_bench{i:07d}"
            obj["customer_details"] = dict(obj.get("customer_details") or {}, email=email, name=name)
        else:  # subscriptions carry no contact details of their own
            obj["id"] = subscription
        out.append((EVENT_TYPES[event_type], json.dumps(event, indent=2, ensure_ascii=False).encode("utf-8")))
    return out


class StripeDoubleProcess:
    """The Stripe double in a process of its own, driven through its /_double/ control endpoints."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "StripeDoubleProcess":
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.stripe_double", "--port", str(self.port),
                                      "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(self.base + "/_double/health", timeout=1).raise_for_status()
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the Stripe double did not start")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def control(self, method: str, path: str, **kwargs) -> dict:
        """One control request; raises on an error answer."""
        resp = requests.request(method, self.base + "/_double/" + path, timeout=120, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def seed(self, customers: int, livemode: bool) -> str:
        """The account in its mode with `customers` generated customers; returns its secret key."""
        made = self.control("POST", "accounts", json={"email": "owner@bench.test", "id": ACCOUNT_ID,
                                                      "business_name": "Bench Payments", "livemode": livemode})
        self.control("POST", f"accounts/{ACCOUNT_ID}/customers/generate",
                     json={"n": customers, "start_created": 1_700_000_000, "id_prefix": CUSTOMER_PREFIX,
                           "metadata": {"plan": "plan-{i}"}})
        return made["secret_key"]

    def configure(self, latency: float, per_second: float | None) -> None:
        """Per-request latency and the rate limit (None: off)."""
        self.control("POST", "latency", json={"seconds": latency})
        self.control("POST", "rate_limit", json={"per_second": per_second})

    def stats(self, path_prefix: str | None = None) -> dict:
        """{"requests", "max_per_second", "rate_limited"} for API paths under path_prefix."""
        return self.control("GET", "stats", params={"path_prefix": path_prefix} if path_prefix else None)


class Progress(threading.Thread):
    """Polls the events' statuses every `interval` s and notes when the final count last grew."""

    def __init__(self, stack: Stack, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.stack, self.interval = stack, interval
        self.stopping = threading.Event()
        self.counts: dict[str, int] = {}
        self.done = self.total = 0
        self.changed_at: float | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                counts = self.stack.status_counts()
            except Exception as exc:  # noqa: BLE001 - a busy database delays one poll, no more
                log.debug("status poll failed: %s", exc)
            else:
                done = sum(counts.get(s, 0) for s in FINAL)
                now = time.time()
                if done != self.done:
                    self.changed_at = now
                self.counts, self.done, self.total = counts, done, sum(counts.values())
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def percentiles(values: list[float]) -> dict:
    """p50/p95/p99/max (nearest rank), rounded to 0.1."""
    data = sorted(values)
    if not data:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}

    def pct(q: float) -> float:
        return round(data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))], 1)

    return {"n": len(data), "p50": pct(50), "p95": pct(95), "p99": pct(99), "max": round(data[-1], 1)}


def plan_check(stack: Stack) -> tuple[int, int | None]:
    """(contacts, contacts whose Plan value is their own customer's metadata.plan, None without Plan)."""
    from sqlalchemy import text
    with stack.engine().connect() as conn:
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar()
        if not stack.plan_field_key:
            return contacts, None
        rows = conn.execute(text(
            "SELECT c.email, v.value FROM contacts c JOIN contact_field_values v ON v.contact_id = c.id "
            "JOIN contact_fields f ON f.id = v.field_id WHERE f.key = :key"), {"key": stack.plan_field_key}).all()
    correct = sum(1 for email, value in rows
                  if email.startswith("customer") and value == "plan-" + email[len("customer"):].split("@")[0])
    return contacts, correct


def run_scenario(name: str, spec: dict, args) -> dict:
    """One scenario end to end; returns its report row."""
    events, live, latency = spec["events"], spec["live"], spec["latency"]
    customers = spec["customers"] or events
    limit = STRIPE_RATE_LIMIT[live] if args.stripe_rate_limit is None else (args.stripe_rate_limit or None)
    row = {"scenario": name, "latency_s": latency, "events": events, "customers": customers,
           "load": f"open loop {spec['rate']}/s" if spec["rate"] else f"closed loop C={args.concurrency}",
           "mapping": spec["mapping"], "event_types": list(spec.get("types") or EVENT_TYPES), "livemode": live, "stripe_rate_limit": limit, "workers": args.workers,
           "database": "postgresql" if args.database_url else "sqlite", "backlog": args.backlog}
    log.info("Scenario %s: %s", name, row)
    payload = payment_events(events, customers, live, types=spec.get("types"))
    with StripeDoubleProcess() as double:
        key = double.seed(customers, live)
        double.configure(latency, limit)
        with Stack(args.database_url, kinds=KINDS, livemode=live, secret_key=key, stripe_api_base=double.base,
                   mapping=spec["mapping"], account_id=ACCOUNT_ID) as stack:
            url = stack.start_web()
            if not args.backlog:
                stack.start_workers(args.workers)
            paths = [f"/webhooks/stripe/{stack.tokens[kind]}" for kind, _ in payload]
            bodies = [body for _, body in payload]
            progress = Progress(stack)
            progress.start()
            try:
                if spec["rate"]:
                    # enough senders that a slow answer (a busy 2-core box) never lowers the rate
                    result: Result = open_loop(url, "", SECRET, bodies, rate=spec["rate"], paths=paths,
                                               threads=max(16, int(spec["rate"] // 4)))
                else:
                    result = closed_loop(url, "", SECRET, bodies, args.concurrency, paths=paths)
                log.info("Scenario %s: %s deliveries in %.1f s (%s non-2xx); waiting for the workers",
                         name, result.sent, result.seconds, result.non_2xx)
                if args.backlog:
                    stack.start_workers(args.workers)
                expected = result.sent - result.non_2xx
                deadline = result.first_send + args.timeout
                next_note = time.time() + 30
                while time.time() < deadline:
                    if progress.done >= expected and progress.done == progress.total:
                        break
                    if time.time() >= next_note:
                        log.info("Scenario %s: %s of %s applied", name, progress.done, expected)
                        next_note += 30
                    time.sleep(0.1)
                time.sleep(progress.interval * 2)  # one more poll after the last change
            finally:
                progress.stop()
            counts = stack.status_counts()
            applied = sum(counts.get(s, 0) for s in FINAL)
            complete = applied >= expected and applied == sum(counts.values())
            last_applied = progress.changed_at if complete and progress.changed_at else time.time()
            seconds = last_applied - result.first_send
            times = stack.event_times()
            contacts, plans = plan_check(stack)
        retrieves = double.stats("/v1/customers/")
        everything = double.stats()
    row.update({
        "sent": result.sent, "non_2xx": result.non_2xx, "intake_events_per_s": round(result.rate, 1),
        "applied": applied, "statuses": counts, "failed": counts.get("failed", 0), "complete": complete,
        "seconds": round(seconds, 2), "events_per_s": round(applied / seconds, 1) if seconds > 0 else None,
        "drain_after_last_delivery_s": round(max(0.0, last_applied - result.last_done), 2),
        "freshness_ms": percentiles([(done - got).total_seconds() * 1000 for got, done in times]),
        "processing_events_per_s": _processing_rate(times),
        "stripe": {"customer_retrieves": retrieves["requests"], "all_requests": everything["requests"],
                   "max_requests_in_1s": everything["max_per_second"],
                   "max_retrieves_in_1s": retrieves["max_per_second"],
                   "rate_limited_429": everything["rate_limited"]},
        "contacts": contacts, "plan_values_correct": plans,
    })
    if not complete:
        log.warning("Scenario %s timed out after %s s: %s of %s applied", name, args.timeout, applied, expected)
    log.info("Scenario %s done: %s", name, row)
    return row


def _processing_rate(times: list) -> float | None:
    """Events applied per second between the first and the last event the workers applied: the
    workers' own rate, whatever the intake's (the figure for a backlog)."""
    done = sorted(d for _, d in times)
    if len(done) < 2:
        return None
    seconds = (done[-1] - done[0]).total_seconds()
    return round((len(done) - 1) / seconds, 1) if seconds > 0 else None


def _commit() -> str | None:
    """The checkout's commit (and whether the app's code differs from it), so before/after reports say
    what they measured."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "webapp", "migrations",
                                  "worker.py", "app.py"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+uncommitted changes" if changed.strip() else "")


def main(argv=None) -> None:
    """Run the chosen scenarios and print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", nargs="+", choices=["a", "b", "c", "d", "e"], default=["a", "b", "c", "d", "e"])
    parser.add_argument("--events", type=int, help="events per scenario")
    parser.add_argument("--customers", type=int, help="seeded customers the events name (default per scenario; "
                                                      "c and d: one per event)")
    parser.add_argument("--rate", type=float, help="open loop at this many events/s (a, b, e)")
    parser.add_argument("--concurrency", type=int, default=16, help="deliveries in flight in closed loop (c, d)")
    parser.add_argument("--latency", type=float, help="seconds the Stripe double takes per API request")
    parser.add_argument("--mapping", choices=["object", "customer"])
    parser.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                        help="live mode (sk_live_ key, Stripe's 100/s limit) or --no-live (test, 25/s)")
    parser.add_argument("--stripe-rate-limit", type=float, default=None,
                        help="the double's requests/s before 429 (default Stripe's for the mode; 0 = off)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backlog", action="store_true",
                        help="deliver every event first, then start the workers (c, d: what the workers "
                             "can do, not what one machine's intake can feed them)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds from the first delivery per scenario")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server; each run gets its own database")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)  # alembic's logging set-up raises the root level; keep our progress lines
    names = [n for s in args.scenario for n in (["e/a", "e/b"] if s == "e" else [s])]
    rows = []
    for name in names:
        spec = dict(SCENARIOS[name])
        for key in ("events", "customers", "rate", "latency", "mapping", "live"):
            if getattr(args, key) is not None:
                spec[key] = getattr(args, key)
        if spec["rate"] is not None and SCENARIOS[name]["rate"] is None:
            spec["rate"] = None  # c and d are closed loop whatever --rate says
        rows.append(run_scenario(name, spec, args))
    print(json.dumps({"commit": _commit(), "payments": rows}, indent=2))


if __name__ == "__main__":
    main()
