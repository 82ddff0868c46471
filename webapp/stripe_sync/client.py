"""The one place that builds Stripe SDK clients and turns SDK errors into sentences for users."""
import logging
import re

import stripe
from flask import current_app

from webapp.crypto import decrypt

log = logging.getLogger(__name__)

# The API version our event fixtures and handlers speak.
STRIPE_API_VERSION = "2026-07-29.dahlia"
PERMISSION_RE = re.compile(r"'(rak_[a-z0-9_]+)'")
ENDPOINT_LIMIT_RE = re.compile(r"maximum of \d+ (test |live )?webhook endpoints", re.IGNORECASE)


def make_client(secret_key: str, max_network_retries: int | None = None) -> stripe.StripeClient:
    """An SDK client for one key, pointed at STRIPE_API_BASE, with timeouts and retries."""
    cfg = current_app.config
    retries = cfg["STRIPE_MAX_NETWORK_RETRIES"] if max_network_retries is None else max_network_retries
    return stripe.StripeClient(
        secret_key,
        base_addresses={"api": cfg["STRIPE_API_BASE"]},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=cfg["STRIPE_TIMEOUT"]),
    )


def client_for_account(account, max_network_retries: int | None = None) -> stripe.StripeClient:
    """An SDK client with a connected account's stored key."""
    if not account.secret_key_enc:
        raise StripeProblem("This Stripe account is disconnected; its key was erased.")
    return make_client(decrypt(account.secret_key_enc), max_network_retries)


class StripeProblem(Exception):
    """A Stripe failure phrased for the user; never contains a key."""

    def __init__(self, message: str, kind: str = "error", permission: str | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.permission = permission


def describe(exc: Exception) -> StripeProblem:
    """Translate an SDK exception into a StripeProblem a page can show."""
    if isinstance(exc, stripe.AuthenticationError):
        return StripeProblem("Stripe rejected this key. Check that you copied the whole Secret Key "
                             "from Developers → API keys, and that it has not been rolled.", "auth")
    if isinstance(exc, stripe.PermissionError):
        match = PERMISSION_RE.search(str(getattr(exc, "user_message", None) or exc))
        permission = match.group(1) if match else None
        needed = f" It needs the “{permission}” permission." if permission else ""
        return StripeProblem("This restricted key does not have a permission the integration needs." + needed +
                             " Edit the key in Stripe (Developers → API keys) or use a secret key.",
                             "permission", permission)
    if isinstance(exc, stripe.RateLimitError):
        return StripeProblem("Stripe is rate limiting requests right now. Wait a moment and try again.", "rate")
    if isinstance(exc, stripe.APIConnectionError):
        return StripeProblem("Stripe could not be reached (the connection failed or timed out). "
                             "Nothing was saved; try again in a moment.", "unreachable")
    if isinstance(exc, stripe.InvalidRequestError):
        message = str(getattr(exc, "user_message", None) or "")
        if ENDPOINT_LIMIT_RE.search(message):
            return StripeProblem(message, "endpoint_limit")
        if getattr(exc, "code", None) == "resource_missing":
            return StripeProblem("Stripe no longer has that object.", "missing")
        return StripeProblem("Stripe refused the request: " + _scrub(message), "invalid")
    if isinstance(exc, stripe.StripeError):
        return StripeProblem("Stripe answered with an error. Try again in a moment.", "stripe")
    return StripeProblem("Something went wrong talking to Stripe. Try again in a moment.", "unknown")


KEY_RE = re.compile(r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9*]+")


def _scrub(text: str) -> str:
    """Mask anything that looks like a key before a message reaches a page or a log."""
    return KEY_RE.sub(lambda m: f"{m.group(1)}_{m.group(2)}_…", text)
