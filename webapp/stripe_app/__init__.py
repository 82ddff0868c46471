"""The Apps pages and the Stripe app page: connect flow, resources, mapping and sync log views."""
from webapp.stripe_app import backfill_views, manage, recovery_views, resource_views, views  # noqa: F401  (each adds its routes to bp)
from webapp.stripe_app.blueprint import bp

__all__ = ["bp"]
