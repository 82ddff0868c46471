"""Page benchmarks (issue 8): the contacts list and the live sync-log fragments with 100,000 contacts
and 1,000,000 sync-log rows, served by gunicorn (2 sync workers) as in production, timed from one
logged-in client; then each URL once more in-process to name its slowest SQL and its query plan.
The contacts list is also searched by any part of a name or domain, by a Stripe customer id and by
two letters, and sorted by lifetime value and last payment.

    .venv/bin/python -m bench.pages                         # 100k contacts, 1M log rows, 300 requests/URL
    .venv/bin/python -m bench.pages --contacts 10000 --log-rows 100000 --requests 50   # a quick check
    .venv/bin/python -m bench.pages --database-url postgresql://postgres@127.0.0.1:PORT/postgres
    .venv/bin/python -m bench.pages --only contacts         # just the contacts URLs
"""
import argparse
import json
import logging
import random
import statistics
import time
from datetime import datetime, timedelta

import requests
from sqlalchemy import create_engine, event, func, insert, select, text

from bench.stack import Stack, _sqlalchemy_url
from tests.helpers import csrf_from

log = logging.getLogger("bench.pages")
EMAIL = "bench-admin@example.test"
PASSWORD = "correct horse battery staple"
CHUNK = 50_000
TARGET_P99_MS = 100.0

FIRST = ["Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Margaret", "Dennis", "Frances",
         "John", "Radia", "Ken", "Sophie", "Tim", "Hedy", "Claude", "Annie", "Niklaus", "Evelyn"]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Ritchie", "Allen",
        "McCarthy", "Perlman", "Thompson", "Wilson", "Berners-Lee", "Lamarr", "Shannon", "Easley", "Wirth", "Boyd",
        "Nunez"]
CUSTOMER_SHARE = 0.8  # contacts linked to a Stripe customer id
# (share of contacts, subscription status) for the summary columns; the rest have none.
SUBSCRIPTIONS = [(0.10, "ACTIVE"), (0.02, "TRIALING"), (0.02, "PAYMENT_FAILED"), (0.01, "PAUSED"),
                 (0.05, "CANCELLED")]
BUYER_SHARE = 0.35  # contacts with a lifetime value and a last payment
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# (name, share of contacts that carry it): the tags the Stripe sync writes, plus two hand-made ones.
TAGS = [("stripe-integration", 0.90), ("stripe-integration-customer.created", 0.85),
        ("stripe-integration-customer.updated", 0.60), ("stripe-integration-Billing_Subscription_Events", 0.15),
        ("newsletter", 0.30), ("vip", 0.005)]
# (event type, resource kind, weight) for the log.
EVENT_MIX = [("customer.updated", "customer", 40), ("customer.created", "customer", 10),
             ("invoice.payment_succeeded", "invoice", 10), ("invoice.updated", "invoice", 6),
             ("invoice.payment_failed", "invoice", 2), ("customer.subscription.updated", "subscription", 10),
             ("customer.subscription.created", "subscription", 4), ("customer.subscription.deleted", "subscription", 1),
             ("checkout.session.completed", "checkout_session", 10), ("charge.succeeded", "charge", 5),
             ("charge.refunded", "charge", 2)]
# (outcome, weight): most attempts update a known contact; failures after retries are rare.
OUTCOME_MIX = [("updated", 740), ("created", 150), ("skipped", 95), ("failed", 10), ("ignored", 5)]


def _chunks(rows, size=CHUNK):
    """Slices of a list for executemany."""
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def build_data(stack: Stack, n_contacts: int, n_logs: int, seed: int = 8) -> dict:
    """Bulk Core inserts (executemany in chunks) of contacts (with their list figures), Stripe customer
    links, tags, resources, events and log rows."""
    from webapp.crm.models import Contact, ContactStripeCustomer, ContactTag, Tag
    from webapp.stripe_sync.models import ResourceCounter, StripeAccount, StripeEvent, StripeResource, SyncLog

    rnd = random.Random(seed)
    engine = create_engine(_sqlalchemy_url(stack.database_url))
    started = time.perf_counter()
    base = datetime(2026, 1, 1)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
        account_id = conn.scalar(select(StripeAccount.id))
        resources = {conn.scalar(select(StripeResource.kind).where(StripeResource.account_id == account_id)):
                     conn.scalar(select(StripeResource.id).where(StripeResource.account_id == account_id))}
        for kind in ("charge", "subscription", "invoice", "checkout_session"):
            resources[kind] = conn.execute(insert(StripeResource).values(
                account_id=account_id, kind=kind, sync_type="new_only", token=f"bench-pages-{kind}",
                webhook_endpoint_id=f"we_bench_{kind}", webhook_url="https://crm.example.test/x",
                status="active", created_at=base)).inserted_primary_key[0]

        contacts, links, customer_ids = [], [], {}
        for i in range(n_contacts):
            first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
            email = f"customer{i}@example.test"
            at = base + timedelta(seconds=30 * i)
            row = {"id": i + 1, "email": email, "email_lower": email, "first_name": first,
                   "last_name": last, "phone": f"+1617555{i % 10000:04d}",
                   "name_key": f"{first} {last}".lower(), "last_key": last.lower(),
                   "created_at": at, "updated_at": at, "lifetime_value": 0, "lifetime_currency": None,
                   "last_payment_at": None, "subscription_status": None}
            if rnd.random() < BUYER_SHARE:
                row.update(lifetime_value=rnd.randint(1, 2000) * 100, lifetime_currency="usd",
                           last_payment_at=at + timedelta(seconds=rnd.randint(0, 90 * 86400)))
            pick = rnd.random()
            for share, status in SUBSCRIPTIONS:
                if pick < share:
                    row["subscription_status"] = status
                    break
                pick -= share
            contacts.append(row)
            if rnd.random() < CUSTOMER_SHARE:
                customer_ids[i + 1] = "cus_" + "".join(rnd.choices(ID_CHARS, k=14))
                links.append({"account_id": account_id, "customer_id": customer_ids[i + 1], "contact_id": i + 1,
                              "created_at": at})
        for part in _chunks(contacts):
            conn.execute(insert(Contact), part)
        for part in _chunks(links):
            conn.execute(insert(ContactStripeCustomer), part)
        n_customers = len(links)
        sample_customer = customer_ids.get(n_contacts // 2) or next(iter(customer_ids.values()), "cus_none")
        del contacts, links, customer_ids

        tag_ids = {}
        for name, _share in TAGS:
            tag_ids[name] = conn.execute(insert(Tag).values(name=name, name_lower=name.lower(),
                                                            created_at=base)).inserted_primary_key[0]
        links = []
        for cid in range(1, n_contacts + 1):
            for name, share in TAGS:
                if rnd.random() < share:
                    links.append({"contact_id": cid, "tag_id": tag_ids[name], "created_at": base})
        for part in _chunks(links):
            conn.execute(insert(ContactTag), part)
        n_links = len(links)
        del links

        types = [t for t, _k, _w in EVENT_MIX]
        kinds = {t: k for t, k, _w in EVENT_MIX}
        type_w = [w for _t, _k, w in EVENT_MIX]
        outcomes = [o for o, _w in OUTCOME_MIX]
        outcome_w = [w for _o, w in OUTCOME_MIX]
        log_start = base + timedelta(days=30)
        rows, events, counters = [], [], {}
        for j in range(n_logs):
            etype = rnd.choices(types, type_w)[0]
            outcome = rnd.choices(outcomes, outcome_w)[0]
            rid = resources[kinds[etype]]
            row = {"id": j + 1, "created_at": log_start + timedelta(seconds=2 * j), "account_id": account_id,
                   "resource_id": rid, "event_row_id": None, "stripe_event_id": f"evt_pages_{j:08d}",
                   "event_type": etype, "contact_id": None, "outcome": outcome, "reason": None, "detail": None,
                   "attempt": 1, "duration_ms": rnd.randint(4, 90), "historical": rnd.random() < 0.05}
            if outcome in ("created", "updated"):
                row["contact_id"] = rnd.randint(1, n_contacts)
            elif outcome == "skipped":
                row["reason"] = "No email after resolution (point-of-sale customer)"
            elif outcome == "ignored":
                row["reason"] = "Event type not subscribed by this resource"
            else:
                row["contact_id"] = rnd.randint(1, n_contacts)
                row["reason"] = "Stripe answered 500 after 5 attempts"
                row["detail"] = "stripe.APIError: Request req_bench: internal error"
                row["attempt"] = 5
                row["event_row_id"] = len(events) + 1
                events.append({"id": len(events) + 1, "account_id": account_id, "resource_id": rid,
                               "stripe_event_id": row["stripe_event_id"], "type": etype,
                               "created": 1_800_000_000 + j, "livemode": False,
                               "payload": json.dumps({"id": row["stripe_event_id"], "type": etype}),
                               "status": "failed", "historical": False, "attempts": 5,
                               "error": row["reason"], "contact_id": row["contact_id"],
                               "received_at": row["created_at"]})
            counters[(rid, outcome)] = counters.get((rid, outcome), 0) + 1
            rows.append(row)
        for part in _chunks(events):
            conn.execute(insert(StripeEvent), part)
        for part in _chunks(rows):
            conn.execute(insert(SyncLog), part)
        del rows
        conn.execute(insert(ResourceCounter), [{"resource_id": rid, "outcome": outcome, "shard": 0, "count": count}
                                               for (rid, outcome), count in counters.items()])
        max_log = conn.scalar(select(func.max(SyncLog.id))) or 0
    engine.dispose()
    seconds = time.perf_counter() - started
    log.info("built %d contacts, %d customer links, %d tag links, %d log rows, %d failed events in %.1f s",
             n_contacts, n_customers, n_links, n_logs, len(events), seconds)
    return {"contacts": n_contacts, "customer_links": n_customers, "tag_links": n_links, "log_rows": n_logs,
            "failed_events": len(events), "tags": tag_ids, "max_log_id": max_log, "customer_id": sample_customer,
            "build_seconds": round(seconds, 1)}


def create_admin(stack: Stack) -> None:
    """The login the client uses, through the domain function."""
    from webapp import create_app
    from webapp.auth.service import create_user
    from webapp.extensions import db

    app = create_app({"INSTANCE_PATH": str(stack.tmp)})
    with app.app_context():
        create_user(EMAIL, PASSWORD)
        db.session.commit()
        db.engine.dispose()


def login(base_url: str) -> requests.Session:
    """A session logged in through the real form (CSRF token from GET /login)."""
    session = requests.Session()
    token = csrf_from(session.get(base_url + "/login", timeout=30).text)
    resp = session.post(base_url + "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
                        allow_redirects=False, timeout=30)
    if resp.status_code != 302:
        raise RuntimeError(f"login failed: {resp.status_code} {resp.text[:300]}")
    return session


def scenarios(data: dict) -> list[dict]:
    """The URLs a user (or the page's 2-second poll) hits; headers as htmx sends them."""
    top = data["max_log_id"]
    htmx_contacts = {"HX-Request": "true", "HX-Target": "contact-table"}
    htmx_log = {"HX-Request": "true", "HX-Target": "sync-log"}
    tags = data["tags"]
    return [
        {"name": "contacts, first page", "path": "/contacts"},
        {"name": "contacts, page 1000", "path": "/contacts?page=1000"},
        {"name": "contacts, search as you type", "path": "/contacts?q=customer12", "headers": htmx_contacts},
        {"name": "contacts, search by name", "path": "/contacts?q=grace", "headers": htmx_contacts},
        {"name": "contacts, search with no match", "path": "/contacts?q=zzz", "headers": htmx_contacts},
        {"name": "contacts, common tag (90%)", "path": f"/contacts?tag={tags['stripe-integration']}"},
        {"name": "contacts, rare tag (0.5%)", "path": f"/contacts?tag={tags['vip']}"},
        {"name": "contacts, any part of a name (unez)", "path": "/contacts?q=unez", "headers": htmx_contacts},
        {"name": "contacts, part of the domain (example: every contact)", "path": "/contacts?q=example",
         "headers": htmx_contacts},
        {"name": "contacts, part of an email, page 20", "path": "/contacts?q=ustomer9&page=20",
         "headers": htmx_contacts},
        {"name": "contacts, Stripe customer id", "path": f"/contacts?q={data['customer_id']}",
         "headers": htmx_contacts},
        {"name": "contacts, two letters (ad)", "path": "/contacts?q=ad", "headers": htmx_contacts},
        {"name": "contacts, name part + common tag", "path": f"/contacts?q=unez&tag={tags['stripe-integration']}",
         "headers": htmx_contacts},
        {"name": "contacts, by lifetime value", "path": "/contacts?sort=-lifetime_value", "headers": htmx_contacts},
        {"name": "contacts, by lifetime value, page 1000", "path": "/contacts?sort=-lifetime_value&page=1000",
         "headers": htmx_contacts},
        {"name": "contacts, by last payment", "path": "/contacts?sort=-last_payment", "headers": htmx_contacts},
        {"name": "contacts, by last payment, oldest first", "path": "/contacts?sort=last_payment",
         "headers": htmx_contacts},
        {"name": "contacts, by last payment, page 1000 (past the last payment)",
         "path": "/contacts?sort=-last_payment&page=1000", "headers": htmx_contacts},
        {"name": "contacts, by subscription", "path": "/contacts?sort=subscription", "headers": htmx_contacts},
        {"name": "contacts, by lifetime value + rare tag", "path": f"/contacts?sort=-lifetime_value&tag={tags['vip']}",
         "headers": htmx_contacts},
        {"name": "contacts, domain part by lifetime value", "path": "/contacts?q=example&sort=-lifetime_value",
         "headers": htmx_contacts},
        {"name": "contacts, name part by last payment", "path": "/contacts?q=unez&sort=-last_payment",
         "headers": htmx_contacts},
        {"name": "stripe manage page with log", "path": "/apps/stripe"},
        {"name": "log filter change (outcome=failed)", "path": "/apps/stripe?outcome=failed", "headers": htmx_log},
        {"name": "poll, nothing new (204)", "path": f"/apps/stripe/log/newer?after={top}", "expect": 204},
        {"name": "poll, nothing new, outcome=failed", "path": f"/apps/stripe/log/newer?after={top}&outcome=failed",
         "expect": 204},
        {"name": "poll, 10 new rows", "path": f"/apps/stripe/log/newer?after={top - 10}"},
        {"name": "load older", "path": f"/apps/stripe/log/older?before={top - 49}"},
        {"name": "load older, outcome=failed", "path": f"/apps/stripe/log/older?before={top - 49}&outcome=failed"},
        {"name": "load older, failed + invoice.payment_failed",
         "path": f"/apps/stripe/log/older?before={top - 49}&outcome=failed&event_type=invoice.payment_failed"},
    ]


def time_url(session: requests.Session, base_url: str, sc: dict, n: int, warm: int) -> dict:
    """n sequential requests after warm-up; median, p95, p99 and max in ms, statuses and size."""
    url = base_url + sc["path"]
    headers = sc.get("headers", {})
    for _ in range(warm):
        session.get(url, headers=headers, allow_redirects=False, timeout=60)
    times, statuses, size = [], {}, 0
    for _ in range(n):
        start = time.perf_counter()
        resp = session.get(url, headers=headers, allow_redirects=False, timeout=60)
        body = resp.content
        times.append((time.perf_counter() - start) * 1000)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        size = len(body)
    times.sort()

    def pct(q):
        return round(times[min(len(times) - 1, int(round(q / 100 * (len(times) - 1))))], 2)

    expect = sc.get("expect", 200)
    return {"name": sc["name"], "path": sc["path"], "requests": n, "median_ms": round(statistics.median(times), 2),
            "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": round(times[-1], 2), "statuses": statuses,
            "bytes": size, "ok": set(statuses) == {expect}, "meets_p99_target": pct(99) < TARGET_P99_MS}


def explain(stack: Stack, cases: list[dict], runs: int = 5) -> list[dict]:
    """In-process (Flask test client): each URL's SQL statements by time, and the slowest one's plan."""
    from webapp import create_app
    from webapp.extensions import db

    app = create_app({"INSTANCE_PATH": str(stack.tmp)})
    out = []
    with app.app_context():
        engine = db.engine
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
        captured: list = []

        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("t0", []).append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn, cursor, statement, parameters, context, executemany):
            captured.append((statement, parameters, (time.perf_counter() - conn.info["t0"].pop()) * 1000))

        for sc in cases:
            per_stmt: dict[str, list] = {}
            params_of = {}
            statuses = set()
            for i in range(runs + 1):
                captured.clear()
                statuses.add(client.get(sc["path"], headers=sc.get("headers", {})).status_code)
                if i == 0:
                    continue  # warm-up
                for stmt, params, ms in captured:
                    per_stmt.setdefault(stmt, []).append(ms)
                    params_of[stmt] = params
            ranked = sorted(((statistics.median(v), s) for s, v in per_stmt.items()), reverse=True)
            top = []
            for ms, stmt in ranked[:3]:
                entry = {"median_ms": round(ms, 2), "sql": " ".join(stmt.split())[:600]}
                if stmt.lstrip().upper().startswith("SELECT"):
                    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
                    with engine.connect() as conn:
                        plan = conn.exec_driver_sql(prefix + stmt, params_of[stmt]).fetchall()
                    entry["plan"] = [row[-1] for row in plan]
                top.append(entry)
            out.append({"name": sc["name"], "statuses": sorted(statuses),
                        "statements": sum(len(v) for v in per_stmt.values()) // runs,
                        "sql_total_ms": round(sum(statistics.median(v) for v in per_stmt.values()), 2),
                        "slowest": top})
        event.remove(engine, "before_cursor_execute", _before)
        event.remove(engine, "after_cursor_execute", _after)
        db.engine.dispose()
    return out


def main() -> None:
    """Build the data, serve with gunicorn, time every URL, explain the SQL; print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per URL (after warm-up)")
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE after loading (the app never does)")
    parser.add_argument("--no-explain", action="store_true")
    parser.add_argument("--keep-db", action="store_true",
                        help="keep the SQLite file or PostgreSQL database (its URL is in the report)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server (postgresql://…/postgres); the run gets its own database there")
    parser.add_argument("--only", default=None, help="time only the scenarios whose name contains this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)  # alembic's fileConfig (the Stack migrates) raises the root level to WARN
    database = "PostgreSQL" if args.database_url else "SQLite (WAL)"
    # Plain http on loopback: with the Stack's https PUBLIC_BASE_URL the session cookie would be Secure
    # and the client would never send it back. Nothing here needs a webhook address.
    with Stack(args.database_url, extra_env={"PUBLIC_BASE_URL": "http://127.0.0.1"}, keep=args.keep_db) as stack:
        data = build_data(stack, args.contacts, args.log_rows)
        if args.analyze or args.database_url:
            # PostgreSQL's autovacuum vacuums and analyzes freshly loaded tables within a minute: done
            # here first, or it runs (1M log rows, on the same 2 cores) while the URLs are timed.
            engine = create_engine(_sqlalchemy_url(stack.database_url), isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE" if args.database_url else "ANALYZE"))
            engine.dispose()
        create_admin(stack)
        base_url = stack.start_web()
        session = login(base_url)
        cases = [sc for sc in scenarios(data) if not args.only or args.only in sc["name"]]
        results = []
        for sc in cases:
            results.append(time_url(session, base_url, sc, args.requests, args.warm_up))
            log.info("%s", results[-1])
        report = {"server": f"gunicorn, 2 sync workers, {database}, one sequential logged-in client",
                  "data": data, "analyzed": bool(args.analyze or args.database_url), "target_p99_ms": TARGET_P99_MS,
                  "pages": results,
                  "all_meet_target": all(r["meets_p99_target"] and r["ok"] for r in results)}
        if not args.no_explain:
            report["sql"] = explain(stack, cases)
    if args.keep_db:
        report["database"] = stack.database_url
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
