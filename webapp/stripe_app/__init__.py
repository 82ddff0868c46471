"""The Apps pages and the Stripe app page: connect flow, resources, mapping and sync log views."""
