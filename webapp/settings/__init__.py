"""Settings: the people who can log in and the addresses Stripe needs."""
