"""The Apps pages and the Stripe app page: connect flow, resources, mapping and sync log views."""
from webapp.stripe_app import (  # noqa: F401  (each adds its routes to bp)
    backfill_views, manage, mapping_views, recovery_views, resource_views, views,
)
from webapp.stripe_app.blueprint import bp

__all__ = ["bp"]
