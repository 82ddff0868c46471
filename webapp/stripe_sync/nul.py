"""NUL characters in Stripe data: PostgreSQL text cannot hold them ("text fields cannot contain NUL", an
event that fails on every retry) and SQLite would keep them silently, so they are dropped where Stripe
data enters the CRM: intake's payload, the import's payload, customer resolution, commerce extraction."""
import json
from collections.abc import Mapping
from typing import Any

NUL = "\x00"
JSON_NUL = "\\u0000"  # how NUL is spelled in JSON text, which cannot hold a raw one


def without_nul(value: Any) -> Any:
    """The value with NUL dropped from every string in it, keys included; anything else as it was."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, Mapping):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nul(v) for v in value]
    return value


def json_text_without_nul(text: str) -> str:
    """JSON text as it is, unless one of its strings holds NUL (spelled \\u0000): then re-serialised
    without it. Text that is not JSON raises as json.loads does, for the caller to report."""
    if JSON_NUL not in text:
        return text
    value = json.loads(text)
    cleaned = without_nul(value)
    if cleaned == value:  # the escape was text (an escaped backslash before "u0000"), not a NUL
        return text
    return json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False)
