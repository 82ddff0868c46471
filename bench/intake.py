"""Webhook benchmarks: intake throughput and latency beside a verify-only Flask view, latency at a
fixed 200 events/s, and end-to-end processing with 1, 2 and 4 workers.

    .venv/bin/python -m bench.intake                  # SQLite, N=2000
    .venv/bin/python -m bench.intake --database-url postgresql://postgres@127.0.0.1:5432/bench
"""
import argparse
import json
import logging
import time

from bench.loadgen import closed_loop, open_loop
from bench.stack import SECRET, Stack, event_payloads

log = logging.getLogger("bench.intake")


def intake(args) -> list[dict]:
    """Closed-loop intake at each concurrency, ours and the verify-only ceiling, same events."""
    rows = []
    for name, wsgi in (("verify-only Flask view", "bench.verify_only:app"), ("Engine CRM intake", "app:app")):
        for c in args.concurrency:
            with Stack(args.database_url) as stack:
                url = stack.start_web(wsgi)
                payloads = event_payloads(args.n)
                closed_loop(url, f"/webhooks/stripe/{stack.token}", SECRET,
                            event_payloads(200, start=1, prefix="evt_warmup"), c)
                result = closed_loop(url, f"/webhooks/stripe/{stack.token}", SECRET, payloads, c)
                rows.append({"stack": name, "concurrency": c, **result.summary()})
                log.info("%s", rows[-1])
    return rows


def fixed_rate(args) -> dict:
    """Open-loop at 200 events/s: the latency Stripe's deliveries would see."""
    with Stack(args.database_url) as stack:
        url = stack.start_web()
        stack.start_workers(2)
        result = open_loop(url, f"/webhooks/stripe/{stack.token}", SECRET, event_payloads(args.n), rate=200)
        row = {"stack": "Engine CRM intake, 2 workers processing", "rate": 200, **result.summary()}
        log.info("%s", row)
        return row


def end_to_end(args) -> list[dict]:
    """From the first POST until the last event is processed, with W workers."""
    rows = []
    for workers in args.workers:
        with Stack(args.database_url) as stack:
            url = stack.start_web()
            stack.start_workers(workers)
            payloads = event_payloads(args.n)
            result = closed_loop(url, f"/webhooks/stripe/{stack.token}", SECRET, payloads, 8)
            deadline = time.time() + 600
            while stack.count_done() < args.n and time.time() < deadline:
                time.sleep(0.05)
            done_at = time.time()
            done = stack.count_done()
            seconds = done_at - result.first_send
            rows.append({"workers": workers, "events": args.n, "processed": done,
                         "seconds": round(seconds, 2), "events_per_s": round(done / seconds, 1),
                         "intake_events_per_s": round(result.rate, 1), "non_2xx": result.non_2xx})
            log.info("%s", rows[-1])
    return rows


def main() -> None:
    """Run the chosen scenarios and print JSON (bench/README.md holds the tables)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--only", choices=["intake", "rate", "e2e"], nargs="+", default=["intake", "rate", "e2e"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)  # alembic's logging set-up raises the root level; keep our progress lines
    report = {}
    if "intake" in args.only:
        report["intake"] = intake(args)
    if "rate" in args.only:
        report["fixed_rate"] = fixed_rate(args)
    if "e2e" in args.only:
        report["end_to_end"] = end_to_end(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
