"""Stripe domain logic kept apart from Flask so webhooks, jobs and pages share one source of truth."""
