"""How a failure is told: one line for the sync log and the event, a frame summary for the log's
Details, and never a key, a signing secret or a SQL parameter in either."""
import re
import traceback

import stripe
from sqlalchemy.exc import StatementError

from webapp.stripe_sync.client import describe

SECRET_RE = re.compile(r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9*]+|\bwhsec_[A-Za-z0-9]+")


def scrub(text: str) -> str:
    """Mask anything shaped like a Stripe key or signing secret."""
    return SECRET_RE.sub(lambda m: m.group(0).split("_")[0] + "_…", text)


def short_message(exc: BaseException) -> str:
    """One line for the sync log and the event: what failed, without SQL parameters or secrets."""
    if isinstance(exc, stripe.StripeError):
        status = getattr(exc, "http_status", None)
        text = f"Stripe API error{f' {status}' if status else ''}: {describe(exc).message}"
    elif isinstance(exc, StatementError) and exc.orig is not None:
        text = f"Database error: {type(exc.orig).__name__}: {exc.orig}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return scrub(" ".join(text.split()))[:300]


def traceback_summary(exc: BaseException, frames: int = 12) -> str:
    """Where it failed: our own frames plus the innermost two, without locals or argument values."""
    stack = traceback.extract_tb(exc.__traceback__)
    keep = [f for n, f in enumerate(stack) if "/webapp/" in f.filename or n >= len(stack) - 2][-frames:]
    lines = [f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
             for f in keep]
    lines.append(short_message(exc))
    return scrub("\n".join(lines))[:4000]
