"""The email outbox: storing rendered messages and delivering them over SMTP.

SMTP_URL forms: `smtp://user:pass@host:port` (plain, or `?starttls=1` to upgrade), and
`smtps://user:pass@host:port` (TLS from the start). User and password are percent-decoded, so a
password with "@" or ":" is written %40 / %3A. Default ports: 25, 587 with STARTTLS, 465 for smtps.
The sender is SMTP_FROM, else `no-reply@<host of PUBLIC_BASE_URL>`, else no-reply@localhost.

Delivery is at least once: a message is marked sent after the server accepted it, so a worker
that dies between the two sends it again on retry. The Message-ID is derived from the outbox row,
so receiving systems can tell a repeat. Without SMTP_URL nothing is sent; the message is stored as
"not sent" and the outbox says why.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app
from sqlalchemy import select, update

from webapp.automations.models import MSG_FAILED, MSG_NOT_SENT, MSG_QUEUED, MSG_SENT, OutboxMessage
from webapp.tunables import intervals, setting
from webapp.extensions import db
from webapp.timeutil import utcnow

log = logging.getLogger(__name__)

NO_SMTP = "not sent: no SMTP_URL configured"


class SmtpUrlError(ValueError):
    """SMTP_URL cannot be understood."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to deliver, from SMTP_URL."""

    host: str
    port: int
    ssl: bool
    starttls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        """Never show the password in logs or tracebacks."""
        return f"SmtpSettings({self.host}:{self.port}, ssl={self.ssl}, starttls={self.starttls}, user={self.username!r})"


def parse_smtp_url(url: str) -> SmtpSettings:
    """smtp://user:pass@host:port?starttls=1 or smtps://…; raises SmtpUrlError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise SmtpUrlError("SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise SmtpUrlError("SMTP_URL has no host")
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    starttls = parts.scheme == "smtp" and query.get("starttls") in ("1", "true", "yes", "on")
    use_ssl = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if use_ssl else 587 if starttls else 25)
    except ValueError:
        raise SmtpUrlError("SMTP_URL has an invalid port") from None
    return SmtpSettings(host=parts.hostname, port=port, ssl=use_ssl, starttls=starttls,
                        username=unquote(parts.username) if parts.username else None,
                        password=unquote(parts.password) if parts.password is not None else None)


def smtp_url() -> str | None:
    """The configured SMTP_URL, or None."""
    return (current_app.config.get("SMTP_URL") or "").strip() or None


def smtp_configured() -> bool:
    """Whether messages are delivered at all."""
    return smtp_url() is not None


def sender() -> str:
    """The From address."""
    configured = current_app.config.get("SMTP_FROM")
    if configured:
        return configured
    host = urlsplit(current_app.config.get("PUBLIC_BASE_URL") or "").hostname
    return f"no-reply@{host or 'localhost'}"


def build_message(message: OutboxMessage) -> EmailMessage:
    """A multipart/alternative email (text and HTML) for one outbox row."""
    email = EmailMessage()
    from_addr = sender()
    email["From"] = from_addr
    email["To"] = message.to_email
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}", domain=from_addr.rsplit("@", 1)[-1].strip(">"))
    email.set_content(message.body_text or "")
    email.add_alternative(f"<!doctype html>\n<html><body>\n{message.body_html}\n</body></html>\n", subtype="html")
    return email


def deliver(email: EmailMessage, settings: SmtpSettings, timeout: float) -> None:
    """One SMTP conversation; smtplib's exceptions propagate."""
    context = ssl.create_default_context()
    if settings.ssl:
        client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
    with client:
        client.ehlo()
        if settings.starttls:
            client.starttls(context=context)
            client.ehlo()
        if settings.username:
            client.login(settings.username, settings.password or "")
        client.send_message(email)


def store(**fields) -> OutboxMessage:
    """Add a rendered message in the caller's transaction: queued with SMTP, "not sent" without."""
    configured = smtp_configured()
    message = OutboxMessage(state=MSG_QUEUED if configured else MSG_NOT_SENT,
                            error=None if configured else NO_SMTP, attempts=0, **fields)
    db.session.add(message)
    db.session.flush()
    return message


def _will_retry(attempt: int) -> bool:
    """Whether RQ runs this delivery again; outside RQ, judged by the configured retries."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        return bool(job.retries_left)
    return attempt <= len(intervals("SMTP_RETRY_INTERVALS"))


def send(message_id: int) -> str:
    """Deliver one message; on failure record why and re-raise so RQ retries."""
    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        db.session.rollback()
        return "gone"
    if message.state == MSG_SENT:
        db.session.rollback()
        return "already sent"
    url = smtp_url()
    if url is None:
        message.state, message.error = MSG_NOT_SENT, NO_SMTP
        db.session.commit()
        return MSG_NOT_SENT
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                       .values(attempts=OutboxMessage.attempts + 1))
    db.session.commit()
    message = db.session.get(OutboxMessage, message_id, populate_existing=True)
    try:
        deliver(build_message(message), parse_smtp_url(url), float(setting("SMTP_TIMEOUT")))
    except Exception as exc:
        db.session.rollback()
        retry = _will_retry(message.attempts)
        text = f"{type(exc).__name__}: {exc}"[:500]
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id, OutboxMessage.state != MSG_SENT)
                           .values(state=MSG_QUEUED if retry else MSG_FAILED,
                                   error=f"{text} ({'will retry' if retry else 'gave up'})"))
        db.session.commit()
        log.warning("Outbox message %s: SMTP delivery failed on attempt %s: %s", message_id, message.attempts, text)
        raise
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                       .values(state=MSG_SENT, error=None, sent_at=utcnow()))
    db.session.commit()
    log.info("Outbox message %s sent to %s", message_id, message.to_email)
    return MSG_SENT


def page(before_id: int | None, size: int) -> tuple[list[OutboxMessage], int | None]:
    """Newest messages first, `size` at a time before an id; returns them and the next page's cursor."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(size + 1)
    if before_id is not None:
        query = query.where(OutboxMessage.id < before_id)
    rows = list(db.session.scalars(query))
    return rows[:size], (rows[size - 1].id if len(rows) > size else None)


def send_again(message: OutboxMessage) -> bool:
    """The outbox's "Send" button for a failed or unsent message; False when it cannot be sent."""
    if message.state not in (MSG_FAILED, MSG_NOT_SENT) or not smtp_configured():
        return False
    message.state, message.error = MSG_QUEUED, None
    db.session.commit()
    return True
