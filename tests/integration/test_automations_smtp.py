"""Outbox delivery over SMTP to a real aiosmtpd server on loopback: arrival, auth, retries, resend."""
import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from tests.helpers import DUNNING_BODY, INVOICE_URL, make_automation
from webapp.automations import engine
from webapp.automations.models import OutboxMessage
from webapp.automations.sweep import sweep_automations


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted"

    @property
    def messages(self):
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A real SMTP server on loopback; `start(**kw)` may be called with auth options."""
    servers = []

    def start(port=None, **kw):
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port(), **kw)
        controller.start()
        servers.append(controller)
        inbox.port = controller.port
        return inbox
    yield start
    for controller in servers:
        controller.stop()


def dunning():
    return make_automation("Dunning", "stripe_event_received", {}, [
        ("send_email", {"subject": "Your payment failed, %FIRSTNAME%", "body": DUNNING_BODY})],
        event_types=["invoice.payment_failed"])


def outbox(db):
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_the_dunning_email_arrives_once_with_the_invoice_link(app, story, db, smtp_server):
    inbox = smtp_server()
    app.config.update(SMTP_URL=f"smtp://127.0.0.1:{inbox.port}", SMTP_FROM="Engine Room <billing@engineroom.test>")
    story(["customer.created"])
    dunning()
    story(["invoice.payment_failed"])

    [row] = outbox(db)
    assert (row.state, row.error, row.attempts) == ("sent", None, 1) and row.sent_at is not None
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "billing@engineroom.test" and envelope.rcpt_tos == ["ada@example.com"]
    [email] = inbox.messages
    assert email["Subject"] == "Your payment failed, Ada"
    assert email["To"] == "ada@example.com" and email["From"] == "Engine Room <billing@engineroom.test>"
    assert f"outbox-{row.id}" in email["Message-ID"]
    html = email.get_body(("html",)).get_content()
    text = email.get_body(("plain",)).get_content()
    assert f'<a href="{INVOICE_URL}">Update your card</a>' in html
    assert f"Update your card ({INVOICE_URL})" in text

    story(["invoice.payment_failed", "customer.created"])  # Stripe redelivers: nothing is sent again
    assert len(inbox.envelopes) == 1 and len(outbox(db)) == 1


def test_login_with_a_percent_encoded_password(app, story, db, smtp_server):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == (b"mailer@engineroom.test", b"p@ss:w/rd")
        return AuthResult(success=ok)

    inbox = smtp_server(authenticator=authenticate, auth_require_tls=False)
    app.config.update(SMTP_URL=f"smtp://mailer%40engineroom.test:p%40ss%3Aw%2Frd@127.0.0.1:{inbox.port}")
    story(["customer.created"])
    dunning()
    story(["invoice.payment_failed"])
    assert [m.state for m in outbox(db)] == ["sent"] and len(inbox.envelopes) == 1


def test_delivery_is_retried_then_failed_and_can_be_sent_again(app, story, db, smtp_server, auth_client,
                                                               run_worker):
    port = free_port()  # nothing listens here yet
    app.config.update(SMTP_URL=f"smtp://127.0.0.1:{port}", SMTP_TIMEOUT=2)
    story(["customer.created"])
    dunning()
    story(["invoice.payment_failed"])
    [row] = outbox(db)
    assert (row.state, row.attempts) == ("failed", 3)  # the first try and two retries
    assert row.error.startswith("ConnectionRefusedError") and row.error.endswith("(gave up)")
    page = auth_client.get("/automations/outbox").get_data(as_text=True)
    assert "Failed" in page and "ConnectionRefusedError" in page

    inbox = smtp_server(port=port)
    resp = auth_client.post(f"/automations/outbox/{row.id}/send", htmx=True)
    assert resp.status_code == 200
    run_worker()
    [row] = outbox(db)
    assert (row.state, row.attempts, row.error) == ("sent", 4, None)
    assert len(inbox.envelopes) == 1


def test_a_queued_message_whose_job_was_lost_is_sent_by_the_sweep(app, story, db, smtp_server, run_worker,
                                                                  monkeypatch):
    inbox = smtp_server()
    app.config.update(SMTP_URL=f"smtp://127.0.0.1:{inbox.port}")
    story(["customer.created"])
    dunning()
    monkeypatch.setattr(engine, "enqueue_send", lambda message_id: None)  # the delivery job vanishes
    story(["invoice.payment_failed"])
    monkeypatch.undo()
    [row] = outbox(db)
    assert row.state == "queued" and inbox.envelopes == []
    assert sweep_automations(0).messages == 1
    assert sweep_automations(0).messages == 0  # queued once
    run_worker()
    assert [m.state for m in outbox(db)] == ["sent"] and len(inbox.envelopes) == 1


def test_without_smtp_url_nothing_is_sent_and_the_outbox_says_why(story, db, auth_client):
    story(["customer.created"])
    dunning()
    story(["invoice.payment_failed"])
    [row] = outbox(db)
    assert (row.state, row.attempts) == ("not_sent", 0)
    detail = auth_client.get(f"/automations/outbox/{row.id}").get_data(as_text=True)
    assert "Not sent (no SMTP_URL configured)" in detail
    assert ">Send</button>" not in detail  # nothing to send with
