"""Per-run database work for the dj-stripe peer, run with the dj-stripe venv's Python from this folder:
`prepare.py setup` migrates and registers the account and webhook endpoint as a dj-stripe install would;
`prepare.py count` reports what dj-stripe actually stored, so a benchmark of failures cannot pass."""
import argparse
import json
import os
import sys
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402


def setup(args) -> dict:
    """Migrate, fetch the account for the API key (GET /v1/account on the double), add the endpoint."""
    from djstripe.models import Account, WebhookEndpoint

    call_command("migrate", verbosity=0, interactive=False)
    account = Account.get_or_retrieve_for_api_key(os.environ["DJSTRIPE_BENCH_STRIPE_KEY"])
    endpoint_uuid = args.uuid or str(uuid.uuid4())
    # The endpoint as Stripe would return it, with the signing secret we sign with; created from data
    # (not through the API) because the secret must be bench.stack.SECRET, not one the double makes up.
    endpoint = WebhookEndpoint.sync_from_stripe_data({
        "id": "we_bench_djstripe", "object": "webhook_endpoint", "api_version": None, "application": None,
        "created": 1_800_000_000, "description": None, "enabled_events": ["customer.created", "customer.updated"],
        "livemode": False, "metadata": {"djstripe_uuid": endpoint_uuid}, "secret": args.secret,
        "status": "enabled", "url": f"https://djstripe.example.test/stripe/webhook/{endpoint_uuid}/",
    })
    endpoint.djstripe_owner_account = account
    endpoint.secret = args.secret
    endpoint.save()
    return {"account": account.id, "uuid": str(endpoint.djstripe_uuid),
            "path": f"/stripe/webhook/{endpoint.djstripe_uuid}/"}


def count(args) -> dict:
    """Rows dj-stripe wrote: triggers (valid, processed, failed), events and customers."""
    from djstripe.models import Customer, Event, WebhookEventTrigger

    triggers = WebhookEventTrigger.objects
    return {"triggers": triggers.count(), "valid": triggers.filter(valid=True).count(),
            "processed": triggers.filter(processed=True).count(),
            "with_exception": triggers.exclude(exception="").count(),
            "events": Event.objects.count(), "customers": Customer.objects.count(),
            "first_exception": (triggers.exclude(exception="").values_list("exception", flat=True).first() or "")}


def main() -> None:
    """Run one subcommand and print its JSON on stdout for bench/peer.py."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_setup = sub.add_parser("setup")
    p_setup.add_argument("--secret", required=True)
    p_setup.add_argument("--uuid", default=None)
    sub.add_parser("count")
    args = parser.parse_args()
    print(json.dumps(setup(args) if args.cmd == "setup" else count(args)))


if __name__ == "__main__":
    main()
