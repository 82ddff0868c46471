"""Configuration: defaults, then the environment, then the mapping a caller (a test) passes."""
import os
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"

HTMX_VERSION = "2.0.11"
HTMX_CDN_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
# sha384 of htmx.org@2.0.11 dist/htmx.min.js, as published on the npm registry.
HTMX_SRI = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"

ENV_KEYS = (
    "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "STRIPE_API_BASE", "PUBLIC_BASE_URL",
    "ENCRYPTION_KEY", "HTMX_URL", "PORT", "SMTP_URL", "SMTP_FROM", "METRICS_TOKEN",
    "TRUSTED_PROXIES", "SESSION_LIFETIME_DAYS",
    "MAX_CONTENT_LENGTH",
)


def defaults():
    """Return the settings a local run needs with no environment at all."""
    return {
        "SECRET_KEY": None,  # generated into instance/ when absent
        "DATABASE_URL": f"sqlite:///{INSTANCE / 'crm.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "STRIPE_API_BASE": "https://api.stripe.com",
        "PUBLIC_BASE_URL": None,  # default: the address the app is served at
        "ENCRYPTION_KEY": None,  # generated into instance/ when absent
        "HTMX_URL": HTMX_CDN_URL,
        "HTMX_SRI": HTMX_SRI,
        "PORT": 5000,
        "SMTP_URL": None,
        "SMTP_FROM": None,  # default: no-reply@<host of PUBLIC_BASE_URL>
        "METRICS_TOKEN": None,  # lets Prometheus scrape /metrics without a login
        "INSTANCE_PATH": str(INSTANCE),
        "RQ_QUEUE": "default",
        "CONTACTS_PER_PAGE": 50,
        "LOGIN_RATE_LIMIT": "10 per minute",  # failed logins, per address and per account
        "TRUSTED_PROXIES": 0,  # reverse proxies in front whose X-Forwarded-* headers are believed
        "SESSION_LIFETIME_DAYS": 7,  # a login cookie older than this (since the session last changed) is refused
        "MAX_CONTENT_LENGTH": 1024 * 1024,  # bytes; a larger request body is a 413, read no further
        "STRIPE_MAX_NETWORK_RETRIES": 2,
        "STRIPE_TIMEOUT": 15,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "TESTING": False,
    }


def from_environment(environ=None):
    """Pick the documented variables, and any tunable (webapp/tunables.py), out of the environment."""
    from webapp.tunables import DEFAULTS as tunables

    environ = os.environ if environ is None else environ
    found = {k: environ[k] for k in ENV_KEYS if environ.get(k)}
    if "PORT" in found:
        found["PORT"] = int(found["PORT"])
    if "TRUSTED_PROXIES" in found:
        found["TRUSTED_PROXIES"] = int(found["TRUSTED_PROXIES"])
    if "SESSION_LIFETIME_DAYS" in found:
        found["SESSION_LIFETIME_DAYS"] = float(found["SESSION_LIFETIME_DAYS"])
    if "MAX_CONTENT_LENGTH" in found:
        found["MAX_CONTENT_LENGTH"] = int(found["MAX_CONTENT_LENGTH"])
    for name, default in tunables.items():
        if environ.get(name):
            found[name] = _parse_like(environ[name], default)
    return found


def _parse_like(raw: str, default):
    """Read a tunable from text in the shape of its default: "10,60,300" for a list of seconds."""
    if isinstance(default, list):
        return [float(x) if "." in x else int(x) for x in raw.replace(" ", "").split(",") if x]
    return type(default)(float(raw)) if isinstance(default, int) else type(default)(raw)


def build(overrides=None):
    """Merge defaults, environment and the caller's mapping, in that order."""
    cfg = defaults()
    cfg.update(from_environment())
    cfg.update(overrides or {})
    cfg["SQLALCHEMY_DATABASE_URI"] = _normalise_db_url(cfg["DATABASE_URL"])
    _session_settings(cfg)
    return cfg


def _session_settings(cfg) -> None:
    """Session lifetime from SESSION_LIFETIME_DAYS; cookies only over HTTPS when PUBLIC_BASE_URL is https."""
    cfg.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(days=cfg["SESSION_LIFETIME_DAYS"]))
    https = str(cfg.get("PUBLIC_BASE_URL") or "").lower().startswith("https://")
    cfg.setdefault("SESSION_COOKIE_SECURE", https)
    cfg.setdefault("REMEMBER_COOKIE_SECURE", https)


def _normalise_db_url(url):
    """Let DATABASE_URL use the common postgres:// spellings and still get psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
