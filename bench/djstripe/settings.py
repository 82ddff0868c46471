"""Minimal Django settings for the dj-stripe peer benchmark; configured by bench/peer.py through the
environment so one project serves SQLite and PostgreSQL runs without an edit."""
import os
from urllib.parse import urlsplit

SECRET_KEY = "bench-djstripe-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "urls"
WSGI_APPLICATION = "wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# dj-stripe needs auth (its subscriber model is AUTH_USER_MODEL) and contenttypes; nothing else.
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "djstripe"]
# Lean on purpose: the view is CSRF-exempt and anonymous, so sessions/auth middleware would only
# add cost to the peer we compare against.
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]


def _database(url: str) -> dict:
    """A Django DATABASES entry from sqlite:///path or postgresql://user@host:port/name."""
    if url.startswith("sqlite:///"):
        # The same footing as the Flask app's SQLite (WAL, synchronous=NORMAL, a busy timeout), plus
        # Django 5.1+'s IMMEDIATE transactions so two gunicorn workers wait instead of failing.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url[len("sqlite:///"):],
                "OPTIONS": {"timeout": 10, "transaction_mode": "IMMEDIATE",
                            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}}
    parts = urlsplit(url)
    return {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "postgres", "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "127.0.0.1", "PORT": str(parts.port or 5432),
            "CONN_MAX_AGE": 600}


DATABASES = {"default": _database(os.environ.get("DJSTRIPE_BENCH_DATABASE_URL", "sqlite:///djstripe.sqlite3"))}

# Stripe: test mode, our Stripe double instead of api.stripe.com, signature verification per endpoint.
STRIPE_LIVE_MODE = False
STRIPE_TEST_SECRET_KEY = os.environ.get("DJSTRIPE_BENCH_STRIPE_KEY", "sk_test_unset")
STRIPE_API_HOST = os.environ.get("DJSTRIPE_BENCH_STRIPE_API", "http://127.0.0.1:9")
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
SILENCED_SYSTEM_CHECKS = ["djstripe.W002"]  # STRIPE_API_HOST is the point here

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
