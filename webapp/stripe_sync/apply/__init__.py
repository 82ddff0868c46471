"""Applying Stripe events to the CRM: customer resolution, contacts, commerce rows, stamps, triggers, and the one batch write path."""
