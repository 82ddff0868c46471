"""CLI: run the Stripe double as a standalone server for the local demo or for another process's tests."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import threading

from .server import StripeDouble

log = logging.getLogger("tests.stripe_double")

DEMO_CUSTOMERS = [
    dict(id="cus_Visible1", email="ada@example.com", name="Ada Lovelace", phone="+16175550142",
         address={"city": "Boston", "country": "US", "line1": "1815 Analytical Engine Row", "line2": "Apt 2",
                  "postal_code": "02110", "state": "MA"},
         metadata={"app_user_id": "user_1815", "plan": "pro"}, created=1785748502,
         preferred_locales=["en-US"], currency="usd", next_invoice_sequence=2, invoice_prefix="5E1D0A7C",
         invoice_settings={"custom_fields": None, "default_payment_method": "pm_1U6BydLm3xVt9QeK2wx9IZG6",
                           "footer": None, "rendering_options": None}),
    dict(id="cus_Ip1BM6AwKptPXL", email=None, name="Charles Babbage", phone="+442079460991",
         description="Walk-in customer, no email on file", metadata={"source": "pos"}, created=1788803110,
         invoice_prefix="0C7F3D28"),
    dict(id="cus_PBRkue98jZWLoh", email="jose@example.com", name="José Núñez-García", created=1786000000,
         metadata={"app_user_id": "user_2044"}),
    dict(id="cus_GraceHopper01", email="grace@example.com", name="Grace Hopper", created=1786100000,
         metadata={"app_user_id": "user_1906", "plan": "team"}),
    dict(id="cus_AlanTuring001", email="alan@example.com", name="Alan Turing", created=1786200000,
         metadata={}),
]

FIXTURE_KINDS = {"charge": "charges", "subscription": "subscriptions", "invoice": "invoices",
                 "checkout.session": "checkout_sessions"}


DEMO_ACCOUNT = "acct_1EngineRoomDemo"  # fixed, so the README's commands can name it


def seed_demo(double: StripeDouble, fixtures: pathlib.Path | None, extra_customers: int) -> tuple[dict, str]:
    """Create the Engine Room Software account, its test secret key, and a handful of customers."""
    account = double.add_account(email="owner@engineroom.test", business_name="Engine Room Software", id=DEMO_ACCOUNT)
    key = double.add_secret_key(account["id"])
    for customer in DEMO_CUSTOMERS:
        double.add_customer(account["id"], **customer)
    if extra_customers:
        double.generate_customers(account["id"], extra_customers, start_created=1780000000)
    if fixtures is not None:
        events = []
        for path in sorted(fixtures.glob("*.json")):
            event = json.loads(path.read_text(encoding="utf-8"))
            obj = event.get("data", {}).get("object", {})
            if obj.get("object") in FIXTURE_KINDS and obj.get("id"):
                events.append((event["created"], obj))
        for _, obj in sorted(events, key=lambda e: e[0]):  # later events leave the latest state
            double.add_object(account["id"], FIXTURE_KINDS[obj["object"]], obj)
        log.info("Loaded %d fixture objects from %s", len(events), fixtures)
    return account, key


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the double, optionally seed the demo, and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m tests.stripe_double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--seed", type=int, default=1815, help="id/key generator seed (stable demo key)")
    parser.add_argument("--seed-demo", action="store_true", help="create the Engine Room Software demo account")
    parser.add_argument("--fixtures", type=pathlib.Path, default=None,
                        help="directory of Stripe event JSON files whose objects to load into the demo account")
    parser.add_argument("--customers", type=int, default=0, help="extra generated demo customers")
    parser.add_argument("--allow-local-urls", action="store_true",
                        help="accept localhost/private webhook URLs (real Stripe refuses them)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds every API request waits before it is answered (real Stripe: ~0.3)")
    parser.add_argument("--latency-ms", type=float, default=None,
                        help="the same in milliseconds (wins over --latency); also POST /_double/latency")
    parser.add_argument("--rate-limit", type=float, default=None,
                        help="API requests per second before a 429 rate_limit (Stripe: 100 live, 25 test); "
                             "off by default")
    parser.add_argument("--list-rate-limit", type=float, default=None,
                        help="requests per second on each list endpoint (e.g. GET /v1/customers) before a 429 "
                             "with Stripe-Rate-Limited-Reason: endpoint-rate (Stripe: 25); off by default")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    double = StripeDouble(seed=args.seed, allow_local_urls=args.allow_local_urls, host=args.host, port=args.port)
    double.set_latency(args.latency_ms / 1000.0 if args.latency_ms is not None else args.latency)
    double.set_rate_limit(args.rate_limit, args.list_rate_limit)
    double.start()
    log.info("Stripe double serving at %s (control endpoints under %s/_double/)", double.url, double.url)
    if args.seed_demo:
        account, key = seed_demo(double, args.fixtures, args.customers)
        log.info("Demo account %s (%s); use secret key: %s", account["id"],
                 account["settings"]["dashboard"]["display_name"], key)
        log.info('Point the SDK at it: stripe.StripeClient(key, base_addresses={"api": "%s"})', double.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        log.info("Stopping Stripe double")
    finally:
        double.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
