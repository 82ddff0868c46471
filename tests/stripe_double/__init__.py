"""A fake Stripe API server for tests, benchmarks and the local demo; see server.StripeDouble."""

from .server import RequestRecord, StripeDouble

__all__ = ["RequestRecord", "StripeDouble"]
