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


# --- the same failure told to a marketer: the stored reason (short_message's words plus the batch's
# "(will retry)" or "(gave up after attempt N)") read back into a sentence; the words above stay, folded
# away as the technical details.

RETRY_NOTE_RE = re.compile(r"\s*\((will retry|gave up after attempt \d+)\)\s*$")
STRIPE_ERROR_RE = re.compile(r"Stripe API error(?: (\d{3}))?: (.*)", re.S)
SWEEP_GAVE_UP_RE = re.compile(r"Gave up after (\d+) attempts: (.*?)\.?$", re.S)


def will_retry(reason: str | None) -> bool:
    """Whether the attempt that wrote this reason was to be followed by another."""
    return (reason or "").rstrip().endswith("(will retry)")


def plain_failure(reason: str | None) -> str:
    """What happened, in a sentence a marketer understands (every Stripe call of the write path
    retrieves the event's customer, so a Stripe error always means that customer)."""
    text = RETRY_NOTE_RE.sub("", reason or "").strip()
    stripe_error = STRIPE_ERROR_RE.match(text)
    if stripe_error:
        return _stripe_words(int(stripe_error.group(1) or 0), stripe_error.group(2).strip())
    if text.startswith("Database error"):
        return "The CRM could not save it: its database was busy or refused the change"
    gave_up = SWEEP_GAVE_UP_RE.match(text)
    if gave_up:
        return f"Processing stopped before it finished, {gave_up.group(1)} times ({gave_up.group(2)})"
    return "Something went wrong while saving it to the CRM"


def _stripe_words(status: int, said: str) -> str:
    """A Stripe error by what the marketer can do about it."""
    if status == 429 or "rate limiting" in said:
        return "Stripe asked us to slow down, so the customer could not be retrieved"
    if not status:
        return "Stripe did not answer"
    if status >= 500:
        return "The customer could not be retrieved from Stripe (Stripe had an error on its side)"
    if status == 401:
        return "Stripe no longer accepts this account's key; connect the account again"
    if status == 403:
        return "The account's key is missing a permission: " + said
    return "Stripe refused the request: " + said.removeprefix("Stripe refused the request: ")
