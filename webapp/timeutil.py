"""Timestamps stored as naive UTC, the common ground of SQLite and PostgreSQL."""
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Current UTC time without tzinfo, as every DateTime column stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def epoch(moment: datetime) -> int:
    """Unix seconds of a naive UTC timestamp (Stripe's `created` unit)."""
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def from_epoch_naive(seconds: int | float) -> datetime:
    """The naive UTC timestamp of Unix seconds."""
    return datetime.fromtimestamp(seconds, timezone.utc).replace(tzinfo=None)
