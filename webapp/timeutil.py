"""Timestamps stored as naive UTC, the common ground of SQLite and PostgreSQL."""
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Current UTC time without tzinfo, as every DateTime column stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
