"""Automations: Stripe-driven triggers, ordered actions, personalised email and the outbox."""
