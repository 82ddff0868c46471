"""Recovering what webhooks did not deliver (Stripe's Events API), and watching the endpoints' health.

reader.py walks /v1/events oldest first; recover.py records what is missing exactly as intake would
and moves the account's checkpoint; endpoints.py reads our endpoints' state in Stripe and re-enables,
recreates or re-points them; schedule.py decides when a check runs (every RECOVERY_INTERVAL, when a
worker starts, and from the "Check for missed events" button).
"""
