"""Connecting a Stripe account: key check, Stripe fields, mapping, webhook endpoints, disconnect."""
