"""Stripe webhook intake: verify, record, enqueue. Nothing else."""
