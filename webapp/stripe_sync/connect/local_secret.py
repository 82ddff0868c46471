"""The signing secret `stripe listen` prints, for local development: Stripe cannot reach a laptop, so the
CLI forwards events and signs them with a secret of its own, which the resource must accept beside the
secret of the endpoint we created. Stored encrypted like every secret; one per resource (a new one
replaces the old); never shown again, only that one is set and since when."""
from __future__ import annotations

import logging
import re

from webapp.crypto import encrypt
from webapp.extensions import db
from webapp.stripe_sync.models import SECRET_FROM_CLI, StripeResource, WebhookSecret

log = logging.getLogger(__name__)

SECRET_RE = re.compile(r"whsec_[A-Za-z0-9]{16,250}")


class BadSecret(ValueError):
    """What was pasted is not a webhook signing secret."""


def cli_secret(res: StripeResource) -> WebhookSecret | None:
    """The active secret pasted from `stripe listen`, if any."""
    return next((s for s in res.secrets if s.active and s.source == SECRET_FROM_CLI), None)


def save(res: StripeResource, raw: str | None) -> None:
    """Accept deliveries signed with this secret from now on (replacing an earlier pasted one)."""
    secret = (raw or "").strip()
    if not SECRET_RE.fullmatch(secret):
        raise BadSecret("That is not a webhook signing secret: stripe listen prints one that starts with "
                        "“whsec_” (“Your webhook signing secret is whsec_…”).")
    for row in res.secrets:
        if row.source == SECRET_FROM_CLI:
            row.active = False
    res.secrets.append(WebhookSecret(secret_enc=encrypt(secret), source=SECRET_FROM_CLI))
    db.session.commit()
    log.info("A stripe listen signing secret was set for resource %s", res.id)


def remove(res: StripeResource) -> bool:
    """Stop accepting deliveries signed with the pasted secret; False when none was set."""
    rows = [row for row in res.secrets if row.active and row.source == SECRET_FROM_CLI]
    for row in rows:
        row.active = False
    db.session.commit()
    return bool(rows)
