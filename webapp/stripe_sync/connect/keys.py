"""Secret key format checks, so an obviously wrong key is explained before any call to Stripe.

Only the shape is checked here (prefix, mode, length, characters); whether Stripe accepts the key is
decided by retrieving the account. Error sentences never echo the key, since they end up in pages
and logs. `mask_key` is the only way a stored key is ever shown again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SECRET_KEY_RE = re.compile(r"^(?P<kind>sk|rk)_(?P<mode>test|live)_[A-Za-z0-9]{10,}$")
_PREFIX_RE = re.compile(r"^(?:sk|rk|pk)_(?:test|live)_")

ERROR_EMPTY = "Enter your Stripe Secret Key."
ERROR_PUBLISHABLE = (
    "That is your publishable key (it starts with pk_). Enter the Secret Key instead: in the "
    "Stripe Dashboard go to Developers → API keys → Secret key."
)
ERROR_MALFORMED = (
    "That doesn't look like a Stripe secret key. It starts with sk_test_ or sk_live_ "
    "(or rk_ for a restricted key); copy it from Developers → API keys → Secret key."
)

_KINDS = {"sk": "secret", "rk": "restricted"}


@dataclass(frozen=True)
class KeyCheck:
    """The outcome of a format check: either a usable key's mode and kind, or a sentence for the user."""

    ok: bool
    mode: str | None = None  # "test" | "live"
    kind: str | None = None  # "secret" | "restricted"
    error: str | None = None
    key: str | None = field(default=None, repr=False)  # the stripped key, only when ok; never in logs


def classify_key(raw: str | None) -> KeyCheck:
    """Checks a pasted key's shape; surrounding whitespace from copy-paste is forgiven."""
    key = (raw or "").strip()
    if not key:
        return KeyCheck(ok=False, error=ERROR_EMPTY)
    if key.startswith("pk_"):
        return KeyCheck(ok=False, error=ERROR_PUBLISHABLE)
    match = SECRET_KEY_RE.match(key)
    if not match:
        return KeyCheck(ok=False, error=ERROR_MALFORMED)
    return KeyCheck(
        ok=True, mode=match["mode"], kind=_KINDS[match["kind"]], error=None, key=key
    )


def mask_key(key: str | None) -> str:
    """Shows just enough to recognise a key (its prefix and last four) and never more."""
    key = (key or "").strip()
    if not key:
        return ""
    prefix_match = _PREFIX_RE.match(key)
    prefix = prefix_match.group(0) if prefix_match else ""
    rest = key[len(prefix):]
    # Revealing four characters of a very short remainder would reveal most of it.
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{prefix}…{tail}"
